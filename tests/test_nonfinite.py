"""A model whose output is NaN must fail loudly, never read as "all background" / "no head found" (issue 16 item 1).

Real files: the shipped HC18 ONNX copied to tmp_path with NaN weights, or with a broken sidecar normalisation,
run through the Segmenter, the streaming loop and the `edgeseg measure` CLI in a subprocess.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseg.artifact import Artifact
from edgeseg.errors import ArtifactError, InputError

ASSET = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "hc18_fastseg.onnx"
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")


def _copy(tmp_path: Path) -> Path:
    path = tmp_path / "hc18.onnx"
    shutil.copy(ASSET, path)
    shutil.copy(ASSET.with_name(ASSET.name + ".json"), path.with_name(path.name + ".json"))
    return path


def _nan_weights(tmp_path: Path) -> Path:
    """The shipped model with its last float initializer (the classifier's bias) set to NaN."""
    from onnx import numpy_helper

    path = _copy(tmp_path)
    model = onnx.load(str(path))
    init = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT][-1]
    init.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(init).shape, np.nan, np.float32), init.name))
    onnx.save(model, str(path))
    return path


def _edit_sidecar(path: Path, **preprocess) -> None:
    side = path.with_name(path.name + ".json")
    data = json.loads(side.read_text())
    data["preprocess"].update(preprocess)
    side.write_text(json.dumps(data))


def _frame() -> np.ndarray:
    yy, xx = np.mgrid[:120, :160]
    ring = np.abs(np.hypot(yy - 60, xx - 80) - 40) < 4
    return np.where(ring, 200, 30).astype(np.uint8)


def test_nan_weights_raise_instead_of_all_background(tmp_path):
    from edgeseg.pipeline import NonFiniteOutputError, Segmenter

    with Segmenter(_nan_weights(tmp_path)) as seg, pytest.raises(NonFiniteOutputError, match="NaN") as info:
        seg(_frame())
    assert "frame 0" in str(info.value) and "'logits'" in str(info.value)


def test_check_output_every_nth_frame_and_off(tmp_path):
    from edgeseg.pipeline import NonFiniteOutputError, Segmenter

    with Segmenter(_copy(tmp_path), check_output=2) as seg:
        items = [seg.infer(seg.preprocess(_frame())) for _ in range(3)]
        for item in items:
            item.output = np.full_like(item.output, np.inf)
        with pytest.raises(NonFiniteOutputError, match="infinite values on frame 0"):
            seg.postprocess(items[0])
        with np.errstate(invalid="ignore"):
            seg.postprocess(items[1])  # frame 1 is not checked with check_output=2
        with pytest.raises(NonFiniteOutputError, match="frame 2"):
            seg.postprocess(items[2])
    with Segmenter(_nan_weights(tmp_path), check_output=0) as seg:
        assert seg(_frame()).labels.max() == 0  # the unchecked NaN result: why the check is on by default
    with pytest.raises(InputError, match="check_output"):
        Segmenter(_copy(tmp_path), check_output=-1)


def test_stream_raises_the_nan_error(tmp_path):
    import edgeseg
    from edgeseg.pipeline import NonFiniteOutputError

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), _frame())
    with pytest.raises(NonFiniteOutputError, match="NaN"):
        for _ in edgeseg.stream(str(frames), str(_nan_weights(tmp_path)), fps=10):
            pass


@pytest.mark.parametrize("std", [float("nan"), 1e-45, 0.0, -0.2, float("inf")])
def test_absurd_std_is_refused_at_load(tmp_path, std):
    path = _copy(tmp_path)
    _edit_sidecar(path, std=[std])
    with pytest.raises(ArtifactError, match=r"preprocess\.std .* expected finite numbers in \[1e-06, 1e\+06\]"):
        Artifact.load(path)


@pytest.mark.parametrize("mean", [float("nan"), float("inf"), 1e30])
def test_absurd_mean_is_refused_at_load(tmp_path, mean):
    path = _copy(tmp_path)
    _edit_sidecar(path, mean=[mean])
    with pytest.raises(ArtifactError, match=r"preprocess\.mean"):
        Artifact.load(path)
    assert math.isfinite(Artifact.load(ASSET).preprocess.std[0])


def _measure(model: Path, image: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg", "measure", "--model", str(model), "--pixel-size", "0.1",
                           str(image)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("broken", ["weights", "std"])
def test_measure_cli_exits_nonzero_instead_of_no_head_found(tmp_path, broken):
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), _frame())
    if broken == "weights":
        model = _nan_weights(tmp_path)
    else:
        model = _copy(tmp_path)
        _edit_sidecar(model, std=[1e-45])
    proc = _measure(model, image)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no head found" not in proc.stdout
    assert ("NaN" if broken == "weights" else "preprocess.std") in proc.stderr
    assert "Traceback" not in proc.stderr
