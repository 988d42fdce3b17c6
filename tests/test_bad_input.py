"""Every way a user can feed the runtime something wrong gets a clear error naming what and what was expected."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.artifact import Artifact, Preprocess, TensorSpec
from edgeseg.errors import ArtifactError, InputError
from edgeseg.runtime import create_runner

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")


def write_model(path, channels=3, classes=2):
    from onnx import TensorProto, helper, numpy_helper

    w = np.ones((classes, channels, 1, 1), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"])], "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes, "height", "width"])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.save(model, str(path))
    Artifact(path=path, classes=["background", "head"][:classes], preprocess=Preprocess(size=(16, 16)),
             inputs=[TensorSpec("input", ["batch", channels, "height", "width"])],
             outputs=[TensorSpec("logits", ["batch", classes, "height", "width"])]).save()
    return path


@pytest.fixture
def model_path(tmp_path):
    return write_model(tmp_path / "m.onnx")


@pytest.fixture
def runner(model_path):
    with create_runner(model_path) as r:
        yield r


def edit_sidecar(path, change):
    side = path.with_name(path.name + ".json")
    data = json.loads(side.read_text())
    change(data)
    side.write_text(json.dumps(data))


# --- model files and sidecars -----------------------------------------------------------------------
def test_truncated_onnx(model_path):
    data = model_path.read_bytes()
    model_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="cannot load.*truncated or corrupted"):
        create_runner(model_path).activate()


def test_corrupted_onnx(model_path):
    model_path.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ArtifactError, match="m.onnx: ONNX Runtime cannot load"):
        create_runner(model_path).activate()


def test_missing_model_file(tmp_path):
    with pytest.raises(ArtifactError, match="model file not found"):
        create_runner(tmp_path / "none.onnx")


def test_missing_sidecar(model_path):
    engine = model_path.rename(model_path.with_name("m.engine"))  # only a bare .onnx is read from its graph
    with pytest.raises(ArtifactError, match="sidecar not found: .*m.engine.json"):
        create_runner(engine)


def test_sidecar_input_name_not_in_graph(model_path):
    edit_sidecar(model_path, lambda d: d["inputs"][0].update(name="image"))
    with pytest.raises(ArtifactError, match=r"inputs names \['image'\] do not match .*\['input'\]"):
        create_runner(model_path).activate()


def test_sidecar_input_shape_not_matching_graph(model_path):
    edit_sidecar(model_path, lambda d: d["inputs"][0].update(shape=["batch", 1, "height", "width"]))
    with pytest.raises(ArtifactError, match="has shape .*1.* but the model file says .*3"):
        create_runner(model_path).activate()


def test_sidecar_output_not_in_graph(model_path):
    edit_sidecar(model_path, lambda d: d["outputs"][0].update(name="probs"))
    with pytest.raises(ArtifactError, match=r"outputs \['probs'\] are not outputs"):
        create_runner(model_path).activate()


def test_sidecar_preprocess_size_not_matching_a_fixed_input(model_path):
    from edgeseg import Segmenter

    edit_sidecar(model_path, lambda d: d["inputs"][0].update(shape=[1, 3, 32, 32]))
    with pytest.raises(ArtifactError, match=r"preprocess.size is \[16, 16\] but input 'input' is fixed at \[32, 32\]"):
        Segmenter(model_path)


# --- runner feeds ------------------------------------------------------------------------------------
def good():
    return np.zeros((1, 3, 16, 16), np.float32)


def test_unknown_input_name(runner):
    with pytest.raises(InputError, match=r"input name 'image': the model has no such input; expected one of \['input'\]"):
        runner.infer({"image": good()})


def test_missing_input(runner):
    with pytest.raises(InputError, match="input 'input': missing"):
        runner.infer({})


def test_wrong_channel_count(runner):
    with pytest.raises(InputError, match="with 1 channels, expected 3 channels"):
        runner.infer({"input": np.zeros((1, 1, 16, 16), np.float32)})


def test_wrong_rank(runner):
    with pytest.raises(InputError, match=r"rank 3\), expected rank 4"):
        runner.infer({"input": np.zeros((3, 16, 16), np.float32)})


def test_wrong_dtype(runner):
    with pytest.raises(InputError, match="got dtype uint8, expected float32"):
        runner.infer({"input": np.zeros((1, 3, 16, 16), np.uint8)})


def test_nan_input(runner):
    x = good()
    x[0, 1, 2, 3] = np.nan
    with pytest.raises(InputError, match="holds NaN values"):
        runner.infer({"input": x})
    out = runner.infer({"input": x}, check_finite=False)  # a caller that vouches for its values skips the scan
    assert np.isnan(next(iter(out.values()))).any()


def test_infinite_input(runner):
    x = good()
    x[0, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match="holds infinite values"):
        runner.infer({"input": x})


def test_empty_batch(runner):
    with pytest.raises(InputError, match="empty dim 0"):
        runner.infer({"input": np.zeros((0, 3, 16, 16), np.float32)})


def test_not_a_dict_or_not_an_array(runner):
    with pytest.raises(InputError, match="expected a dict of input name -> array"):
        runner.infer(good())
    with pytest.raises(InputError, match="expected a numpy.ndarray or cupy.ndarray"):
        runner.infer({"input": good().tolist()})


# --- frames into the Segmenter -------------------------------------------------------------------------
@pytest.fixture
def seg(model_path):
    from edgeseg import Segmenter

    with Segmenter(model_path) as s:
        yield s


@pytest.mark.parametrize("frame, message", [
    (np.zeros((0, 0, 3), np.uint8), "empty image"),
    (None, "got None"),
    (np.zeros((10, 10, 3), np.float32), "got dtype float32, expected uint8"),
    (np.zeros((10, 10, 4), np.uint8), "drop alpha"),
    (np.zeros((10, 10, 2), np.uint8), r"shape \(10, 10, 2\), expected \(H, W, 3\)"),
    (np.zeros((2, 10, 10, 3), np.uint8), "expected \\(H, W, 3\\) BGR"),
    ([[0, 1]], "got list"),
])
def test_bad_frames(seg, frame, message):
    with pytest.raises(InputError, match=message):
        seg(frame)


def test_bad_segmenter_options(model_path):
    from edgeseg import Segmenter

    with pytest.raises(InputError, match="smooth: got 1.5"):
        Segmenter(model_path, smooth=1.5)
    with pytest.raises(InputError, match="crf: got 'yes'"):
        Segmenter(model_path, crf="yes")
