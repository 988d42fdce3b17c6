"""ONNX Runtime runs the edgeseg:DenseCRF node through the project's C custom-op library (plugins/ort_dense_crf),
which OnnxRuntimeRunner registers by itself when a graph imports the edgeseg domain."""

from __future__ import annotations

import json

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from edgeseg.errors import ArtifactError  # noqa: E402
from edgeseg.ops.crf import dense_crf  # noqa: E402
from edgeseg.plugins.common.build import host_compiler  # noqa: E402
from edgeseg.plugins.ort_dense_crf import library_path, opset_domains  # noqa: E402
from edgeseg.runtime.onnxruntime_runner import register_edgeseg_ops  # noqa: E402

pytestmark = pytest.mark.skipif(host_compiler() is None, reason="no C++ compiler (g++) to build the op library")

MATRIX = {"iterations": 4, "window": 5, "sxy_gaussian": [3.0, 2.0], "sxy_bilateral": [60.0, 80.0],
          "srgb": [13.0, 20.0, 9.0], "compat_gaussian": 2.0, "compat_bilateral": 7.0,
          "compat": [[0.0, 1.5, 0.75], [1.5, 0.0, 1.0], [0.75, 1.0, 0.0]]}


def node_model(params: str | None, classes: int, channels: int) -> bytes:
    from onnx import TensorProto, helper

    attrs = {} if params is None else {"params": params}
    node = helper.make_node("DenseCRF", ["probs", "image"], ["refined"], domain="edgeseg", **attrs)
    graph = helper.make_graph(
        [node], "crf",
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes, "H", "W"]),
         helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", "H", "W", channels])],
        [helper.make_tensor_value_info("refined", TensorProto.FLOAT, ["N", classes, "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("edgeseg", 1)])
    return model.SerializeToString()


def session(model: bytes):
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library_path()))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def case(classes, channels, size=(9, 11), batch=2, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(batch, classes, *size)) * 1.5
    probs = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)
    image = rng.integers(0, 256, (batch, *size, channels)).astype(np.float32)
    return probs, image


@pytest.mark.parametrize("params, classes, channels", [
    (MATRIX, 3, 3),
    ({"window": 3, "iterations": 2, "srgb": 10, "compat_gaussian": [1.0, 2.0], "compat_bilateral": 4.0}, 2, 1),
    ({"window": 7, "clip": 0.01, "compat_bilateral": [[0.0, 3.0], [1.0, 0.0]]}, 2, 1),
])
def test_node_is_dense_crf_with_its_params(params, classes, channels):
    probs, image = case(classes, channels)
    out = session(node_model(json.dumps(params), classes, channels)).run(None, {"probs": probs, "image": image})[0]
    for b in range(probs.shape[0]):
        want = dense_crf(probs[b], image[b].astype(np.uint8), **params)
        np.testing.assert_allclose(out[b], want, atol=1e-5)  # measured 3.8e-6: float32 logs of the unary in C
    assert np.abs(out - probs).max() > 0.05  # the CRF did something


def test_image_values_are_rounded_and_clipped_to_bytes():
    probs, image = case(2, 1, batch=1)
    noisy = image + np.float32(0.3)
    noisy[0, 0, 0, 0], noisy[0, 0, 1, 0] = -7.0, 300.0
    expected_bytes = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    params = {"window": 3}
    out = session(node_model(json.dumps(params), 2, 1)).run(None, {"probs": probs, "image": noisy})[0]
    np.testing.assert_allclose(out[0], dense_crf(probs[0], expected_bytes[0], **params), atol=2e-6)


@pytest.mark.parametrize("params, message", [
    (None, "no 'window'"),
    ('{"window": null}', "params.window: got null"),
    ('{"window": 4}', "params.window: got 4, expected an odd int"),
    ('{"window": 5, "sigma": 2}', "unknown key 'sigma'"),
    ('{"window": 5,', "not valid JSON"),
    ('{"window": 5, "sxy_gaussian": [1, 2, 3]}', "params.sxy_gaussian"),
])
def test_bad_params_are_named_when_the_session_is_created(params, message):
    with pytest.raises(Exception, match="edgeseg:DenseCRF") as raised:
        session(node_model(params, 2, 1))
    assert message in str(raised.value)


def test_bad_shapes_are_named_when_run():
    probs, image = case(2, 3)
    run = session(node_model('{"window": 3, "srgb": [13, 13]}', 2, 3)).run
    with pytest.raises(Exception, match=r"params.srgb: .* one per image channel \(3\)"):
        run(None, {"probs": probs, "image": image})
    run = session(node_model('{"window": 3}', 2, 3)).run
    with pytest.raises(Exception, match=r"image: got shape \(2, 9, 10, 3\)"):
        run(None, {"probs": probs, "image": image[:, :, :10]})


def test_opset_domains_reads_the_opset_imports_like_onnx(tmp_path):
    path = tmp_path / "crf.onnx"
    path.write_bytes(node_model('{"window": 3}', 2, 1))
    assert opset_domains(path) == {o.domain for o in onnx.load(str(path)).opset_import} == {"", "edgeseg"}
    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(path))
    del model.opset_import[1]
    onnx.save(model, str(plain))
    assert opset_domains(plain) == {""}
    options = ort.SessionOptions()
    assert register_edgeseg_ops(options, path) and not register_edgeseg_ops(options, plain)
    bad = tmp_path / "bad.onnx"
    bad.write_text("{not onnx}")
    assert not register_edgeseg_ops(options, bad)  # ONNX Runtime's own load error speaks for it


