"""Multi-class training and evaluation on 10 real BUSI scans: eval's numbers against NumPy from scratch.

BUSI (../shared/data/busi, research use only) is not shipped; the test skips without it.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
Image = pytest.importorskip("PIL.Image")

from conftest import SHARED

BUSI = SHARED / "data" / "busi"
pytestmark = pytest.mark.skipif(not (BUSI / "benign").is_dir(), reason=f"BUSI data not found at {BUSI}")


def _truth(masks, label: int, shape) -> np.ndarray:
    """The class map read independently of edgeseg: OR of the 0/255 mask files, times the folder's class."""
    union = np.zeros(shape, bool)
    for path in masks:
        union |= np.asarray(Image.open(path)) > 0
    return union.astype(np.int64) * label


def test_tiny_busi_model_eval_matches_numpy_from_the_confusion_matrix(tmp_path):
    from edgeseg.evaluate import evaluate, open_predictor
    from edgeseg.models import load_checkpoint
    from edgeseg.train import TrainConfig, train

    cfg = TrainConfig(images=str(BUSI), layout="class-folders", mask_suffix="_mask", background=["normal"],
                      out=str(tmp_path / "busi.safetensors"), model="fastseg_small", size=(64, 64), limit=10,
                      val_fraction=0.3, epochs=2, batch_size=4, class_weights="auto", threads=1, progress=False)
    result = train(cfg)
    _, art = load_checkpoint(result.best_path)
    assert art.classes == ["background", "benign", "malignant"]  # from the folders, recorded in the sidecar
    assert len(art.extra["train"]["class_weights"]) == 3

    report = evaluate(result.best_path, BUSI, None, split="val", grid=tmp_path / "grid.png", grid_count=1)
    val = art.extra["train"]["split"]["val_files"]
    assert [r["file"] for r in report.per_image] == val and len(val) == 3

    predict, _ = open_predictor(result.best_path)
    classes, k = art.classes, 3
    n = np.zeros((k, k), np.int64)
    for name in val:
        folder, file = name.split("/")
        image_path = BUSI / folder / "images" / file
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        stem = image_path.stem + "_mask"
        masks = [m for m in (BUSI / folder / "masks").glob("*.png") if m.stem == stem or m.stem.startswith(stem + "_")]
        truth = _truth(masks, classes.index(folder) if folder in classes else 0, image.shape[:2])
        pred = predict(image).argmax(0)
        np.add.at(n, (truth.ravel(), pred.ravel()), 1)

    m = report.metrics
    assert m["confusion_matrix"] == n.tolist()
    t, p, tp = n.sum(1), n.sum(0), np.diag(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (t + p - tp)
        dice = 2 * tp / (t + p)
        acc = tp / t
    for c, name in enumerate(classes):
        for key, ref in (("iou", iou), ("dice", dice), ("class_accuracy", acc)):
            got = m[key][name]
            assert (got is None and np.isnan(ref[c])) or got == pytest.approx(ref[c], abs=1e-12), (key, name)
    assert m["mean_iou"] == pytest.approx(np.nanmean(iou), abs=1e-12)
    assert m["pixel_accuracy"] == pytest.approx(tp.sum() / n.sum(), abs=1e-12)
    assert m["mean_class_accuracy"] == pytest.approx(np.nanmean(acc), abs=1e-12)
    assert m["frequency_weighted_iou"] == pytest.approx((t * np.nan_to_num(iou)).sum() / t.sum(), abs=1e-12)
    assert set(m["boundary_f"]) == set(classes) and m["boundary_width_px"] == 3
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid is not None and grid.shape[1] == 3 * 320  # worst + best rows, then the legend

