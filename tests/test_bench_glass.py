"""`edgeseg bench --source`: glass to glass on a real video, every stage timed, the sink really written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgeseg.cli import main

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
MODEL = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "hc18_fastseg.onnx"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 frames of 96x128 MJPG video (fewer than the timed frames: the source must loop)."""
    path = tmp_path_factory.mktemp("glass") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (128, 96))
    rng = np.random.default_rng(0)
    for i in range(12):
        frame = np.full((96, 128, 3), 40, np.uint8)
        cv2.circle(frame, (40 + 4 * i, 48), 20, (200, 200, 200), -1)
        writer.write(np.clip(frame + rng.integers(0, 20, frame.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


def test_every_stage_is_timed_and_the_frame_adds_up(clip, tmp_path):
    from edgeseg.bench.glass import GLASS_STAGES, run_glass
    from edgeseg.video.sinks import Sink

    class SlowSink(Sink):  # a display that takes 3 ms per frame
        def _write(self, image):
            time.sleep(0.003)

    sink = SlowSink("slow")
    res = run_glass(MODEL, str(clip), sink=sink, size=(64, 64), iterations=20, warmup=2, threads=1, blocks=4,
                    progress=False)
    assert set(res.samples) == set(GLASS_STAGES) - {"crf"}
    assert all(len(v) == 20 for v in res.samples.values()) and res.blocks["sink"] == [5] * 4
    assert sink.frames_written == 22  # the 12-frame clip looped; warm-up frames are written too
    x = {k: np.asarray(v) for k, v in res.samples.items()}
    assert x["sink"].min() >= 0.003
    parts = x["pre"] + x["infer"] + x["post"] + x["upsample"] + x["effect"] + x["sink"]
    assert np.all(x["glass_to_glass"] >= parts)  # one thread, in sequence: the frame contains its stages
    assert np.all(x["end_to_end"] >= x["pre"] + x["infer"] + x["post"] + x["upsample"])
    assert res.config["mode"] == "glass_to_glass" and res.config["frame_size"] == [96, 128]


def test_cli_glass_run_writes_the_video_and_a_stage_table(clip, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["bench", str(MODEL), "--source", str(clip), "--sink", str(tmp_path / "out.avi"), "--size", "64x64",
                 "--iterations", "16", "--warmup", "1", "--threads", "1", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for stage in ("capture", "upsample", "effect", "sink", "glass_to_glass"):
        assert stage in text
    video = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 17 and video.read()[1].shape == (96, 128, 3)
    data = json.loads((out / "result.json").read_text())
    assert data["stages"]["glass_to_glass"]["count"] == 16 and data["config"]["sink"]["frames_written"] == 17


@pytest.mark.parametrize("extra,message", [(["--batch", "2"], "glass to glass runs one frame"),
                                           (["--sink", "x.mp4"], "without --source")])
def test_glass_option_mistakes_are_clear(clip, tmp_path, capsys, extra, message):
    argv = ["bench", str(MODEL), "--iterations", "4", "--out", str(tmp_path / "o"), *extra]
    if "--batch" in extra:
        argv += ["--source", str(clip)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
