"""Class-per-folder data, class-weighted loss and the multi-class metrics, on small synthetic trees and maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edgeseg.data.class_folders import class_folder_samples, interleave, read_sample_mask
from edgeseg.data.masks import MaskSpec
from edgeseg.errors import InputError
from edgeseg.metrics import ConfusionMatrix, boundary_f_per_class


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _tree(root: Path) -> None:
    """cats/ (images/ + masks/ sub-folders, one image with two lesion files), dogs/ (side by side), normal/
    (no masks at all)."""
    blank = np.zeros((20, 30), np.uint8)
    a, b = blank.copy(), blank.copy()
    a[2:6, 2:6] = 255
    b[10:14, 20:25] = 255
    _write(root / "cats" / "images" / "c (1).png", blank + 50)
    _write(root / "cats" / "masks" / "c (1)_mask.png", a)
    _write(root / "cats" / "masks" / "c (1)_mask_1.png", b)
    _write(root / "cats" / "images" / "c (10).png", blank + 60)  # "c (1)" must not claim "c (10)_mask"
    _write(root / "cats" / "masks" / "c (10)_mask.png", b)
    _write(root / "dogs" / "d.png", blank + 70)
    _write(root / "dogs" / "d_mask.png", a)
    _write(root / "normal" / "n.png", blank + 80)


def test_class_folders_pair_masks_or_them_into_the_folder_class(tmp_path):
    _tree(tmp_path)
    samples, classes = class_folder_samples(tmp_path, "_mask", ["normal"])
    assert classes == ["background", "cats", "dogs"]
    by_name = {s.name: s for s in samples}
    assert sorted(by_name) == ["cats/c (1).png", "cats/c (10).png", "dogs/d.png", "normal/n.png"]
    assert [m.name for m in by_name["cats/c (1).png"].masks] == ["c (1)_mask.png", "c (1)_mask_1.png"]
    assert [m.name for m in by_name["cats/c (10).png"].masks] == ["c (10)_mask.png"]
    spec = MaskSpec("index", num_classes=3)
    both = read_sample_mask(by_name["cats/c (1).png"], spec)
    assert set(np.unique(both)) == {0, 1} and both.sum() == 16 + 20  # both lesions, class 1
    assert read_sample_mask(by_name["dogs/d.png"], spec).max() == 2
    assert read_sample_mask(by_name["normal/n.png"], spec, (20, 30)).shape == (20, 30)
    assert [s.folder for s in interleave(samples)][:3] == ["cats", "dogs", "normal"]


def test_class_folders_explicit_order_and_clear_errors(tmp_path):
    _tree(tmp_path)
    _, classes = class_folder_samples(tmp_path, "_mask", ["normal"], classes=["bg", "dogs", "cats"])
    assert classes == ["bg", "dogs", "cats"]
    with pytest.raises(InputError, match="class folders"):
        class_folder_samples(tmp_path, "_mask", ["normal"], classes=["bg", "cats"])
    with pytest.raises(InputError, match="background: folder"):
        class_folder_samples(tmp_path, "_mask", ["healthy"])
    with pytest.raises(InputError, match="have no mask named"):  # normal/ is a lesion class now, and has no masks
        class_folder_samples(tmp_path, "_mask", [])


def test_train_cli_refuses_mixed_layout_flags(tmp_path, capsys):
    from edgeseg.cli import main

    _tree(tmp_path)
    code = main(["train", "--layout", "class-folders", "--images", str(tmp_path), "--out", str(tmp_path / "m.safetensors")])
    assert code != 0 and "--layout class-folders takes --data ROOT" in capsys.readouterr().err
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.safetensors")])
    assert code != 0 and "--layout pairs needs both" in capsys.readouterr().err


def test_auto_class_weights_favour_the_rare_class_and_change_the_loss():
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from edgeseg.train import TrainConfig, ce_dice_loss, class_weights_of

    mask = np.zeros((10, 10), np.uint8)
    mask[:3, :3] = 1  # 9 % of the pixels
    mask[9, 9] = 2  # 1 %
    cfg = TrainConfig(images="x", masks="y", classes=["bg", "a", "b"], class_weights="auto")
    w = class_weights_of(cfg, SimpleNamespace(_cache=[(None, mask)]))
    assert w[0] < 1 < w[1] < w[2]
    assert np.dot(w, [0.9, 0.09, 0.01]) == pytest.approx(1.0, abs=1e-3)  # pixel-weighted mean 1
    logits = torch.zeros(1, 3, 10, 10)
    logits[:, 0] = 2.0  # everything predicted background: the rare classes are wrong
    target = torch.from_numpy(mask.astype(np.int64))[None]
    plain = ce_dice_loss(logits, target, dice_weight=0)
    weighted = ce_dice_loss(logits, target, dice_weight=0, class_weights=w)
    assert weighted.item() > plain.item()
    with pytest.raises(InputError, match="class_weights"):
        TrainConfig(images="x", masks="y", classes=["bg", "a"], class_weights=[1.0]).validate()


def test_fcn_paper_formulas_from_the_confusion_matrix():
    cm = ConfusionMatrix(3)
    cm.matrix[:] = [[80, 5, 5], [2, 6, 2], [0, 0, 0]]  # class 2: predicted 7 times, never true
    n = cm.matrix.astype(float)
    t = n.sum(1)
    iou = np.diag(n) / (t + n.sum(0) - np.diag(n))
    assert cm.pixel_accuracy == pytest.approx(86 / 100)
    assert cm.mean_class_accuracy == pytest.approx((80 / 90 + 6 / 10) / 2)  # class 2 has no true pixels
    assert cm.frequency_weighted_iou == pytest.approx((90 * iou[0] + 10 * iou[1]) / 100)
    assert cm.iou[2] == 0.0 and np.isnan(cm.class_accuracy[2])  # predicted but absent: IoU 0, recall undefined


def test_boundary_f_per_class_counts_within_the_tolerance():
    truth = np.zeros((40, 40), np.uint8)
    truth[10:30, 10:30] = 1
    shifted = np.roll(truth, 2, axis=1)
    f_tight = boundary_f_per_class(shifted, truth, 3, tolerance=0)
    f_loose = boundary_f_per_class(shifted, truth, 3, tolerance=2)
    assert f_loose[1] == 1.0 and 0 < f_tight[1] < 1 and np.isnan(f_loose[2])
    missed = boundary_f_per_class(np.zeros_like(truth), truth, 3, tolerance=2)
    assert missed[1] == 0.0
    everywhere = boundary_f_per_class(np.full_like(truth, 2), truth, 3, tolerance=2)
    assert everywhere[2] == 0.0  # predicted over the whole image, absent from the truth


def test_compare_lesion_scores_from_a_hand_matrix(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from busi_compare import lesion_scores

    # rows truth, columns prediction: background, benign, malignant
    miou, dice = lesion_scores([[90, 4, 1], [2, 6, 2], [0, 1, 4]])
    assert miou == pytest.approx((6 / (10 + 11 - 6) + 4 / (5 + 7 - 4)) / 2)
    assert dice == pytest.approx(2 * 13 / (2 * 13 + 5 + 2))  # a lesion pixel found as either lesion class counts
