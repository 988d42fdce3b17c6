"""Video head-circumference readout: a running median per head that resets when the head changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edgeseg.apps.ultrasound import Ellipse, HeadMeasurement, read_hc_csv
from edgeseg.apps.ultrasound_video import HCReadout, UltrasoundOverlay
from edgeseg.errors import InputError

ONNX = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "hc18_fastseg.onnx"
PIXEL_MM = 0.154
STILLS = ("223_2HC.png", "707_HC.png")  # validation patients, pixel sizes 0.1537 and 0.1541 mm: HC 172 and 261 mm


def _m(hc: float, center=(400.0, 270.0), half: float = 2.0, flags: tuple[str, ...] = ()) -> HeadMeasurement:
    diameter = hc / np.pi / PIXEL_MM
    return HeadMeasurement(hc, (hc - half, hc + half), Ellipse(center, (diameter, diameter), 0.0), PIXEL_MM,
                           0.0, 0.1, 2 * half, flags)


def test_readout_is_the_median_of_one_head_and_resets_on_a_new_one():
    r = HCReadout(window=5, max_missing=2)
    states = [r.update(_m(hc)) for hc in (170.0, 171.0, 169.0, 172.0, 171.5)]
    assert [s.frames for s in states] == [1, 2, 3, 4, 5] and states[-1].hc_mm == 171.0
    assert r.update(_m(171.0, flags=("unsure_boundary",))).frames == 5  # flagged: shown, never averaged in
    jumped = r.update(_m(260.0))                       # 50 % bigger: another head
    assert jumped.reset and jumped.hc_mm == 260.0 and jumped.frames == 1 and r.heads == 2
    moved = r.update(_m(261.0, center=(650.0, 270.0)))  # same size, far away: another head
    assert moved.reset and moved.frames == 1 and r.heads == 3
    assert not r.update(None).reset and not r.update(None).reset
    lost = r.update(None)                               # a third frame without a head: the head is gone
    assert lost.reset and lost.hc_mm is None and "HC --" in lost.describe()
    with pytest.raises(InputError, match="window"):
        HCReadout(window=0)
    with pytest.raises(InputError, match="pixel_size_mm"):
        UltrasoundOverlay(pixel_size_mm=0)


def _sweep(folder: Path, hc18_dir: Path, frames_per_head: int = 10) -> list[float]:
    """Frames of two real heads, each shifted, brightened and speckled per frame; returns each frame's reference HC."""
    rng = np.random.default_rng(0)
    reference = read_hc_csv(hc18_dir / "pixel_size_and_hc.csv")
    folder.mkdir()
    truth, index = [], 0
    for name in STILLS:
        still = cv2.imread(str(hc18_dir / "images" / name), cv2.IMREAD_GRAYSCALE)
        ref = reference[name]
        for _ in range(frames_per_head):
            dx, dy = rng.integers(-6, 7, size=2)
            frame = cv2.warpAffine(still, np.float32([[1, 0, dx], [0, 1, dy]]), still.shape[::-1])
            frame = np.clip(frame * rng.uniform(0.9, 1.1) + rng.normal(0, 8, frame.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{index:03d}.png"), frame)
            truth.append(ref.hc_mm * PIXEL_MM / ref.pixel_size_mm)  # the reference at the sweep's pixel size
            index += 1
    return truth


@pytest.mark.skipif(not ONNX.exists(), reason="the shipped HC18 ONNX model is not built yet")
def test_stable_readout_over_a_synthetic_sweep_of_two_heads(hc18_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from edgeseg.video import stream

    truth = _sweep(tmp_path / "sweep", hc18_dir)
    overlay = UltrasoundOverlay(PIXEL_MM, window=7)
    with stream(str(tmp_path / "sweep"), str(ONNX), render=overlay, threads=1) as run:
        images = [result.image for result in run]
    assert len(images) == 20 and images[0].shape == (540, 800, 3)
    states = list(overlay.readouts)
    raw = np.array([s.frame.hc_mm for s in states])
    shown = np.array([s.hc_mm for s in states])
    assert [i for i, s in enumerate(states) if s.reset] == [10] and overlay.readout.heads == 2
    assert np.all(np.abs(shown - truth) / truth < 0.03)  # never a mix of the two heads
    for part in (slice(0, 10), slice(10, 20)):            # steadier than the frames it summarises
        assert np.abs(np.diff(shown[part])).sum() < np.abs(np.diff(raw[part])).sum()
    assert overlay.summary()["heads"] == 2 and overlay.summary()["frames"] == 20


@pytest.mark.skipif(not ONNX.exists(), reason="the shipped HC18 ONNX model is not built yet")
def test_run_command_with_the_hc_effect_writes_the_readout_summary(hc18_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from edgeseg.cli import main

    truth = _sweep(tmp_path / "sweep", hc18_dir, frames_per_head=4)
    summary = tmp_path / "run.json"
    args = ["run", "--model", str(ONNX), "--source", str(tmp_path / "sweep"), "--sink", str(tmp_path / "out"),
            "--effect", "hc", "--pixel-size", str(PIXEL_MM), "--hc-window", "3", "--summary", str(summary), "--quiet"]
    assert main(args) == 0
    hc = json.loads(summary.read_text())["hc"]
    assert hc["frames"] == 8 and hc["heads"] == 2 and hc["last_hc_mm"] == pytest.approx(truth[-1], rel=0.03)
    assert len(list((tmp_path / "out").iterdir())) == 8
    no_size = ["run", "--model", str(ONNX), "--source", str(tmp_path / "sweep"), "--sink", "null", "--effect", "hc"]
    assert main(no_size) == 2  # --effect hc without --pixel-size: a clear error
    assert "--pixel-size" in capsys.readouterr().err
