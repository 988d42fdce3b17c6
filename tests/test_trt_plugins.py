"""edgeseg's TensorRT plugins: ONNX nodes in domain ``edgeseg`` build into engines (JIT and AOT) whose
results match the float64 references (marker ``trt``, TensorRT 10.6+). Without TensorRT, the loader
says what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.artifact import Artifact, Preprocess, TensorSpec
from edgeseg.errors import EdgesegError


def test_register_all_without_tensorrt_names_the_route():
    from edgeseg.plugins.tensorrt import register_all

    from edgeseg._deps import available

    if available("tensorrt"):
        pytest.skip("tensorrt is installed here")
    with pytest.raises(EdgesegError, match="pip install tensorrt`"):  # no "edgeseg[tensorrt]" extra exists
        register_all()


def _plugin_onnx(path, op, inputs, output, attrs, out_shape):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node(op, [name for name, _ in inputs], [output], domain="edgeseg",
                            plugin_namespace="edgeseg", **attrs)
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgeseg", 1)])
    onnx.save(model, str(path))
    art = Artifact(path, inputs=[TensorSpec(n, list(s)) for n, s in inputs], outputs=[TensorSpec(output, list(out_shape))],
                   preprocess=Preprocess(size=(8, 8)), extra={"plugins": "edgeseg"})
    art.save()
    return art


def _needs_plugin_api():
    import tensorrt as trt
    from edgeseg.export.engine_cache import parse_version

    if parse_version(trt.__version__)[:2] < (10, 6):
        pytest.skip(f"tensorrt.plugin needs TensorRT 10.6+, this is {trt.__version__}")


def _run(engine, feed):
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    with TensorRTRunner(engine) as runner:
        return runner.infer(feed)


_ROI_ALIGN_RUN = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from test_trt_plugins import _plugin_onnx, _run
from test_kernels_roi_align import reference_roi_align
from edgeseg.export.trt_build import engine_from_onnx
tmp = Path(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
rois = np.array([[0, 1, 1, 10, 12], [1, -2, 3, 15, 18], [0, 4, 4, 4.5, 4.5]], np.float32)
art = _plugin_onnx(tmp / "roi.onnx", "RoIAlign", [("input", (2, 4, 16, 16)), ("rois", (3, 5))], "pooled",
                   dict(pooled_h=3, pooled_w=3, spatial_scale=1.0, sampling_ratio=0, aligned=1), (3, 4, 3, 3))
engine = engine_from_onnx(art, plugins="edgeseg", timing_cache=False)
got = _run(engine, {"input": x, "rois": rois})["pooled"]
error = float(np.abs(got - reference_roi_align(x, rois, (3, 3), 1.0, 0, True)).max())
print(json.dumps({"implementation": engine.engine["plugin_implementation"], "max_error": error,
                  "ptx_isa": engine.engine["aot_ptx_isa"]}))
"""


@pytest.mark.trt
@pytest.mark.parametrize("aot", [False, True])
def test_roi_align_plugin_matches_reference(tmp_path, aot):
    """AOT or JIT is decided once per process (at the first plugin import), so each variant runs in its own
    process (JIT: PATH without nvcc) and the engine's sidecar says which implementation it holds."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    _needs_plugin_api()
    if aot and not shutil.which("nvcc"):
        pytest.skip("AOT plugins need nvcc on PATH")
    env = dict(os.environ, PATH=os.environ.get("PATH", "") if aot else "")
    result = subprocess.run([sys.executable, "-c", _ROI_ALIGN_RUN, str(tmp_path), str(Path(__file__).parent)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["implementation"] == ("aot" if aot else "jit")
    assert (out["ptx_isa"] is not None) == aot
    assert out["max_error"] < 1e-4


@pytest.mark.trt
def test_deform_conv_plugin_matches_reference(tmp_path):
    _needs_plugin_api()
    from edgeseg.export.trt_build import engine_from_onnx
    from test_kernels_deform_conv import reference_deform_conv2d

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    off = rng.uniform(-2, 2, (1, 18, 8, 8)).astype(np.float32)
    mask = rng.uniform(0, 1, (1, 9, 8, 8)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    attrs = dict(stride_h=1, stride_w=1, pad_h=1, pad_w=1, dilation_h=1, dilation_w=1, groups=1, offset_groups=1)
    art = _plugin_onnx(tmp_path / "dcn.onnx", "DeformConv2d",
                       [("input", x.shape), ("offset", off.shape), ("mask", mask.shape), ("weight", w.shape),
                        ("bias", b.shape)], "out", attrs, (1, 6, 8, 8))
    engine = engine_from_onnx(art, plugins="edgeseg", timing_cache=False)
    got = _run(engine, {"input": x, "offset": off, "mask": mask, "weight": w, "bias": b})["out"]
    want = reference_deform_conv2d(x, off, w, b, (1, 1), (1, 1), (1, 1), mask)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


@pytest.mark.trt
def test_dense_crf_plugin_matches_the_numpy_crf(tmp_path):
    _needs_plugin_api()
    from edgeseg.export.trt_build import engine_from_onnx
    from edgeseg.ops import dense_crf

    rng = np.random.default_rng(2)
    logits = rng.standard_normal((1, 2, 24, 32)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    image = rng.integers(0, 256, (1, 24, 32, 3)).astype(np.float32)
    art = _plugin_onnx(tmp_path / "crf.onnx", "DenseCRF", [("probs", probs.shape), ("image", image.shape)], "refined",
                       dict(params='{"iterations": 3}'), probs.shape)
    engine = engine_from_onnx(art, plugins="edgeseg", timing_cache=False)
    got = _run(engine, {"probs": probs, "image": image})["refined"]
    want = dense_crf(probs[0], image[0].astype(np.uint8), iterations=3)
    np.testing.assert_allclose(got[0], want, atol=1e-3)
