"""The BUSI comparison's own pieces: seeded initialisation, CRF-as-RNN wrapper, claims, README block, eval's predictor.

No BUSI data needed (synthetic images, the shipped HC18 checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[1]
HC18 = REPO / "edgeseg" / "assets" / "hc18_fastseg.safetensors"


@pytest.fixture()
def compare(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import busi_compare

    return busi_compare


def test_seeded_checkpoint_takes_every_hc18_tensor_but_the_class_outputs(compare, tmp_path):
    from safetensors.torch import load_file

    from edgeseg.artifact import Artifact
    from edgeseg.models import load_checkpoint

    path = tmp_path / "seed.safetensors"
    copied = compare.seeded_checkpoint(HC18, path, "fastseg", {}, ["background", "benign", "malignant"])
    donor, seeded = load_file(str(HC18)), load_file(str(path))
    same = [k for k in donor if k in seeded and donor[k].shape == seeded[k].shape]
    assert copied == len(same) > 200
    assert all(torch.equal(donor[k], seeded[k]) for k in same)
    different = sorted(k for k in seeded if k not in same)
    assert different and all(seeded[k].shape[0] == 3 and donor[k].shape[0] == 2 for k in different)  # 2 -> 3 classes
    art, hc18 = Artifact.load(path), Artifact.load(HC18)
    assert art.classes == ["background", "benign", "malignant"]
    assert art.preprocess.mean == hc18.preprocess.mean and art.preprocess.std == hc18.preprocess.std
    model, _ = load_checkpoint(path)
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 3, 64, 64)


def test_crf_rnn_wrapper_feeds_the_crf_the_image_in_0_255(compare):
    from busi_crf import crf_rnn_model

    from edgeseg.artifact import Artifact, Preprocess

    art = Artifact(path=Path("m.safetensors"), classes=["bg", "a", "b"],
                   preprocess=Preprocess(color="gray", mean=[0.3], std=[0.2]))
    backbone = torch.nn.Conv2d(1, 3, 3, padding=1)
    model = crf_rnn_model(backbone, art, iterations=2, window=5).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        got = model(x)
        want = model.crf(backbone(x), (x * 0.2 + 0.3) * 255.0)
        plain = model.crf(backbone(x), x)  # a CRF fed the normalised input sees other edges
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, plain, atol=1e-4)
    torch.testing.assert_close(got.exp().sum(1), torch.ones(2, 16, 16))  # log-probabilities


def _row(name: str, miou: float, bf: float, **extra) -> dict:
    iou = {"background": 0.9, "benign": miou, "malignant": miou}
    return {"row": name, "model": "gcn", "options": {}, "classes": list(iou), "train_seconds": 60.0, "epochs_run": 8,
            "best_epoch": 7, "val_images": 134, "miou": miou, "iou": iou, "lesion_miou": miou, "lesion_dice": 0.6,
            "boundary_f": bf, "params_m": 2.8, "gflops_256": 1.2, "latency_ms": {"256": 10.0}, **extra}


SETUP = {"epochs": 8, "max_minutes": None, "size": 128, "batch_size": 8, "lr": 0.003, "seed": 0,
         "class_weights": "auto", "width": 32, "latency_sizes": [256], "device": "a test"}


def test_crf_claims_compare_each_crf_row_with_its_base(compare):
    rows = [_row("gcn_br", 0.50, 0.050), _row("gcn_br+densecrf", 0.495, 0.070, base="gcn_br"),
            _row("gcn_br+crfrnn", 0.495, 0.040, base="gcn_br")]
    claims = "\n".join(compare.claims_table(rows))
    # DenseCRF's claim is about boundaries: judged on boundary F (+0.020) although mIoU fell by 0.005
    assert ("| DenseCRF sharpens boundaries (gcn_br+densecrf vs gcn_br) | gcn_br+densecrf | gcn_br | -0.005 | +0.020 "
            "| boundary F | yes |") in claims
    assert "gcn_br+crfrnn | gcn_br | -0.005 | -0.010 | mIoU | within ±0.01" in claims


def test_region_claims_are_judged_on_miou_and_boundary_claims_on_boundary_f(compare):
    rows = [_row("gcn_no_br", 0.50, 0.060), _row("gcn_br", 0.53, 0.045), _row("fcn8s", 0.45, 0.080)]
    claims = {line.split(" | ")[0][2:]: line for line in compare.claims_table(rows)[2:]}
    assert claims["Boundary Refinement recovers boundaries (GCN+BR vs GCN w/o BR)"].endswith("| boundary F | no |")
    assert claims["large kernels fix region misclassification (GCN w/o BR vs FCN-8s)"].endswith("| mIoU | yes |")


def test_readme_block_replaces_only_the_marked_text(compare, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n\nbefore\n{compare.README_START}\nold table\n{compare.README_END}\nafter\n")
    rows = [_row("fcn8s", 0.40, 0.05), _row("gcn_br", 0.45, 0.06)]
    compare.write_readme(readme, rows, SETUP)
    text = readme.read_text()
    assert text.startswith("# top\n\nbefore\n" + compare.README_START) and text.endswith(compare.README_END + "\nafter\n")
    assert "old table" not in text
    assert "| gcn_br | 8 (7) | 1.0 | 0.450 |" in text and "Trained on: a test." in text
    compare.write_readme(readme, rows, SETUP)
    assert readme.read_text() == text  # idempotent
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="lacks the markers"):
        compare.write_readme(readme, rows, SETUP)


def test_evaluate_scores_the_given_predictor_with_the_model_sidecar(tmp_path):
    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.evaluate import evaluate
    from edgeseg.models import create_model, save_checkpoint

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    truths = {}
    for i in range(3):
        mask = np.zeros((40, 48), np.uint8)
        mask[5 + i:20 + i, 10:30] = 255
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 256, (40, 48), dtype=np.uint8))
        cv2.imwrite(str(masks / f"{i}.png"), mask)
        truths[i] = mask > 0
    ckpt = tmp_path / "m.safetensors"
    torch.manual_seed(0)
    save_checkpoint(create_model("fastseg_small", num_classes=2, in_channels=1), ckpt,
                    Artifact(path=ckpt, preprocess=Preprocess(size=(32, 32), color="gray", mean=[0.5], std=[0.25])))
    calls = []

    def perfect(image):  # knows the truth: two score planes whose argmax is the mask
        i = len(calls) % 3
        calls.append(image.shape)
        return np.stack([~truths[i], truths[i]]).astype(np.float32)

    report = evaluate(ckpt, images, masks, split="all", predictor=perfect)
    assert calls == [(40, 48)] * 3
    assert report.metrics["mean_iou"] == 1.0 and report.metrics["classes"] == ["background", "foreground"]
    untrained = evaluate(ckpt, images, masks, split="all")
    assert untrained.metrics["mean_iou"] < 1.0  # the model itself, when no predictor is given


def test_update_keeps_the_rows_not_redone_and_refuses_another_budget(compare, tmp_path):
    import json
    from types import SimpleNamespace

    setup = {**SETUP, "limit": None, "threads": 1, "quant_images": 20, "command": "first", "total_minutes": 27.0,
             "max_minutes": 4}
    rows = [_row("fcn8s", 0.40, 0.05), _row("gcn_br", 0.45, 0.06), _row("gcn_br+densecrf", 0.46, 0.07, base="gcn_br")]
    (tmp_path / "results.json").write_text(json.dumps({"setup": setup, "rows": rows}))
    args = SimpleNamespace(out=tmp_path, models=["gcn_br"], **{k: setup[k] for k in compare.SAME_BUDGET})
    kept, runs = compare.kept_rows(args)
    assert [r["row"] for r in kept] == ["fcn8s"] and kept[0]["run"] == 0  # redone and CRF rows are dropped
    assert runs == [{"command": "first", "device": "a test", "max_minutes": 4, "total_minutes": 27.0}]
    args.size = 256
    with pytest.raises(SystemExit, match="size 128 there, 256 here"):
        compare.kept_rows(args)
    lines = compare._commands(kept + [{**_row("gcn_br", 0.5, 0.06), "run": 1}],
                              {"runs": runs + [{"command": "second", "device": "b", "max_minutes": 10,
                                                "total_minutes": 30.0}]})
    assert lines[-2:] == ["1. `first` (27.0 min on a test, cap 4 min per model): fcn8s",
                          "2. `second` (30.0 min on b, cap 10 min per model): gcn_br"]
