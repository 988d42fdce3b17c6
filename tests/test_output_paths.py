"""Output paths are checked before the work starts, and a failed image write is an error naming the path
(issue 16 items 3 and 4): real files, /proc (unwritable even for root) and the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.errors import InputError
from edgeseg.outputs import ensure_writable, write_image

cv2 = pytest.importorskip("cv2")
ASSET = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "hc18_fastseg.safetensors"
UNWRITABLE = "/proc/edgeseg-nope"  # procfs refuses new files for every user, root included


def test_write_image_raises_naming_the_path_and_writes_a_readable_file(tmp_path):
    image = np.full((8, 12, 3), 200, np.uint8)
    with pytest.raises(InputError, match="--overlay: cannot write an image to '/proc/nope.png'"):
        write_image("/proc/nope.png", image, "--overlay")
    with pytest.raises(InputError, match="no_suffix"):
        write_image(tmp_path / "no_suffix", image)
    assert not (tmp_path / "no_suffix").exists()
    written = write_image(tmp_path / "new" / "ok.png", image)  # a missing folder is created
    assert np.array_equal(cv2.imread(str(written)), image)


def test_ensure_writable_names_the_option_and_path(tmp_path):
    with pytest.raises(InputError, match=f"--summary: got '{UNWRITABLE}/s.json', expected a writable path"):
        ensure_writable(f"{UNWRITABLE}/s.json", "--summary")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="--out: .*which is a file, expected a folder"):
        ensure_writable(blocker, "--out", folder=True)
    with pytest.raises(InputError, match="--out: .*expected a writable path"):
        ensure_writable(blocker / "sub", "--out", folder=True)
    with pytest.raises(InputError, match="--overlay: .*ending in one of"):
        ensure_writable(tmp_path / "hc", "--overlay", suffixes=(".png",))
    assert ensure_writable(tmp_path / "a" / "b" / "s.json", "--summary") == tmp_path / "a" / "b" / "s.json"
    assert ensure_writable(tmp_path / "c", "--out", folder=True) == tmp_path / "c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no folder created, probe removed


@pytest.mark.skipif(not ASSET.exists(), reason="the shipped HC18 model is not built yet")
@pytest.mark.parametrize("overlay", ["/proc/nope.png", "NOSUFFIX"])
def test_measure_refuses_an_unwritable_overlay_before_measuring(hc18_dir, tmp_path, capsys, overlay):
    pytest.importorskip("torch")
    overlay = str(tmp_path / "hc") if overlay == "NOSUFFIX" else overlay
    image = hc18_dir / "images" / "018_HC.png"
    assert main(["measure", str(image), "--pixel-size", "0.1", "--overlay", overlay]) == 2
    captured = capsys.readouterr()
    assert f"--overlay: got {overlay!r}" in captured.err
    assert "HC " not in captured.out  # refused before any work


def test_bench_refuses_an_unwritable_out_before_benchmarking(tmp_path, capsys):
    from edgeseg.video.testing import threshold_onnx

    model = threshold_onnx(tmp_path / "threshold.onnx", size=(32, 32))
    assert main(["bench", str(model), "--iterations", "2", "--warmup", "1", "--no-progress",
                 "--out", UNWRITABLE]) == 2
    captured = capsys.readouterr()
    assert f"--out: got {UNWRITABLE!r}" in captured.err and "median" not in captured.out


def test_run_refuses_an_unwritable_summary_before_streaming(tmp_path, capsys):
    from edgeseg.video.testing import threshold_onnx, write_clip

    model = threshold_onnx(tmp_path / "threshold.onnx", size=(32, 48))
    clip = write_clip(tmp_path / "in.avi", frames=5, fps=25)
    sink = tmp_path / "frames"
    assert main(["run", "--model", str(model), "--source", str(clip), "--sink", str(sink) + "/",
                 "--summary", f"{UNWRITABLE}/s.json", "--threads", "1"]) == 2
    assert f"--summary: got '{UNWRITABLE}/s.json'" in capsys.readouterr().err
    assert not sink.exists()  # no frame was processed


def test_run_summary_into_a_new_folder_is_written(tmp_path):
    from edgeseg.video.testing import threshold_onnx, write_clip

    model = threshold_onnx(tmp_path / "threshold.onnx", size=(32, 48))
    clip = write_clip(tmp_path / "in.avi", frames=3, fps=25)
    summary = tmp_path / "new" / "s.json"
    assert main(["run", "--model", str(model), "--source", str(clip), "--sink", "null", "--quiet",
                 "--summary", str(summary), "--threads", "1"]) == 0
    assert json.loads(summary.read_text())["frames_processed"] == 3
