"""Stabilisers against literal recursions; motion-aware: steady where the image is still, no ghost where it
moves; the render-stage MaskFilter in a real stream (ema equals the Segmenter's smooth)."""

from __future__ import annotations

import numpy as np
import pytest

import edgeseg
from edgeseg.errors import InputError
from edgeseg.stabilize import Stabilizer
from edgeseg.video import FrameSource

cv2 = pytest.importorskip("cv2")


def _dilate3(x):
    p = np.pad(x, 1)  # values >= 0: a zero border never wins the max, like cv2.dilate's default border
    h, w = x.shape
    return np.max([p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)


def test_ema_is_the_literal_recursion():
    rng = np.random.default_rng(0)
    xs = rng.random((5, 3, 6, 7)).astype(np.float32)
    stab = Stabilizer("ema", alpha=0.6)
    p = xs[0]
    assert np.allclose(stab(None, xs[0]), p)
    for x in xs[1:]:
        p = 0.6 * p + 0.4 * x
        assert np.allclose(stab(None, x), p, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])  # uint8: the lookup-table route
def test_motion_weight_falls_from_alpha_to_zero_as_the_dilated_change_goes_from_noise_to_threshold(dtype):
    rng = np.random.default_rng(1)
    grays = rng.integers(0, 40, (4, 9, 11)).astype(dtype)
    xs = rng.random((4, 2, 9, 11)).astype(np.float32)
    xs[:, 0] = 1 - xs[:, 1]
    stab = Stabilizer("motion", alpha=0.8, threshold=20, noise=5)
    p = xs[0]
    stab(grays[0], xs[0])
    for t in range(1, 4):
        change = np.abs(grays[t].astype(np.float64) - grays[t - 1])
        w = 0.8 * (1 - np.clip((_dilate3(change) - 5) / 15, 0, 1))
        p = w * p + (1 - w) * xs[t]
        out = stab(grays[t], xs[t])
        assert np.allclose(out, p, atol=1e-5)
        assert np.allclose(out.sum(0), 1, atol=1e-5)  # same weight for every class: still probabilities


def test_motion_gray_may_switch_between_uint8_and_float_frames():
    rng = np.random.default_rng(5)
    grays = rng.integers(0, 60, (4, 7, 9)).astype(np.uint8)
    xs = rng.random((4, 1, 7, 9)).astype(np.float32)
    mixed, floats = Stabilizer("motion", alpha=0.8), Stabilizer("motion", alpha=0.8)
    for t in range(4):
        gray = grays[t] if t % 2 == 0 else grays[t].astype(np.float32)
        assert np.allclose(mixed(gray, xs[t]), floats(grays[t].astype(np.float32), xs[t]), atol=1e-6)


def test_motion_averages_still_pixels_and_follows_moving_ones():
    rng = np.random.default_rng(2)
    h, w, frames = 40, 60, 12
    ema, motion = Stabilizer("ema", alpha=0.8), Stabilizer("motion", alpha=0.8)
    still_ema, still_motion, still_raw, ghost_ema, ghost_motion = [], [], [], [], []
    for t in range(frames):
        gray = np.full((h, w), 50, np.float32)
        truth = np.zeros((h, w), np.float32)
        x0 = 4 * t  # a bright block moving right, 4 px per frame, over the top half
        gray[:20, x0:x0 + 10] = 200
        truth[:20, x0:x0 + 10] = 1
        noisy = np.clip(truth + rng.normal(0, 0.25, (h, w)), 0, 1).astype(np.float32)
        planes = np.stack([1 - noisy, noisy])
        e, m = ema(gray, planes)[1], motion(gray, planes)[1]
        if t >= 4:
            still_raw.append(noisy[25:].std())
            still_ema.append(e[25:].std())
            still_motion.append(m[25:].std())
            trail = truth[:20, x0 - 4:x0] == 0  # where the block was one frame ago
            ghost_ema.append(e[:20, x0 - 4:x0][trail].mean())
            ghost_motion.append(m[:20, x0 - 4:x0][trail].mean())
    assert np.mean(still_motion) < 0.5 * np.mean(still_raw)  # the still bottom half is averaged
    assert np.mean(still_motion) == pytest.approx(np.mean(still_ema), rel=0.05)
    assert np.mean(ghost_ema) > 0.3  # EMA leaves the block's ghost behind it
    assert np.mean(ghost_motion) < 0.15  # motion-aware follows the current frame there


def test_bad_settings_are_named():
    with pytest.raises(InputError, match="stabilize"):
        Stabilizer("median")
    with pytest.raises(InputError, match="alpha"):
        Stabilizer("ema", alpha=1.0)
    with pytest.raises(InputError, match="gray"):
        Stabilizer("motion")(None, np.zeros((2, 4, 4), np.float32))


