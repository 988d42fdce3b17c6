"""Training: the loss, the schedule, a seconds-long smoke run with resume, and the shipped HC18 model's quality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from edgeseg.errors import InputError
from edgeseg.models import load_checkpoint
from edgeseg.train import TrainConfig, ce_dice_loss, last_path_of, lr_at, train, weight_ema

ASSET = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "hc18_fastseg.safetensors"
ASSET_ONNX = ASSET.with_suffix(".onnx")


def test_loss_is_small_for_confident_right_logits_and_large_for_wrong_ones():
    target = torch.tensor([[[0, 1], [1, 0]]])
    onehot = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float()
    right = ce_dice_loss(onehot * 40 - 20, target)
    wrong = ce_dice_loss(20 - onehot * 40, target)
    assert right.item() < 1e-3
    assert wrong.item() > 20  # CE ~40 plus Dice ~1


def test_ignored_pixels_do_not_change_the_loss():
    logits = torch.randn(1, 2, 3, 3)
    target = torch.tensor([[[0, 1, 1], [0, 1, 0], [1, 1, 0]]])
    ignored = target.clone()
    ignored[0, 0, 0] = 255
    wrong_there = logits.clone()
    wrong_there[0, :, 0, 0] = torch.tensor([-9.0, 9.0])  # the ignored pixel is badly predicted
    a = ce_dice_loss(logits, ignored, ignore_index=255)
    b = ce_dice_loss(wrong_there, ignored, ignore_index=255)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_learning_rate_warms_up_then_decays_to_one_percent():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.01)
    values = [lr_at(s, 100, 10, 1.0) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def _toy_folder(root: Path, n: int = 8) -> tuple[Path, Path]:
    """Gray 48x64 images with a bright noisy ellipse; masks 0/255. Patients p0..p3, two scans each."""
    rng = np.random.default_rng(0)
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(n):
        mask = np.zeros((48, 64), np.uint8)
        cv2.ellipse(mask, (int(rng.integers(20, 44)), int(rng.integers(16, 32))), (14, 9), float(rng.uniform(0, 180)),
                    0, 360, 255, -1)
        image = np.clip(rng.normal(40, 15, mask.shape) + (mask > 0) * 120, 0, 255).astype(np.uint8)
        name = f"p{i // 2}_{i % 2}.png"
        cv2.imwrite(str(images / name), image)
        cv2.imwrite(str(masks / name), mask)
    return images, masks


def _config(tmp_path: Path, **changes) -> TrainConfig:
    images, masks = (tmp_path / "images", tmp_path / "masks") if (tmp_path / "images").exists() else _toy_folder(tmp_path)
    base = dict(images=str(images), masks=str(masks), out=str(tmp_path / "run" / "toy.safetensors"),
                model="fastseg", model_kwargs={"width": 0.5, "head_channels": 16}, classes=["background", "blob"],
                size=(32, 64), group_regex=r"^(p\d)_", val_fraction=0.25, epochs=2, batch_size=2, threads=1,
                attribution="toy data, CC0", progress=False)
    base.update(changes)
    return TrainConfig(**base)


def test_smoke_train_writes_best_and_last_checkpoints_and_resumes(tmp_path):
    result = train(_config(tmp_path))
    assert result.best_path.exists() and result.last_path == last_path_of(result.best_path)
    model, art = load_checkpoint(result.best_path)
    assert art.model == "fastseg" and art.classes == ["background", "blob"]
    assert art.preprocess.color == "gray" and tuple(art.preprocess.size) == (32, 64)
    assert 0.1 < art.preprocess.mean[0] < 0.6 and art.preprocess.std[0] > 0.05  # measured on the toy images
    assert art.extra["data_attribution"] == "toy data, CC0"
    split = art.extra["train"]["split"]
    assert split["train"] == 6 and split["val"] == 2 and len({f[:2] for f in split["val_files"]}) == 1
    assert model(torch.zeros(1, 1, 32, 64)).shape == (1, 2, 32, 64)
    assert [h["epoch"] for h in result.history] == [0, 1]

    from edgeseg.evaluate import evaluate

    report = evaluate(result.best_path, tmp_path / "images", tmp_path / "masks", split="val",
                      grid=tmp_path / "grid.png")
    assert report.images == 2 and [r["file"] for r in report.per_image] == split["val_files"]
    assert report.metrics["pixels"] == 2 * 48 * 64  # scored at the images' own size, not the 32x64 input
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid.shape == (2 * 240 + 24, 3 * 320, 3)  # a row per image (image | truth | prediction), the legend

    resumed = train(_config(tmp_path, epochs=3, resume=str(result.last_path)))
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    side = json.loads(Path(str(resumed.last_path) + ".json").read_text())
    assert side["extra"]["train"]["state"]["epoch"] == 2


def test_time_budget_stops_a_long_run_early_with_an_annealed_schedule(tmp_path):
    result = train(_config(tmp_path, epochs=500, max_minutes=0.05))
    assert 1 <= len(result.history) < 500
    side = json.loads(Path(str(result.last_path) + ".json").read_text())
    assert side["extra"]["train"]["state"]["stopped_by_time_budget"] is True
    assert result.best_path.exists()


def test_weight_ema_follows_the_exponential_average_of_weights_and_batchnorm_statistics():
    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[1].running_mean.fill_(2.0)
    ema = weight_ema(net, decay=0.75)
    ema.update_parameters(net)  # the first update copies
    with torch.no_grad():
        net[0].weight.fill_(5.0)
        net[1].running_mean.fill_(6.0)
    ema.update_parameters(net)
    assert torch.allclose(ema.module[0].weight, torch.full((1, 2), 0.75 * 1.0 + 0.25 * 5.0))
    assert torch.allclose(ema.module[1].running_mean, torch.tensor([0.75 * 2.0 + 0.25 * 6.0]))


def test_ema_run_saves_the_average_scores_both_and_resumes_it(tmp_path):
    result = train(_config(tmp_path, epochs=1, ema=0.9))  # one epoch: it is the best one
    assert "val_miou_raw" in result.history[0]
    best, last = load_checkpoint(result.best_path)[0].state_dict(), load_checkpoint(result.last_path)[0].state_dict()
    average = load_checkpoint(tmp_path / "run" / "toy.last.ema.safetensors")[0].state_dict()
    assert all(torch.equal(best[k], average[k]) for k in best)  # the best checkpoint is the average ...
    assert not all(torch.equal(last[k], average[k]) for k in last)  # ... the last one the raw weights
    resumed = train(_config(tmp_path, epochs=3, ema=0.9, resume=str(result.last_path)))
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    with pytest.raises(InputError, match="ema"):
        train(_config(tmp_path, ema=1.5))


def test_same_seed_gives_identical_weights(tmp_path):
    a = train(_config(tmp_path, epochs=1, out=str(tmp_path / "a" / "m.safetensors")))
    b = train(_config(tmp_path, epochs=1, out=str(tmp_path / "b" / "m.safetensors")))
    wa, wb = load_checkpoint(a.last_path)[0].state_dict(), load_checkpoint(b.last_path)[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cli_eval_without_data_is_a_clear_error(capsys):
    from edgeseg.cli import main

    assert main(["eval", str(ASSET)]) == 2
    assert "--data" in capsys.readouterr().err


@pytest.mark.skipif(not ASSET.exists(), reason="the shipped HC18 model is not built yet")
def test_shipped_hc18_model_segments_validation_heads(hc18_dir):
    from edgeseg.evaluate import evaluate

    report = evaluate(ASSET, hc18_dir / "images", hc18_dir / "masks", split="val",
                      hc_csv=hc18_dir / "pixel_size_and_hc.csv", limit=5)
    assert report.images == 5
    assert all(row["dice"] > 0.9 for row in report.per_image), report.per_image
    assert report.hc["mean_abs_error_mm"] < 10.0


@pytest.mark.skipif(not ASSET_ONNX.exists(), reason="the shipped HC18 ONNX model is not exported yet")
def test_shipped_onnx_through_segmenter_agrees_with_the_checkpoint(hc18_dir):
    pytest.importorskip("onnxruntime")
    import edgeseg

    frame = cv2.imread(str(hc18_dir / "images" / "018_HC.png"))  # a validation patient, BGR as a camera gives
    labels_onnx = edgeseg.Segmenter(str(ASSET_ONNX))(frame).labels
    labels_torch = edgeseg.Segmenter(str(ASSET))(frame).labels
    assert labels_onnx.shape == frame.shape[:2]
    assert (labels_onnx == labels_torch).mean() > 0.999
    truth = cv2.imread(str(hc18_dir / "masks" / "018_HC.png"))[..., 0] > 0
    dice = 2 * np.sum((labels_onnx == 1) & truth) / (np.sum(labels_onnx == 1) + truth.sum())
    assert dice > 0.9
