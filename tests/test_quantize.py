"""FP16 and INT8 ONNX artifacts: what each file contains, that it runs in ONNX Runtime on a CPU close to
FP32, and that the sidecar says its precision. INT8 calibrates on real HC18 images."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.artifact import Artifact, Preprocess, TensorSpec
from edgeseg.errors import InputError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")


def small_segmenter(path):
    """Gray input -> Conv s2 -> Relu -> SE-style ReduceMean gate -> Conv -> Resize x2 -> logits (output of a
    blocked op, the converter's output-cast trap) with its sidecar."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32) * 0.5, "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((2, 8, 1, 1)).astype(np.float32) * 0.5, "w2"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("ReduceMean", ["r1", "axes"], ["m"], keepdims=1),
        helper.make_node("Sigmoid", ["m"], ["g"]),
        helper.make_node("Mul", ["r1", "g"], ["gated"]),
        helper.make_node("Conv", ["gated", "w2"], ["c2"]),
        helper.make_node("Resize", ["c2", "", "scales"], ["logits"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, "height", "width"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    art = Artifact(path, model="small", inputs=[TensorSpec("input", ["batch", 1, "height", "width"])],
                   outputs=[TensorSpec("logits", ["batch", 2, "height", "width"])],
                   preprocess=Preprocess(size=(64, 96), color="gray", mean=[0.2], std=[0.25]),
                   classes=["background", "head"], opset=18)
    art.save()
    return art


def _run(path, x, fuse_int8=True):
    """Run on ONNX Runtime's CPU. ``fuse_int8=False`` turns graph optimisations off, so Q/DQ pairs run as
    the ONNX spec writes them (quantise, dequantise, float op): the file's own numbers, the same on every CPU
    and what TensorRT computes. With them on, ORT fuses Q/DQ into integer kernels whose result depends on
    the CPU: without VNNI its u8s8 path saturates 16-bit partial sums (ORT's docs advise reduce_range there)."""
    options = ort.SessionOptions()
    if not fuse_int8:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _cpu_has_vnni() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


@pytest.fixture
def fp32(tmp_path):
    return small_segmenter(tmp_path / "small.onnx")


@pytest.fixture
def hc18_images(hc18_dir):
    return sorted((hc18_dir / "images").glob("*.png"))[:12]


def test_fp16_file_keeps_float32_io_and_sensitive_ops(fp32):
    from edgeseg.export.quantize import quantize_fp16

    art = quantize_fp16(fp32)
    assert art.path.name == "small.fp16.onnx" and Artifact.load(art.path).precision == "fp16"
    model = onnx.load(str(art.path))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [f32]
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [f32]
    weights = {t.name: t.data_type for t in model.graph.initializer}
    assert weights["w1"] == f16 and weights["w2"] == f16
    assert set(art.extra["quantization"]["fp32_ops"]) == {"Resize", "ReduceMean"}
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in ("Resize", "ReduceMean"):  # fed by a Cast to FP32
            cast = producers[node.input[0]]
            assert cast.op_type == "Cast" and cast.attribute[0].i == f32, node.name


def test_fp16_file_runs_in_onnxruntime_close_to_fp32(fp32):
    from edgeseg.export.quantize import quantize_fp16

    x = np.random.default_rng(1).standard_normal((2, 1, 64, 96)).astype(np.float32)
    want = _run(fp32.path, x)
    got = _run(quantize_fp16(fp32).path, x)
    assert got.dtype == np.float32 and got.shape == (2, 2, 64, 96)
    np.testing.assert_allclose(got, want, atol=2e-2 * np.abs(want).max())


def test_int8_calibrated_on_real_images_is_symmetric_qdq(fp32, hc18_images):
    from edgeseg.export.quantize import image_batches, quantize_int8

    art = quantize_int8(fp32, calibration=hc18_images[:8], method="minmax")
    info = Artifact.load(art.path).extra["quantization"]
    assert art.precision == "int8" and info["calibration_samples"] == 8
    model = onnx.load(str(art.path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= 4
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits]
    assert zero_points and all(np.all(z == 0) and z.dtype == np.int8 for z in zero_points)  # TensorRT needs these
    # held-out real images (not used for calibration): the INT8 file's labels agree with FP32 almost
    # everywhere, judged on the spec's Q/DQ arithmetic so the verdict is the same on every CPU
    x = np.concatenate(list(image_batches(art, hc18_images[8:])))
    want, got = _run(fp32.path, x), _run(art.path, x, fuse_int8=False)
    assert (want.argmax(1) == got.argmax(1)).mean() > 0.97
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    if _cpu_has_vnni():  # ORT's fused integer kernels are exact here too (not on AVX2-only CPUs)
        fused = _run(art.path, x)
        assert (want.argmax(1) == fused.argmax(1)).mean() > 0.97


def test_refuses_non_fp32_and_bad_arguments(fp32, tmp_path):
    from edgeseg.export.quantize import quantize, quantize_fp16

    fp16 = quantize_fp16(fp32)
    with pytest.raises(InputError, match="already fp16"):
        quantize(fp16, "fp16", tmp_path / "again.onnx")
    with pytest.raises(InputError, match="precision"):
        quantize(fp32, "int4")
    with pytest.raises(InputError, match="calibration"):
        quantize(fp32, "int8", calibration=[])
    with pytest.raises(InputError, match="method"):
        quantize(fp32, "int8", calibration=[np.zeros((1, 1, 64, 96), np.float32)], method="mse")


def test_cli_writes_both_precisions(fp32, hc18_dir, capsys):
    from edgeseg import cli

    assert cli.main(["quantize", str(fp32.path), "--precision", "fp16"]) == 0
    assert cli.main(["quantize", str(fp32.path), "--precision", "int8", "--calibration", str(hc18_dir / "images"),
                     "--limit", "4"]) == 0
    out = capsys.readouterr().out
    assert "small.fp16.onnx" in out and "small.int8.onnx" in out and "calibrated on 4 images" in out
    assert cli.main(["quantize", str(fp32.path), "--precision", "int8"]) == 2  # no --calibration
    assert "--calibration" in capsys.readouterr().err
