"""An ONNX model without our JSON sidecar is accepted with a sidecar read from its graph, options for what a graph
cannot say, and one line naming what was assumed (issue 16 item 11). Real ONNX graphs built with onnx.helper (and
the shipped HC18 model copied without its sidecar), run through ONNX Runtime, the Segmenter and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseg.artifact import Artifact
from edgeseg.errors import ArtifactError, InputError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "edgeseg" / "assets"


def _model(path: Path, in_shape, out_channels: int = 4, last: str | None = None, out_shape=None,
           weight: np.ndarray | None = None, bias: np.ndarray | None = None) -> Path:
    """image -> 1x1 Conv (-> ``last`` op) -> scores. ``in_shape`` may hold names for dynamic dims."""
    c_in = in_shape[1] if isinstance(in_shape[1], int) else 3
    if weight is None:
        weight = np.random.default_rng(0).normal(size=(out_channels, c_in, 1, 1)).astype(np.float32)
    if bias is None:
        bias = np.zeros(out_channels, np.float32)
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["conv" if last else "scores"])]
    if last:
        nodes.append(helper.make_node(last, ["conv"], ["scores"], **({"axis": 1} if last == "Softmax" else {})))
    out_shape = out_shape or [in_shape[0], out_channels, *in_shape[2:]]
    graph = helper.make_graph(nodes, "bare", [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_graph_gives_names_shapes_and_classes_and_the_rest_is_announced(tmp_path, caplog):
    path = _model(tmp_path / "third_party.onnx", [1, 3, 64, 80])
    with caplog.at_level("WARNING", logger="edgeseg"):
        art = Artifact.load(path)
    assert not (tmp_path / "third_party.onnx.json").exists()  # nothing written next to someone else's model
    assert (art.inputs[0].name, art.inputs[0].shape, art.outputs[0].name) == ("image", [1, 3, 64, 80], "scores")
    assert art.preprocess.size == (64, 80) and art.preprocess.color == "rgb"
    assert art.preprocess.mean == [0.0, 0.0, 0.0] and art.preprocess.std == [1.0, 1.0, 1.0]
    assert art.classes == ["background", "class_1", "class_2", "class_3"] and art.output_kind == "logits"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "third_party.onnx has no sidecar" in lines[0]
    assert "assumed color rgb, mean [0, 0, 0] std [1, 1, 1]" in lines[0] and "--mean" in lines[0]
    Artifact.load(path)
    assert len(caplog.records) == 1  # said once per process


@pytest.mark.parametrize("last, kind", [("Softmax", "probs"), ("Sigmoid", "probs"), ("LogSoftmax", "logits")])
def test_output_kind_from_the_last_op(tmp_path, last, kind):
    assert Artifact.load(_model(tmp_path / "m.onnx", [1, 3, 32, 32], last=last)).output_kind == kind


def test_one_sigmoid_channel_segments_red_in_rgb_order(tmp_path):
    from edgeseg.pipeline import Segmenter

    # person = sigmoid(20 * R - 10): red pixels are foreground only if BGR frames are fed as RGB, as assumed
    weight = np.array([20.0, 0.0, 0.0], np.float32).reshape(1, 3, 1, 1)
    bias = np.array([-10.0], np.float32)
    path = _model(tmp_path / "red.onnx", [1, 3, 48, 64], 1, "Sigmoid", weight=weight, bias=bias)
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, 32:] = (0, 0, 255)  # BGR red on the right half
    with Segmenter(path) as seg:
        assert seg.classes == ["background", "foreground"]
        labels = seg(frame).labels
    assert labels[:, 32:].all() and not labels[:, :32].any()


def test_dynamic_size_is_assumed_or_given(tmp_path, caplog):
    path = _model(tmp_path / "dyn.onnx", ["N", 3, "H", "W"])
    with caplog.at_level("WARNING", logger="edgeseg"):
        assert Artifact.load(path).preprocess.size == (512, 512)
    assert "size 512x512 (dynamic in the graph)" in caplog.text
    art = Artifact.from_onnx(path, size=(96, 128), mean=[0.5] * 3, std=[0.25] * 3, color="bgr", classes=list("abcd"))
    assert (art.preprocess.size, art.preprocess.color, art.classes) == ((96, 128), "bgr", list("abcd"))
    assert "assumed" not in caplog.records[-1].getMessage()


@pytest.mark.parametrize("in_shape, out_shape, error, message", [
    ([1, 64, 64, 3], None, ArtifactError, "channels last"),
    ([1, 3, 64, 64], [1, 64, 64], ArtifactError, "ends in ArgMax"),
    ([1, 5, 64, 64], None, ArtifactError, "5 channels, expected 1 .gray. or 3"),
    ([1, 3, 64, 64], [1, "C", 64, 64], InputError, "dynamic channel count"),
])
def test_graphs_edgeseg_cannot_feed_are_named(tmp_path, in_shape, out_shape, error, message):
    path = _model(tmp_path / "odd.onnx", in_shape, 4, out_shape=out_shape,
                  weight=np.zeros((4, in_shape[1] if in_shape[1] != 64 else 3, 1, 1), np.float32))
    with pytest.raises(error, match=message):
        Artifact.load(path)


def test_given_values_are_checked_against_the_graph(tmp_path):
    path = _model(tmp_path / "m.onnx", [1, 3, 32, 32])
    with pytest.raises(InputError, match=r"classes: classes has 3 names but output 'scores' of m.onnx has 4"):
        Artifact.from_onnx(path, classes=["a", "b", "c"])
    with pytest.raises(InputError, match=r"color: got 'gray' \(1 channel\(s\)\), but input 'image'"):
        Artifact.from_onnx(path, color="gray")
    with pytest.raises(InputError, match=r"m.onnx \(no sidecar\): preprocess.std is \[0.0, 1.0, 1.0\]"):
        Artifact.from_onnx(path, std=[0.0, 1.0, 1.0])


def test_without_the_onnx_package_onnxruntime_reads_the_graph(tmp_path, monkeypatch, caplog):
    path = _model(tmp_path / "m.onnx", [1, 3, 32, 32], last="Softmax")
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError, as on an edge install
    with caplog.at_level("WARNING", logger="edgeseg"):
        art = Artifact.load(path)
    assert art.inputs[0].shape == [1, 3, 32, 32] and art.num_classes == 4
    assert art.output_kind == "logits" and "output logits (install onnx" in caplog.text


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "edgeseg", *map(str, args)], capture_output=True, text=True,
                          timeout=180, env=env)


@pytest.fixture
def frames(tmp_path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((48, 64, 3), 60 * i, np.uint8))
    return folder


def test_run_cli_accepts_a_bare_onnx_and_says_what_it_assumed(tmp_path, frames):
    path = _model(tmp_path / "m.onnx", [1, 3, 48, 64])
    proc = _cli("run", "--model", path, "--source", frames, "--fps", "10", "--sink", tmp_path / "out", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("m.onnx has no sidecar") == 1 and "assumed color rgb" in proc.stderr
    assert len(list((tmp_path / "out").iterdir())) == 3
    proc = _cli("run", "--model", path, "--source", frames, "--fps", "10", "--sink", "null", "--quiet",
                "--classes", "bg,a,b,c", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--color", "bgr",
                "--summary", tmp_path / "s.json")
    assert proc.returncode == 0, proc.stderr
    assert "assumed" not in proc.stderr and json.loads((tmp_path / "s.json").read_text())["model"] == str(path)


def test_options_are_refused_for_a_model_with_a_sidecar(tmp_path, frames):
    proc = _cli("run", "--model", ASSETS / "hc18_fastseg.onnx", "--source", frames, "--sink", "null", "--quiet",
                "--mean", "0.5")
    assert proc.returncode == 2 and "--mean: for an ONNX model without a sidecar" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_check_cli_compares_a_bare_onnx_with_its_checkpoint(tmp_path, hc18_dir):
    bare = tmp_path / "hc18.onnx"
    shutil.copy(ASSETS / "hc18_fastseg.onnx", bare)
    proc = _cli("check", bare, "--checkpoint", ASSETS / "hc18_fastseg.safetensors", "--images", hc18_dir / "images",
                "--limit", "2", "--mean", "0.1689", "--std", "0.1773", "--input-size", "256x256",
                "--classes", "background,head")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result     PASS" in proc.stdout and "hc18.onnx has no sidecar" in proc.stderr


def test_bench_cli_takes_the_options_for_a_bare_onnx(tmp_path):
    path = _model(tmp_path / "m.onnx", [1, 3, "H", "W"])
    out = tmp_path / "bench"
    proc = _cli("bench", path, "--size", "32x32", "--iterations", "20", "--warmup", "1", "--no-progress", "--out", out,
                "--classes", "bg,a,b,c", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["artifact"] == str(path) and result["input_size"] == [32, 32]
    assert "m.onnx has no sidecar" in proc.stderr and "assumed color rgb" in proc.stderr
    assert "std [" not in proc.stderr  # mean/std were given, not assumed


def test_an_artifact_goes_where_a_model_path_goes(tmp_path):
    art = Artifact.from_onnx(_model(tmp_path / "m.onnx", [1, 3, 32, 32]), classes=list("abcd"))
    assert os.fspath(art) == str(art) == str(tmp_path / "m.onnx")
    copy = Artifact.load(art)
    assert copy == art and copy is not art
