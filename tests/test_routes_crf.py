"""deeplabv3_crf on the decomposed route: the graph stops before the CRF, which runs after the engine."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
pytest.importorskip("scipy")

from _routes import build_rtx, hc18_frames, hc18_gray  # noqa: E402

from edgeseg.artifact import Artifact, Preprocess  # noqa: E402
from edgeseg.export.trt_build import EngineBuildError  # noqa: E402
from edgeseg.ops.crf_rnn import run_after_engine  # noqa: E402
from test_instance_runners import offline_trt  # noqa: E402, F401 - fixture: the stand-in tensorrt and cupy

GRAY = {"color": "gray", "mean": [0.5], "std": [0.25]}
SHAPES = {"input": ((1, 1, 16, 16), (1, 1, 40, 48), (2, 1, 64, 64))}


@pytest.fixture(scope="module")
def model():
    """DeepLabV3CRF with a one-conv backbone (the CRF and the split are what is tested; exports in seconds)."""
    from edgeseg.models import create_model

    torch.manual_seed(0)
    m = create_model("deeplabv3_crf", num_classes=2, in_channels=1, mean=[0.5], std=[0.25], window=5,
                     crf_iterations=3, width=8, aspp_channels=8)
    m.backbone = torch.nn.Conv2d(1, 2, 3, padding=1)
    torch.nn.init.normal_(m.backbone.weight, std=2.0)  # confident, varied logits: the CRF has work to do
    return m.eval()


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    """The native and the decomposed export of ``model`` (made before any test swaps in a stand-in tensorrt)."""
    folder = tmp_path_factory.mktemp("crf_exports")
    return _export(model, folder, "native"), _export(model, folder, "decomposed")


def _export(model, folder, route):
    from edgeseg.export.onnx_export import to_onnx

    artifact = Artifact(path=folder / "crf.safetensors", classes=["background", "head"],
                        preprocess=Preprocess(size=(40, 48), **GRAY))
    return to_onnx(model, artifact, folder / f"crf_{route}.onnx", route=route)


def test_decomposed_graph_ends_before_the_crf_and_the_after_engine_stage_finishes_it(model, tmp_path):
    import onnx
    import onnxruntime as ort

    art = _export(model, tmp_path, "decomposed")
    graph = onnx.load(str(art.path)).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}, "no edgeseg.DenseCRF node in the engine graph"
    stage = art.extra["export"]["after_engine"]
    assert art.extra["export"]["route"] == "decomposed" and stage["stage"] == "dense_crf"
    assert art.extra["export"]["shapes"] == "dynamic"  # checked against the backbone, not the CRF model
    assert stage["params"] == model.crf.dense_crf_params() and stage["image"]["mean"] == [0.5]
    x = hc18_frames(2, (40, 48))
    logits = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        want_logits, want = model.backbone(torch.from_numpy(x)).numpy(), model(torch.from_numpy(x)).numpy()
    assert np.abs(logits - want_logits).max() <= 1e-4
    got = run_after_engine(stage, logits, x)
    assert np.abs(got - want).max() <= 1e-4  # log Q of the whole model, CRF included
    assert np.abs(want - torch.log_softmax(torch.from_numpy(want_logits), 1).numpy()).max() > 1e-2  # the CRF acted
    seconds, size = build_rtx(art.path, SHAPES)
    assert size > 0


def test_native_graph_keeps_the_densecrf_node_which_tensorrt_rtx_cannot_parse(model, tmp_path):
    import onnx

    art = _export(model, tmp_path, "native")
    assert "DenseCRF" in {n.op_type for n in onnx.load(str(art.path)).graph.node}
    assert "after_engine" not in art.extra["export"]
    with pytest.raises(EngineBuildError, match="DenseCRF"):
        build_rtx(art.path, SHAPES)


def test_after_engine_stage_checks_its_inputs():
    from edgeseg.errors import InputError

    stage = {"stage": "dense_crf", "params": {}, "image": {"mean": [0.5], "std": [0.25], "scale": 255.0}}
    with pytest.raises(InputError, match="expected \\(N, C, H, W\\) and \\(N, K, H, W\\)"):
        run_after_engine(stage, np.zeros((1, 2, 8, 8), np.float32), np.zeros((1, 1, 8, 9), np.float32))
    with pytest.raises(InputError, match="after_engine.stage: got 'maskrcnn_post'"):
        run_after_engine({**stage, "stage": "maskrcnn_post"}, None, None)


def test_segmenter_runs_the_after_engine_crf_so_the_decomposed_graph_gives_the_native_masks(exports):
    """``edgeseg run`` on a decomposed export: the Segmenter reads ``extra.export.after_engine`` and runs the CRF
    after the graph, matching the native graph (its edgeseg.DenseCRF node through ONNX Runtime's custom op)."""
    from edgeseg.pipeline import Segmenter
    from edgeseg.plugins.common.build import host_compiler

    if host_compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the ONNX Runtime DenseCRF op the native graph needs")
    native, decomposed = exports
    plain = Artifact.load(decomposed.path)
    plain.extra = {**plain.extra, "export": {k: v for k, v in plain.extra["export"].items() if k != "after_engine"}}
    with Segmenter(native.path, backend="onnxruntime", threads=1) as want_seg, \
            Segmenter(decomposed.path, backend="onnxruntime", threads=1) as got_seg, \
            Segmenter(plain, backend="onnxruntime", threads=1) as no_crf_seg:
        assert got_seg._after_engine is not None and want_seg._after_engine is None
        for frame in hc18_gray(2):
            want, got, no_crf = want_seg(frame), got_seg(frame), no_crf_seg(frame)
            assert np.abs(got.probs - want.probs).max() <= 1e-4
            assert np.array_equal(got.labels, want.labels)
            assert np.abs(no_crf.probs - want.probs).max() > 1e-2  # without the step the masks would differ


def test_after_engine_step_reads_the_sidecar_and_refuses_what_it_cannot_run(tmp_path):
    from edgeseg.after_engine import after_engine_step
    from edgeseg.artifact import TensorSpec
    from edgeseg.errors import ArtifactError

    stage = {"stage": "dense_crf", "engine_output": "logits", "params": {"iterations": 2, "window": 3},
             "image": {"from": "input", "mean": [0.5], "std": [0.25], "scale": 255.0}}
    art = Artifact(path=tmp_path / "m.onnx", classes=["a", "b"], preprocess=Preprocess(size=(8, 8), **GRAY),
                   inputs=[TensorSpec("input", ["batch", 1, "height", "width"])],
                   outputs=[TensorSpec("logits", ["batch", 2, "height", "width"])],
                   extra={"export": {"route": "decomposed", "after_engine": stage}})
    step = after_engine_step(art)
    x = np.random.default_rng(0).normal(size=(1, 1, 8, 8)).astype(np.float32)
    logits = np.random.default_rng(1).normal(size=(1, 2, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(step(logits, x), run_after_engine(stage, logits, x))
    assert after_engine_step(Artifact(path=tmp_path / "n.onnx", extra={"export": {"route": "native"}})) is None
    art.extra["export"]["after_engine"] = {**stage, "stage": "maskrcnn_post"}
    assert after_engine_step(art) is None  # the instance decoder runs that one
    art.extra["export"]["after_engine"] = {**stage, "stage": "bilateral_solver"}
    with pytest.raises(ArtifactError, match="after_engine.stage is 'bilateral_solver', expected one of dense_crf"):
        after_engine_step(art)
    art.extra["export"]["after_engine"] = {**stage, "engine_output": "probs"}
    with pytest.raises(ArtifactError, match="engine_output is 'probs', but the graph's first output is 'logits'"):
        after_engine_step(art)
    art.extra["export"]["after_engine"] = {**stage, "image": {"mean": [0.5, 0.5], "std": [0.25], "scale": 255.0}}
    with pytest.raises(ArtifactError, match="2 means and 1 stds, expected 1 each"):
        after_engine_step(art)


def test_segmenter_runs_the_after_engine_crf_on_an_engine_through_the_tensorrt_runner(exports, tmp_path, request):
    """The engine built from a decomposed export keeps ``after_engine`` in its sidecar; the Segmenter on the
    .engine (tensorrt backend; here the stand-in ``tensorrt``/``cupy`` that runs the plan's ONNX with ONNX
    Runtime, as no GPU is lent) runs the CRF after it and matches the native graph."""
    from edgeseg.pipeline import Segmenter
    from edgeseg.plugins.common.build import host_compiler
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    if host_compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the ONNX Runtime DenseCRF op the native graph needs")
    native, decomposed = exports
    with Segmenter(native.path, backend="onnxruntime", threads=1) as want_seg:
        frames = hc18_gray(2)
        wants = [want_seg(f) for f in frames]
    trt_build = request.getfixturevalue("offline_trt")  # after the exports: torch.onnx fails with the stand-in
    engine = trt_build.engine_from_onnx(decomposed.path, tmp_path / "crf.engine", max_batch=1, timing_cache=False)
    assert engine.extra["export"]["after_engine"]["stage"] == "dense_crf"
    with Segmenter(engine.path) as seg:
        assert isinstance(seg.runner, TensorRTRunner)
        for frame, want in zip(frames, wants):
            got = seg(frame)
            assert np.abs(got.probs - want.probs).max() <= 1e-4 and np.array_equal(got.labels, want.labels)


def test_parity_report_checks_a_decomposed_graph_with_its_after_engine_step(model, exports, hc18_dir):
    """``edgeseg check`` on the decomposed export compares PyTorch's whole model with the graph plus the CRF the
    Segmenter runs after it (the graph alone outputs logits, not the model's log Q)."""
    from edgeseg.export.check import parity_report

    report = parity_report(exports[1].path, model=model, images=hc18_dir / "images", limit=2)
    assert report.max_abs <= 1e-4 and report.agreement == 1.0, report.text()


def test_evaluate_predictor_runs_the_after_engine_step_of_a_decomposed_export(exports):
    """``edgeseg evaluate`` on the decomposed export scores what the native graph scores."""
    from edgeseg.evaluate import open_predictor
    from edgeseg.plugins.common.build import host_compiler

    if host_compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the ONNX Runtime DenseCRF op the native graph needs")
    (want_predict, _), (got_predict, _) = open_predictor(exports[0].path, 1), open_predictor(exports[1].path, 1)
    for frame in hc18_gray(2):
        got, want = got_predict(frame), want_predict(frame)  # log Q, compared in log space
        assert np.abs(got - want).max() <= 1e-4 and np.array_equal(got.argmax(0), want.argmax(0))