@pytest.fixture
def model(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeseg.video.testing import threshold_onnx

    return threshold_onnx(tmp_path / "threshold.onnx", size=(32, 48))


def _frames(n=6):
    rng = np.random.default_rng(4)
    frames = []
    for t in range(n):
        f = np.full((64, 96, 3), 60, np.uint8)
        cv2.circle(f, (30 + 5 * t, 32), 14, (200, 200, 200), -1)
        frames.append(np.clip(f + rng.integers(0, 70, f.shape), 0, 255).astype(np.uint8))
    return frames


def test_stream_ema_stabilizer_equals_the_segmenter_smooth(model):
    frames = _frames()
    smooth = [(r.labels, r.segmentation.foreground) for r in edgeseg.stream(FrameSource(frames), model, smooth=0.6)]
    run = edgeseg.stream(FrameSource(frames), model, stabilize=Stabilizer("ema", alpha=0.6))
    stab = [(r.labels, r.segmentation.foreground) for r in run]
    assert len(stab) == len(frames)
    # labels are read first (the overlay): both go through the 16-bit fixed-point plane, steps of 1/65534
    assert max(np.abs(a[1] - b[1]).max() for a, b in zip(smooth, stab)) <= 1.01 / 65534
    assert all((a[0] == b[0]).all() for a, b in zip(smooth, stab))
    assert run.summary()["mask_filter"] == {"stabilize": "ema", "alpha": 0.6, "refine": "none"}


def test_stream_guided_refine_gives_frame_size_masks_and_counts_its_cost(model):
    frames = _frames(3)
    plain = list(edgeseg.stream(FrameSource(frames), model))
    refined = list(edgeseg.stream(FrameSource(frames), model, refine="guided", stabilize="motion"))
    for b in refined:
        assert b.labels.shape == b.segmentation.foreground.shape == (64, 96)
        assert (b.labels == (b.segmentation.foreground > 0.5)).all()
        assert b.timings["post"] >= b.segmentation.timings["filter"] > 0
    assert any((a.labels != b.labels).any() for a, b in zip(plain, refined))
    assert "mask_filter" not in edgeseg.stream(FrameSource(frames), model, max_frames=1).run()


def test_stream_refuses_two_temporal_filters(model):
    with pytest.raises(InputError, match="smooth/stabilize"):
        edgeseg.stream(FrameSource(_frames(1)), model, smooth=0.5, stabilize="motion")
    with pytest.raises(InputError, match="refine"):
        edgeseg.stream(FrameSource(_frames(1)), model, refine="bicubic")


def test_run_command_takes_the_filters_and_reports_video_quality(tmp_path, model, capsys):
    import json

    from edgeseg.cli import main
    from edgeseg.video.testing import write_clip

    clip = write_clip(tmp_path / "in.avi", frames=8, size=(96, 64), fps=25)
    summary_path = tmp_path / "s.json"
    rc = main(["run", "--model", str(model), "--source", str(clip), "--sink", "null", "--quiet", "--threads", "1",
               "--stabilize", "motion", "--smooth", "0.7", "--refine", "guided", "--quality",
               "--summary", str(summary_path)])
    assert rc == 0
    summary = json.loads(summary_path.read_text())
    assert summary["mask_filter"] == {"stabilize": "motion", "alpha": 0.7, "refine": "guided"}
    quality = summary["video_quality"]
    assert quality["frames"] == 8 and 0 <= quality["flicker"] <= 1
    assert main(["run", "--model", str(model), "--source", str(clip), "--sink", "null", "--quiet",
                 "--stabilize", "none", "--smooth", "0.5"]) == 2
    assert "--smooth" in capsys.readouterr().err


def test_demo_and_selfie_default_to_the_motion_stabilizer_unless_smooth_is_given():
    import argparse

    from edgeseg.commands import demo, selfie
    from edgeseg.commands.run import temporal_options

    for command in (demo, selfie):
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        base = ["--source", "x.mp4"] if command is selfie else []
        args = parser.parse_args(base)
        smooth, stab = temporal_options(args.smooth, args.stabilize, args.stabilize_default)
        assert smooth is None and stab.mode == "motion"
        args = parser.parse_args([*base, "--smooth", "0.5"])  # today's EMA, unchanged
        assert temporal_options(args.smooth, args.stabilize, args.stabilize_default) == (0.5, None)
        args = parser.parse_args([*base, "--stabilize", "none"])
        assert temporal_options(args.smooth, args.stabilize, args.stabilize_default) == (None, None)
    from edgeseg.commands import run

    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    args = parser.parse_args(["--model", "m.onnx", "--source", "x.mp4"])
    assert temporal_options(args.smooth, args.stabilize, args.stabilize_default) == (None, None)  # run: opt-in


def test_any_segmenter_and_class_count_goes_through_the_render_stage_filter():
    from edgeseg.pipeline import Segmentation
    from edgeseg.postprocess import argmax_labels

    def three_classes(frame):  # a plain callable at frame size: class from the gray level, soft probabilities
        g = frame[..., 1].astype(np.float32) / 255.0
        logits = np.stack([-4 * g, np.zeros_like(g), 4 * g - 2])
        probs = np.exp(logits) / np.exp(logits).sum(0)
        return Segmentation(labels=argmax_labels(probs), probs=probs.astype(np.float32))

    frames = [np.repeat(np.repeat(f, 8, 0), 8, 1) for f in _frames(3)]  # 512x768: halved before filtering
    results = list(edgeseg.stream(FrameSource(frames), three_classes, render=False, stabilize="motion",
                                  refine="guided"))
    for r in results:
        probs = r.segmentation.probs
        assert probs.shape == (3, 512, 768)
        assert probs.min() >= 0 and np.abs(probs.sum(0) - 1).max() < 1e-5  # clamped at 0, renormalised
        assert (r.labels == argmax_labels(probs)).all()
        assert set(np.unique(r.labels)) <= {0, 1, 2}
