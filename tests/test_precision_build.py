"""`edgeseg build` checks that the network keeps the layers the sidecar's extra.quantization.layer_precisions lists,
with the real TensorRT-RTX library on the CPU: its parser makes the strongly typed network whose layer types fix
each layer's precision. A mixed INT8 / FP16 file whose kept layer is FP32 builds; the same file with that layer's
Q/DQ or Cast put back fails, naming the layer, and writes no engine."""

from __future__ import annotations

import numpy as np
import pytest
from test_precision_guard import SENSITIVE, blob_images, planted_segmenter

from edgeseg.artifact import Artifact

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def int8_kept(tmp_path):
    """The planted model in INT8 with conv_mix excluded: what the guard writes for it (see test_precision_guard)."""
    from edgeseg.export.quantize import quantize_int8

    planted = planted_segmenter(tmp_path / "planted.onnx")
    images = sorted((blob_images(tmp_path / "blobs", 6, seed=0) / "images").glob("*.png"))
    art = quantize_int8(planted, tmp_path / "kept.int8.onnx", calibration=images, method="minmax",
                        exclude=[SENSITIVE])
    assert art.extra["quantization"]["layer_precisions"] == {SENSITIVE: "fp32"}
    return art


@pytest.fixture
def fp16_kept(tmp_path):
    from edgeseg.export.quantize import quantize_fp16

    planted = planted_segmenter(tmp_path / "planted.onnx")
    art = quantize_fp16(planted, tmp_path / "kept.fp16.onnx", keep_nodes=[SENSITIVE])
    assert art.extra["quantization"]["layer_precisions"] == {SENSITIVE: "fp32"}
    return art


def _rewrite(art: Artifact, path, change) -> Artifact:
    """A copy of ``art`` (same sidecar, so the same layer_precisions) with ``change(model)`` applied."""
    model = onnx.load(str(art.path))
    change(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    copy = art.with_path(path)
    copy.save()
    return copy


def _requantize_input(model) -> None:
    """Put a Q/DQ pair back on conv_mix's data input (per-tensor, zero point 0), as an unguarded file has it."""
    from onnx import helper, numpy_helper

    node = next(n for n in model.graph.node if n.name == SENSITIVE)
    model.graph.initializer.extend([numpy_helper.from_array(np.array(100.0, np.float32), "mix_scale"),
                                    numpy_helper.from_array(np.array(0, np.int8), "mix_zero")])
    source = node.input[0]
    q = helper.make_node("QuantizeLinear", [source, "mix_scale", "mix_zero"], ["mix_q"], name="mix_QuantizeLinear")
    dq = helper.make_node("DequantizeLinear", ["mix_q", "mix_scale", "mix_zero"], ["mix_dq"],
                          name="mix_DequantizeLinear")
    node.input[0] = "mix_dq"
    index = list(model.graph.node).index(node)
    model.graph.node.insert(index, dq)
    model.graph.node.insert(index, q)


def _cast_to_fp16(model) -> None:
    """Run conv_mix in FP16 again: Cast its input to float16, its weights to float16, its output back to float."""
    from onnx import TensorProto, helper, numpy_helper

    node = next(n for n in model.graph.node if n.name == SENSITIVE)
    weights = {i.name: i for i in model.graph.initializer}
    for k, name in enumerate(node.input):
        if name in weights:
            half = numpy_helper.from_array(numpy_helper.to_array(weights[name]).astype(np.float16), name + "_half")
            model.graph.initializer.append(half)
            node.input[k] = half.name
    index = list(model.graph.node).index(node)
    model.graph.node.insert(index, helper.make_node("Cast", [node.input[0]], ["mix_in_half"], to=TensorProto.FLOAT16,
                                                    name="mix_cast_in"))
    node.input[0] = "mix_in_half"
    out = node.output[0]
    node.output[0] = "mix_out_half"
    model.graph.node.insert(index + 2, helper.make_node("Cast", ["mix_out_half"], [out], to=TensorProto.FLOAT,
                                                        name="mix_cast_out"))


def test_network_precisions_read_from_the_parsed_network(rtx, int8_kept, fp16_kept, tmp_path):
    from edgeseg.export.engine_precisions import network_precision_mismatches

    everything = {"conv_in": "fp32", SENSITIVE: "fp32", "relu": "fp32", "conv_out": "fp32"}
    _, mismatches, absent = network_precision_mismatches(int8_kept, everything, flavour="rtx")
    # conv_in and conv_out read DequantizeLinear outputs (TensorRT fuses them into INT8 convolutions)
    assert mismatches == {"conv_in": {"expected": "fp32", "network": ["int8"]},
                          "conv_out": {"expected": "fp32", "network": ["int8"]}} and absent == []
    _, mismatches, _ = network_precision_mismatches(fp16_kept, everything, flavour="rtx")
    assert mismatches == {name: {"expected": "fp32", "network": ["fp16"]} for name in ("conv_in", "relu", "conv_out")}
    assert network_precision_mismatches(fp16_kept, {"no_such_node": "fp32"}, flavour="rtx")[1:] == ({}, ["no_such_node"])


@pytest.mark.parametrize("kind, spoil, got", [("int8", _requantize_input, "int8"), ("fp16", _cast_to_fp16, "fp16")])
def test_build_fails_when_a_kept_layer_is_reduced(rtx, cache_home, int8_kept, fp16_kept, tmp_path, capsys,
                                                  kind, spoil, got):
    from edgeseg import cli

    art = int8_kept if kind == "int8" else fp16_kept
    good = tmp_path / f"good.{kind}.engine"
    assert cli.main(["build", str(art.path), "--flavour", "rtx", "--no-cache", "-o", str(good)]) == 0
    out = capsys.readouterr().out
    assert "network computes the 1 layer(s) the sidecar keeps in their precision" in out and good.is_file()

    spoiled = _rewrite(art, tmp_path / f"spoiled.{kind}.onnx", spoil)
    bad = tmp_path / f"bad.{kind}.engine"
    assert cli.main(["build", str(spoiled.path), "--flavour", "rtx", "--no-cache", "-o", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"  {SENSITIVE}: expected fp32, got {got}" in err and "1 layer(s)" in err and not bad.exists()


def test_engine_inspector_check_needs_a_device(rtx, int8_kept, tmp_path):
    """The engine-inspector half (edgeseg build with a GPU) as far as the real library allows without one: the API it
    uses exists in TensorRT-RTX, and an engine that cannot be deserialized here is refused with the library's
    reason. Its comparison of inspector JSON with the sidecar is tested in test_precision_guard; reading a real
    engine's inspector needs a GPU, which this project has not had."""
    from edgeseg.errors import InputError
    from edgeseg.export.engine_precisions import engine_precision_mismatches
    from edgeseg.export.trt_build import engine_from_onnx

    assert rtx.LayerInformationFormat.JSON is not None and rtx.ProfilingVerbosity.DETAILED is not None
    assert hasattr(rtx.ICudaEngine, "create_engine_inspector") and hasattr(rtx.EngineInspector,
                                                                            "get_engine_information")
    engine = engine_from_onnx(int8_kept, tmp_path / "kept.engine", flavour="rtx", detailed_profile=True,
                              timing_cache=False)
    try:
        found = engine_precision_mismatches(engine.path, {SENSITIVE: "fp32"}, flavour="rtx")
    except InputError as exc:
        assert "does not deserialize" in str(exc)
    else:  # a machine with an RTX GPU: the kept layer runs in FP32
        assert found == {}
