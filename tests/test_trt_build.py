"""ONNX -> TensorRT build path: shape profiles, CLI, engine cache keys and the version/GPU gate run
everywhere; building and running real engines needs TensorRT and a GPU (marker ``trt``)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from edgeseg.export.engine_cache import (
    EngineCache,
    GpuInfo,
    cache_key,
    check_engine_compatible,
    parse_version,
    read_plan_version,
)
from edgeseg.export.trt_build import parse_shapes_arg, profile_shapes

from edgeseg.artifact import Artifact, Preprocess, TensorSpec
from edgeseg.errors import ArtifactError, InputError


def tiny_onnx(path, channels=3, classes=2, dynamic=("batch", "height", "width")):
    """A Conv+Relu+Conv ONNX model (dynamic batch/height/width) with its sidecar."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, channels, 3, 3)).astype(np.float32) * 0.3, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((classes, 8, 1, 1)).astype(np.float32) * 0.3, "w2")
    dims_in = [dynamic[0], channels, dynamic[1], dynamic[2]]
    dims_out = [dynamic[0], classes, dynamic[1], dynamic[2]]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w1"], ["h"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Conv", ["r", "w2"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims_in)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims_out)], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    art = Artifact(path, model="tiny", inputs=[TensorSpec("input", dims_in)], outputs=[TensorSpec("logits", dims_out)],
                   preprocess=Preprocess(size=(32, 48), color="rgb"), classes=["a", "b"][:classes], opset=17)
    art.save()
    return art


def _artifact(tmp_path, shape):
    return Artifact(tmp_path / "m.onnx", inputs=[TensorSpec("input", shape)], preprocess=Preprocess(size=(64, 96)))


# --- profiles --------------------------------------------------------------------------------------
def test_profile_from_named_axes(tmp_path):
    art = _artifact(tmp_path, ["batch", 3, "height", "width"])
    profiles = profile_shapes(art, {"input": (-1, 3, -1, -1)}, max_batch=4, opt_batch=2)
    assert profiles == {"input": ((1, 3, 64, 96), (2, 3, 64, 96), (4, 3, 64, 96))}


def test_static_input_needs_no_profile(tmp_path):
    art = _artifact(tmp_path, [1, 3, 64, 96])
    assert profile_shapes(art, {"input": (1, 3, 64, 96)}) == {}


def test_unknown_dynamic_axis_asks_for_explicit_shapes(tmp_path):
    art = _artifact(tmp_path, ["batch", "num_rois", 4])
    with pytest.raises(InputError, match=r"--shapes input:MIN,OPT,MAX"):
        profile_shapes(art, {"input": (-1, -1, 4)})


def test_explicit_shapes_override_and_are_checked(tmp_path):
    art = _artifact(tmp_path, ["batch", 3, "height", "width"])
    explicit = {"input": ((1, 3, 128, 128), (1, 3, 256, 256), (2, 3, 512, 512))}
    assert profile_shapes(art, {"input": (-1, 3, -1, -1)}, shapes=explicit) == explicit
    with pytest.raises(InputError, match="min <= opt <= max"):
        profile_shapes(art, {"input": (-1, 3, -1, -1)}, shapes={"input": ((2, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))})
    with pytest.raises(InputError, match="fixes this input"):
        profile_shapes(art, {"input": (-1, 3, -1, -1)}, shapes={"input": (1, 1, 8, 8)})
    with pytest.raises(InputError, match="input names"):
        profile_shapes(art, {"input": (-1, 3, -1, -1)}, shapes={"image": (1, 3, 8, 8)})


def test_bad_batch_range(tmp_path):
    art = _artifact(tmp_path, ["batch", 3, "height", "width"])
    with pytest.raises(InputError, match="opt_batch"):
        profile_shapes(art, {"input": (-1, 3, -1, -1)}, max_batch=2, opt_batch=3)


def test_parse_shapes_arg():
    assert parse_shapes_arg(["input:1x3x8x8,2x3x8x8,4x3x8x8"]) == {"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}
    assert parse_shapes_arg(["a:b:1x2"]) == {"a:b": (1, 2)}  # names may contain ':'
    for bad in ("input", "input:1x3,2x3", "input:1xQ"):
        with pytest.raises(InputError, match="--shapes"):
            parse_shapes_arg([bad])


# --- plan header, compatibility, cache -----------------------------------------------------------
def plan_header(version=(10, 3, 0, 30), layout=0):
    return struct.pack("<II", 0x74727466, layout) + bytes(16) + bytes(version) + bytes(36)


def test_read_plan_version():
    assert read_plan_version(plan_header((10, 3, 0, 30))) == (10, 3, 0, 30)
    assert read_plan_version(plan_header(layout=7)) is None
    with pytest.raises(ArtifactError, match="plan tag"):
        read_plan_version(b"\x08\x01" + bytes(40))  # an ONNX protobuf, say
    with pytest.raises(ArtifactError, match="too short"):
        read_plan_version(b"ftrt")


def _engine_artifact(tmp_path, **engine):
    facts = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7", "onnx": "hc18_fastseg.onnx"}
    facts.update(engine)
    return Artifact(tmp_path / "m.engine", engine=facts)


def test_compatible_engine_passes(tmp_path):
    check_engine_compatible(_engine_artifact(tmp_path), plan_header(), "10.3.0.30", GpuInfo("Orin", "8.7"))


def test_engine_from_other_tensorrt_is_refused_with_rebuild_command(tmp_path):
    with pytest.raises(ArtifactError) as info:
        check_engine_compatible(_engine_artifact(tmp_path), plan_header((10, 3, 0, 30)), "10.16.0.4", GpuInfo("Orin", "8.7"))
    text = str(info.value)
    assert "10.3.0.30" in text and "10.16.0.4" in text and "edgeseg build hc18_fastseg.onnx" in text


def test_engine_from_other_gpu_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match=r"compute capability 8\.7.*compute capability 9\.0.*edgeseg build"):
        check_engine_compatible(_engine_artifact(tmp_path), plan_header(), "10.3.0.30", GpuInfo("H100", "9.0"))


