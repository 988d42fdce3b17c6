"""TensorRTRunner: the Runner contract on TensorRT engines (marker ``trt``), plus the parts that need no GPU:
registration, refusing non-engines and refusing engines from another TensorRT version or GPU."""

from __future__ import annotations

import numpy as np
import pytest
from test_trt_build import tiny_onnx  # tests/ is on sys.path (pytest prepend mode)

from edgeseg.artifact import Artifact
from edgeseg.errors import ArtifactError, InputError
from edgeseg.runtime.tensorrt_runner import TensorRTRunner, register, tensorrt_problem


def test_refuses_non_engine_artifacts(tmp_path):
    with pytest.raises(InputError, match="expected a .engine file"):
        TensorRTRunner(Artifact(tmp_path / "model.onnx"))


def test_registers_backend_for_engine_files():
    from edgeseg.runtime.registry import backends_for, list_backends

    register()
    assert "tensorrt" in [b.name for b in backends_for("engine")]
    problem = list_backends()["tensorrt"]
    assert problem == tensorrt_problem()
    if problem is not None:  # here: says why, in words
        assert "tensorrt" in problem or "cupy" in problem or "CUDA" in problem


@pytest.fixture
def engine(tmp_path):
    from edgeseg.export.trt_build import engine_from_onnx

    art = tiny_onnx(tmp_path / "tiny.onnx")
    return art, engine_from_onnx(art.path, max_batch=4, timing_cache=False)


def _ort(art, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.mark.trt
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_numpy_in_numpy_out_matches_onnxruntime(engine, cuda_graph):
    onnx_art, engine_art = engine
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 48)).astype(np.float32)
    with TensorRTRunner(engine_art, cuda_graph=cuda_graph) as runner:
        first = runner.infer({"input": x})["logits"]
        again = runner.infer({"input": x})["logits"]  # graph replay when cuda_graph
        single = runner.infer({"input": x[:1]})["logits"]  # another shape in the profile
    # A graph was really replayed (the second call), or graphs were off by request.
    assert (runner.graph_launches, runner.graph_disabled) == ((1, None) if cuda_graph else (0, "cuda_graph=False"))
    assert isinstance(first, np.ndarray) and first.shape == (2, 2, 32, 48)
    want = _ort(onnx_art, x)
    np.testing.assert_allclose(first, want, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(single, want[:1], rtol=1e-3, atol=1e-3)


@pytest.mark.trt
def test_cupy_in_cupy_out_without_host_copy(engine):
    import cupy as cp

    onnx_art, engine_art = engine
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 48)).astype(np.float32)
    with TensorRTRunner(engine_art) as runner:
        out = runner.infer({"input": cp.asarray(x)})["logits"]
    assert isinstance(out, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(out), _ort(onnx_art, x), rtol=1e-3, atol=1e-3)


@pytest.mark.trt
def test_shape_outside_profile_names_the_input(engine):
    _, engine_art = engine
    with TensorRTRunner(engine_art) as runner:
        with pytest.raises(InputError, match="input 'input'.*optimization profile"):
            runner.infer({"input": np.zeros((8, 3, 32, 48), np.float32)})


@pytest.mark.trt
def test_engine_from_another_tensorrt_version_is_refused(engine):
    _, engine_art = engine
    data = bytearray(engine_art.path.read_bytes())
    data[24] = (data[24] + 1) % 256  # the plan header's major version byte
    engine_art.path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="edgeseg build"):
        TensorRTRunner(engine_art).activate()


@pytest.mark.trt
def test_engine_from_another_gpu_is_refused(engine):
    _, engine_art = engine
    engine_art.engine["compute_capability"] = "1.0"
    with pytest.raises(ArtifactError, match="compute capability 1.0"):
        TensorRTRunner(engine_art).activate()


@pytest.mark.trt
def test_fp16_onnx_engine_stays_close_to_fp32(engine, tmp_path):
    from edgeseg.export.quantize import quantize_fp16
    from edgeseg.export.trt_build import engine_from_onnx

    onnx_art, engine_art = engine
    fp16 = quantize_fp16(onnx_art, tmp_path / "tiny.fp16.onnx")
    fp16_engine = engine_from_onnx(fp16, max_batch=4, timing_cache=False)
    assert fp16_engine.engine["precision"] == "fp16"
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 48)).astype(np.float32)
    with TensorRTRunner(engine_art) as r32, TensorRTRunner(fp16_engine) as r16:
        a, b = r32.infer({"input": x})["logits"], r16.infer({"input": x})["logits"]
    np.testing.assert_allclose(b, a, rtol=2e-2, atol=2e-2)
