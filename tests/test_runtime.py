"""Runner contract: lifecycle, registry, ONNX Runtime and PyTorch giving the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.artifact import Artifact, Preprocess, TensorSpec
from edgeseg.errors import ArtifactError, InputError
from edgeseg.runtime import Runner, create_runner, list_backends, register_backend

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(0)
WEIGHT = RNG.normal(size=(2, 3, 1, 1)).astype(np.float32)   # 1x1 conv: 3 channels -> 2 classes
BIAS = RNG.normal(size=(2,)).astype(np.float32)


def write_conv_onnx(path, weight=WEIGHT, bias=BIAS, in_name="input", out_name="logits"):
    """A one-node Conv graph with dynamic batch/height/width and its sidecar."""
    from onnx import TensorProto, helper, numpy_helper

    k, c = weight.shape[:2]
    graph = helper.make_graph(
        [helper.make_node("Conv", [in_name, "w", "b"], [out_name])],
        "conv",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["batch", c, "height", "width"])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", k, "height", "width"])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.save(model, str(path))
    artifact = Artifact(path=path, classes=[f"c{i}" for i in range(k)], preprocess=Preprocess(size=(8, 8)),
                        inputs=[TensorSpec(in_name, ["batch", c, "height", "width"])],
                        outputs=[TensorSpec(out_name, ["batch", k, "height", "width"])])
    artifact.save()
    return artifact


def conv_reference(x):
    return np.einsum("kc,nchw->nkhw", WEIGHT[:, :, 0, 0], x) + BIAS[None, :, None, None]


@pytest.fixture
def conv_onnx(tmp_path):
    return write_conv_onnx(tmp_path / "conv.onnx").path


def test_onnxruntime_matches_numpy_reference(conv_onnx):
    x = RNG.normal(size=(2, 3, 5, 7)).astype(np.float32)
    with create_runner(conv_onnx) as runner:
        assert runner.backend == "onnxruntime"
        out = runner.infer({"input": x})
    assert list(out) == ["logits"]
    np.testing.assert_allclose(out["logits"], conv_reference(x), atol=1e-5)


def test_torch_runner_matches_onnxruntime(conv_onnx):
    torch = pytest.importorskip("torch")
    from edgeseg.runtime import TorchRunner

    conv = torch.nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(WEIGHT))
        conv.bias.copy_(torch.from_numpy(BIAS))
    x = RNG.normal(size=(1, 3, 6, 6)).astype(np.float32)
    with TorchRunner(conv, Artifact.load(conv_onnx).with_path("conv.safetensors")) as t, create_runner(conv_onnx) as o:
        a, b = t.infer({"input": x})["logits"], o.infer({"input": x})["logits"]
    assert isinstance(a, np.ndarray)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_lifecycle_latency_and_warmup(conv_onnx):
    runner = create_runner(conv_onnx, threads=1, graph_optimization="basic")
    assert not runner.is_active and runner.last_latency_s is None
    with runner:
        assert runner.is_active and runner.active_providers == ["CPUExecutionProvider"]
        runner.warmup(2)   # zeros at preprocess size (8, 8)
        assert runner.last_latency_s > 0
    assert not runner.is_active and runner.session is None
    assert runner.input_names == ["input"] and runner.output_names == ["logits"]


def test_infer_activates_lazily(conv_onnx):
    runner = create_runner(conv_onnx)
    out = runner.infer({"input": np.zeros((1, 3, 4, 4), np.float32)})
    assert runner.is_active and out["logits"].shape == (1, 2, 4, 4)
    runner.deactivate()


def test_registry_picks_highest_priority_usable_backend(conv_onnx):
    made = []

    class Fake(Runner):
        backend = "fake"

        def __init__(self, artifact, **options):
            made.append(options)
            super().__init__(artifact)

    register_backend("fake_unusable", Fake, formats=["onnx"], priority=100, probe=lambda: "no such device")
    register_backend("fake", Fake, formats=["onnx"], priority=50)
    try:
        assert list_backends()["fake_unusable"] == "no such device"
        runner = create_runner(conv_onnx, threads=3)
        assert isinstance(runner, Fake) and made == [{"threads": 3}]
        with pytest.raises(ArtifactError, match="no such device"):
            create_runner(conv_onnx, backend="fake_unusable")
        assert create_runner(conv_onnx, backend="onnxruntime").backend == "onnxruntime"
    finally:
        from edgeseg.runtime import registry

        registry._BACKENDS.pop("fake", None)
        registry._BACKENDS.pop("fake_unusable", None)


def test_backend_name_and_format_errors(conv_onnx):
    with pytest.raises(InputError, match="backend: got 'nope'"):
        create_runner(conv_onnx, backend="nope")
    with pytest.raises(InputError, match="runs \\['safetensors'\\] files"):
        create_runner(conv_onnx, backend="torch")


def test_provider_that_is_not_installed_is_named(conv_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA provider is installed here")
    with pytest.raises(InputError, match="CUDAExecutionProvider"):
        create_runner(conv_onnx, providers=["cuda"]).activate()


def test_bad_runner_options_are_named(conv_onnx):
    with pytest.raises(InputError, match="graph_optimization"):
        create_runner(conv_onnx, graph_optimization="max")
    with pytest.raises(InputError, match="threads"):
        create_runner(conv_onnx, threads=-1)


def test_create_runner_on_a_checkpoint_uses_torch_and_matches_the_model(tmp_path):
    torch = pytest.importorskip("torch")
    from edgeseg.models import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("fastseg_small", num_classes=2, in_channels=1).eval()
    ckpt = tmp_path / "fs.safetensors"
    save_checkpoint(model, ckpt, Artifact(path=ckpt, classes=["background", "head"],
                                          preprocess=Preprocess(size=(32, 32), color="gray", mean=[0.5], std=[0.25])))
    x = RNG.normal(size=(1, 1, 32, 48)).astype(np.float32)
    runner = create_runner(ckpt)
    assert runner.backend == "torch" and runner.model is None     # nothing loaded before activate
    with runner:
        got = runner.infer({"input": x})["logits"]
    assert runner.model is None                                    # a loaded checkpoint is released
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), atol=1e-6)
    with pytest.raises(InputError, match="with 3 channels, expected 1 channels"):
        runner.infer({"input": np.zeros((1, 3, 32, 32), np.float32)})