def test_unknown_plan_layout_falls_back_to_sidecar_version(tmp_path):
    with pytest.raises(ArtifactError, match="sidecar"):
        check_engine_compatible(_engine_artifact(tmp_path), plan_header(layout=3), "11.1.0", GpuInfo("Orin", "8.7"))


def test_cache_key_separates_what_makes_engines_differ():
    gpu = GpuInfo("Orin", "8.7")
    base = cache_key("abc", gpu, "10.3.0.30", "fp16", {"max_batch": 1})
    assert base == cache_key("abc", gpu, "10.3.0.30", "fp16", {"max_batch": 1})
    others = [cache_key("abd", gpu, "10.3.0.30", "fp16", {"max_batch": 1}),
              cache_key("abc", GpuInfo("Orin", "9.0"), "10.3.0.30", "fp16", {"max_batch": 1}),
              cache_key("abc", gpu, "10.3.0.31", "fp16", {"max_batch": 1}),
              cache_key("abc", gpu, "10.3.0.30", "int8", {"max_batch": 1}),
              cache_key("abc", gpu, "10.3.0.30", "fp16", {"max_batch": 2})]
    assert len({base, *others}) == 6
    assert base.startswith("fp16-sm87-trt10.3.0.30-")


def test_engine_cache_lookup_needs_engine_and_sidecar(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.path_for("model", "k1")
    assert cache.lookup("model", "k1") is None
    path.write_bytes(plan_header())
    assert cache.lookup("model", "k1") is None  # no sidecar yet
    Artifact(path).save()
    assert cache.lookup("model", "k1") == path


def test_parse_version():
    assert parse_version("10.3.0.30") == (10, 3, 0, 30)
    assert parse_version("11.1.0rc2") == (11, 1, 0)


# --- CLI without TensorRT ------------------------------------------------------------------------
def test_cli_build_without_tensorrt_says_what_to_install(tmp_path, capsys):
    pytest.importorskip("onnx")
    from edgeseg import cli
    from edgeseg._deps import available

    if available("tensorrt"):
        pytest.skip("tensorrt is installed here")
    art = tiny_onnx(tmp_path / "tiny.onnx")
    assert cli.main(["build", str(art.path)]) == 2
    err = capsys.readouterr().err
    assert "tensorrt" in err and "edgeseg[tensorrt]" in err


# --- with TensorRT and a GPU -----------------------------------------------------------------------
@pytest.mark.trt
def test_build_writes_engine_and_sidecar_facts(tmp_path):
    import tensorrt as trt
    from edgeseg.export.trt_build import engine_from_onnx

    art = tiny_onnx(tmp_path / "tiny.onnx")
    engine = engine_from_onnx(art.path, max_batch=4, timing_cache=tmp_path / "tc.cache")
    assert engine.path.exists() and engine.sidecar_path.exists()
    facts = Artifact.load(engine.path).engine
    assert facts["tensorrt"] == trt.__version__ and facts["precision"] == "fp32" and facts["strongly_typed"]
    assert facts["profiles"]["input"] == [[1, 3, 32, 48], [1, 3, 32, 48], [4, 3, 32, 48]]
    assert read_plan_version(engine.path.read_bytes())[:3] == parse_version(trt.__version__)[:3]
    assert (tmp_path / "tc.cache").stat().st_size > 0


@pytest.mark.trt
def test_parser_error_is_raised_with_the_parser_log(tmp_path):
    import onnx
    from edgeseg.export.trt_build import EngineBuildError, engine_from_onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("NoSuchOp", ["input"], ["logits"], domain="nowhere")], "bad",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("nowhere", 1)])
    onnx.save(model, str(tmp_path / "bad.onnx"))
    Artifact(tmp_path / "bad.onnx").save()
    with pytest.raises(EngineBuildError, match="NoSuchOp"):
        engine_from_onnx(tmp_path / "bad.onnx")


@pytest.mark.trt
def test_to_trt_builds_once_then_hits_the_cache(tmp_path):
    from edgeseg.export.trt_build import to_trt

    art = tiny_onnx(tmp_path / "tiny.onnx")
    cache = EngineCache(tmp_path / "cache")
    first = to_trt(art.path, cache=cache)
    stamp = first.path.stat().st_mtime_ns
    second = to_trt(art.path, cache=cache)
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp
    assert len(cache.entries()) == 1
    to_trt(art.path, cache=cache, max_batch=2)
    assert len(cache.entries()) == 2
