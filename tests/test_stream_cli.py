"""`edgeseg run` and `edgeseg demo`: a real ONNX model over a real clip, the summary, Ctrl-C in a real process,
and the demo's instructions when its model is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.errors import ArtifactError
from edgeseg.video.testing import count_frames, threshold_onnx, write_clip

pytest.importorskip("cv2")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def model(tmp_path):
    return threshold_onnx(tmp_path / "threshold.onnx", size=(64, 96))


def test_run_writes_video_and_summary(tmp_path, model, capsys):
    clip = write_clip(tmp_path / "in.avi", frames=25, fps=25)
    out, summary_path = tmp_path / "out.mp4", tmp_path / "summary.json"
    rc = main(["run", "--model", str(model), "--source", str(clip), "--sink", str(out),
               "--summary", str(summary_path), "--threads", "1", "--smooth", "0.3"])
    assert rc == 0
    summary = json.loads(summary_path.read_text())
    assert summary["frames_processed"] == 25 and summary["stopped_by"] == "end"
    assert summary["backend"] == "onnxruntime" and summary["latency_ms"]["infer"]["count"] == 25
    assert count_frames(out) == 25
    table = capsys.readouterr().out
    assert "end_to_end" in table and "25 processed, 0 dropped" in table


def test_run_preset_reaches_the_h264_encoder_and_is_refused_for_other_sinks(tmp_path, model, capsys):
    pytest.importorskip("av")
    clip = write_clip(tmp_path / "in.avi", frames=6, fps=25)
    out = tmp_path / "fast.mp4"
    assert main(["run", "--model", str(model), "--source", str(clip), "--sink", str(out), "--preset", "ultrafast",
                 "--quiet"]) == 0
    assert count_frames(out) == 6
    assert b"cabac=0" in out.read_bytes()  # x264 writes its settings into the stream; only ultrafast turns CABAC off
    for command in ("run", "selfie"):
        rc = main([command, "--model", str(model), "--source", str(clip), "--sink", str(tmp_path / "frames") + "/",
                   "--preset", "ultrafast"])
        assert rc == 2 and "--preset: got 'ultrafast' for sink" in capsys.readouterr().err


def test_run_with_missing_source_is_one_clear_line(tmp_path, model, capsys):
    rc = main(["run", "--model", str(model), "--source", str(tmp_path / "none.mp4"), "--sink", "null"])
    assert rc == 2
    assert "source file not found" in capsys.readouterr().err


def test_run_help_teaches_with_examples(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "Examples:" in text and "csi://0" in text and "--realtime" in text


def test_ctrl_c_in_a_real_process_stops_cleanly(tmp_path, model):
    clip = write_clip(tmp_path / "in.avi", frames=20, fps=25)
    out, summary_path = tmp_path / "out.mp4", tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "edgeseg", "run", "--model", str(model), "--source", str(clip), "--loop",
           "--realtime", "--sink", str(out), "--summary", str(summary_path), "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)  # let frames flow
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted: stopped cleanly" in stdout
    summary = json.loads(summary_path.read_text())
    assert summary["stopped_by"] == "interrupt" and summary["threads_left"] == []
    assert summary["frames_processed"] > 5
    assert count_frames(out) == summary["sink"]["frames_written"] > 0


def test_demo_without_selfie_model_names_the_fetch_command(monkeypatch, capsys, tmp_path):
    from edgeseg.apps import selfie
    from edgeseg.commands import demo

    def missing(*args, **kwargs):
        raise ArtifactError("selfie model 'general' not found. Run `edgeseg fetch-selfie` once")

    monkeypatch.setattr(selfie, "selfie_model_path", missing)
    args = ["demo", "--sink", str(tmp_path / "demo.mp4"), "--max-frames", "3", "--quiet", "--threads", "1"]
    if demo.ultrasound_problem() is None:  # the shipped HC18 model and the echo cine exist: it falls back
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "run `edgeseg fetch-selfie` once" in out and "HC18 ultrasound model" in out
        assert count_frames(tmp_path / "demo.mp4") == 3
    else:
        assert main(args) == 2
        assert "edgeseg fetch-selfie" in capsys.readouterr().err


def test_demo_selfie_blur_on_megamind(tmp_path, capsys):
    from edgeseg.commands import demo

    problem = demo.selfie_problem(str(demo.MEGAMIND))
    if problem:
        pytest.skip(problem)
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--sink", str(out), "--max-frames", "8", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "Megamind.avi -> selfie segmenter (background blur)" in text and "infer" in text
    assert count_frames(out) == 8


@pytest.mark.parametrize("command", ["run", "selfie"])
def test_unwritable_sink_or_summary_is_refused_before_the_stream_starts(tmp_path, model, capsys, command):
    clip = write_clip(tmp_path / "in.avi", frames=5, fps=25)
    base = [command, "--model", str(model), "--source", str(clip), "--max-frames", "2", "--threads", "1"]
    for sink in ("/proc/edgeseg-nope/out.mp4", "/proc/edgeseg-nope/frames/"):
        assert main([*base, "--sink", sink]) == 2
        assert f"--sink: got '{sink.rstrip('/')}', expected a writable path" in capsys.readouterr().err
    (tmp_path / "taken").write_text("a file, not a folder")
    assert main([*base, "--sink", str(tmp_path / "taken")]) == 2
    assert "which is a file, expected a folder" in capsys.readouterr().err
    summary = tmp_path / "ok" / "summary.json"
    assert main([*base, "--sink", "null", "--summary", "/proc/edgeseg-nope.json"]) == 2
    assert "--summary: got '/proc/edgeseg-nope.json', expected a writable path" in capsys.readouterr().err
    assert main([*base, "--sink", str(tmp_path / "out.mp4"), "--summary", str(summary)]) == 0
    assert json.loads(summary.read_text())["frames_processed"] == 2
    assert count_frames(tmp_path / "out.mp4") == 2