def test_ortrunner_without_a_compiler_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "crf.onnx"
    path.write_bytes(node_model('{"window": 3}', 2, 1))
    library_path.cache_clear()
    monkeypatch.setattr("edgeseg.plugins.common.build.host_compiler", lambda: None)
    try:
        with pytest.raises(ArtifactError, match="install g\\+\\+, or re-export with `edgeseg export --route decomposed`"):
            register_edgeseg_ops(ort.SessionOptions(), path)
    finally:
        library_path.cache_clear()


@pytest.fixture(scope="module")
def native_crf(tmp_path_factory):
    """The zoo's deeplabv3_crf (2 classes, gray, untrained) exported on the native route: (model, artifact)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.export.onnx_export import to_onnx
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("deeplabv3_crf", num_classes=2, in_channels=1, mean=[0.5], std=[0.25]).eval()
    folder = tmp_path_factory.mktemp("native_crf")
    art = Artifact(path=folder / "crf.safetensors", classes=["background", "head"],
                   preprocess=Preprocess(size=(64, 64), color="gray", mean=[0.5], std=[0.25]))
    art = to_onnx(model, art, folder / "crf.onnx", route="native")
    assert "DenseCRF" in {n.op_type for n in onnx.load(str(art.path)).graph.node}
    return model, art


@pytest.mark.slow
def test_deeplabv3_crf_native_route_runs_in_ortrunner_like_pytorch(native_crf):
    """The whole model (backbone + DenseCRF node) in ONNX Runtime against PyTorch, on a smooth frame and on noise.

    The untrained CRF (weights 3 and 10, 5 iterations) amplifies float32 rounding: 1e-6 relative noise on its
    input moves log Q by ~1e-3. So both runtimes are held to the float64 model as well as to each other.
    Measured (log Q, max abs): smooth frame ORT-f64 6.1e-5, torch32-f64 2.4e-4, ORT-torch32 3.0e-4;
    noise frame 6.2e-4, 1.8e-4, 6.2e-4; probabilities ORT-torch32 8.0e-5 and 1.3e-4."""
    import torch

    from edgeseg.runtime import OnnxRuntimeRunner

    model, art = native_crf
    yy, xx = np.mgrid[:64, :64]
    disc = np.where((yy - 30) ** 2 + (xx - 34) ** 2 < 18 ** 2, 180, 60) + xx // 4
    noise = np.random.default_rng(0).integers(-8, 9, disc.shape)
    pixels = np.stack([np.clip(disc + noise, 0, 255), np.random.default_rng(1).integers(0, 256, disc.shape)])
    x = ((pixels[:, None].astype(np.float32) / 255) - 0.5) / 0.25
    with OnnxRuntimeRunner(art) as runner:
        got = runner.infer({"input": x})[runner.output_names[0]]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
        exact = model.double()(torch.from_numpy(x).double()).numpy()
        model.float()
        unrefined = model.backbone(torch.from_numpy(x)).log_softmax(1).numpy()
    assert np.abs(got[0] - exact[0]).max() <= 1.5e-4  # smooth frame: closer to float64 than PyTorch float32
    assert np.abs(got[1] - exact[1]).max() <= 1.5e-3  # noise: a wrong parameter moves it by > 0.1
    assert np.abs(np.exp(got) - np.exp(want)).max() <= 3e-4 and np.abs(got - want).max() <= 1.5e-3
    assert (got.argmax(1) == want.argmax(1)).all()
    assert np.abs(want - unrefined).max() > 1.0  # the CRF changed the output: the node ran


@pytest.mark.slow
def test_edgeseg_check_parity_on_hc18(native_crf, hc18_dir):
    """`edgeseg check`'s parity report now runs the native deeplabv3_crf (it failed to load before). Its default
    1e-4 is below this untrained CRF's float32 noise (on these frames PyTorch float32 is up to 4.0e-4 from
    float64, ONNX Runtime 2.1e-4; measured ORT-torch32 4.8e-4 on 8 frames), so the check uses 1e-3."""
    from edgeseg.export.check import parity_report

    model, art = native_crf
    report = parity_report(art, model=model, images=hc18_dir / "images", limit=4, atol=1e-3)
    assert report.passed, report.text()
    assert report.agreement == 1.0 and report.max_abs > 0  # compared for real: not the same code twice


def test_native_crf_export_matches_pytorch_in_log_space_on_hc18(hc18_dir, tmp_path):
    """`edgeseg check` at its default 1e-4 on a native deeplabv3_crf whose logits are confident (softmax down to
    3.5e-6 on these frames): the exported node must run the layer's unary (the logits), not -log of probabilities
    clipped at dense_crf's 1e-5 (measured before the fix: max abs 1.41 where Q < 1e-11, probabilities within
    4e-7; after: 1.0e-5)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.export.check import parity_report
    from edgeseg.export.onnx_export import to_onnx
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("deeplabv3_crf", num_classes=2, in_channels=1, mean=[0.5], std=[0.25], window=5,
                         crf_iterations=3, width=8, aspp_channels=8)
    model.backbone = torch.nn.Conv2d(1, 2, 3, padding=1)  # exports in seconds; the CRF is what is tested
    torch.nn.init.normal_(model.backbone.weight, std=2.0)
    model.eval()
    art = Artifact(path=tmp_path / "crf.safetensors", classes=["background", "head"],
                   preprocess=Preprocess(size=(40, 48), color="gray", mean=[0.5], std=[0.25]))
    art = to_onnx(model, art, tmp_path / "crf.onnx", route="native")
    report = parity_report(art, model=model, images=hc18_dir / "images", limit=2)
    assert report.passed and report.max_abs <= 1e-4, report.text()
    assert report.max_abs > 0  # compared for real: ONNX Runtime's op, not PyTorch twice
