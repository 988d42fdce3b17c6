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
    assert read_plan_version(b"vtrt" + plan_header((1, 7, 1, 116))[4:]) == (1, 7, 1, 116)  # TensorRT-RTX
    assert read_plan_version(plan_header(layout=7)) is None
    with pytest.raises(ArtifactError, match="TensorRT plan tag"):
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
    rtx = cache_key("abc", None, "1.7.1.116", "fp16", {"max_batch": 1}, flavour="rtx", targets=["8.6", "8.9"])
    others = [cache_key("abd", gpu, "10.3.0.30", "fp16", {"max_batch": 1}),
              cache_key("abc", GpuInfo("Orin", "9.0"), "10.3.0.30", "fp16", {"max_batch": 1}),
              cache_key("abc", gpu, "10.3.0.31", "fp16", {"max_batch": 1}),
              cache_key("abc", gpu, "10.3.0.30", "int8", {"max_batch": 1}),
              cache_key("abc", gpu, "10.3.0.30", "fp16", {"max_batch": 2}),
              rtx,
              cache_key("abc", None, "1.7.1.116", "fp16", {"max_batch": 1}, flavour="rtx", targets=["8.6"]),
              cache_key("abc", None, "1.7.1.117", "fp16", {"max_batch": 1}, flavour="rtx", targets=["8.6", "8.9"])]
    assert len({base, *others}) == 9
    assert base.startswith("fp16-sm87-trt10.3.0.30-") and rtx.startswith("fp16-sm86_89-rtx1.7.1.116-")


def _rtx_header(version=(1, 7, 1, 116)):
    return b"vtrt" + plan_header(version)[4:]


def test_engine_from_the_other_library_is_refused(tmp_path):
    art = _engine_artifact(tmp_path, flavour="rtx", tensorrt="1.7.1.116", target_compute_capabilities=["8.6"])
    with pytest.raises(ArtifactError, match="built with the 'rtx' TensorRT library but this runner uses 'tensorrt'"):
        check_engine_compatible(art, _rtx_header(), "10.3.0.30", GpuInfo("Orin", "8.7"), "tensorrt")
    with pytest.raises(ArtifactError, match="'tensorrt' TensorRT library but this runner uses 'rtx'"):
        check_engine_compatible(_engine_artifact(tmp_path), plan_header(), "1.7.1.116", GpuInfo("RTX 4090", "8.9"), "rtx")


def test_rtx_engine_runs_on_each_target_and_nowhere_else(tmp_path):
    art = _engine_artifact(tmp_path, flavour="rtx", tensorrt="1.7.1.116", gpu=None, compute_capability=None,
                           target_compute_capabilities=["8.6", "8.9"])
    check_engine_compatible(art, _rtx_header(), "1.7.1.116", GpuInfo("RTX 4090", "8.9"), "rtx")
    check_engine_compatible(art, _rtx_header(), "1.7.1.116", GpuInfo("RTX 3090", "8.6"), "rtx")
    with pytest.raises(ArtifactError, match=r"\['8.6', '8.9'\].*compute capability 12.0.*--compute-capability current"):
        check_engine_compatible(art, _rtx_header(), "1.7.1.116", GpuInfo("RTX 5090", "12.0"), "rtx")


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


# --- with a TensorRT library and a GPU --------------------------------------------------------------
@pytest.mark.trt
def test_build_on_this_gpu_writes_engine_and_sidecar_facts(tmp_path):
    """Needs a device: the library's own build for the GPU present (standard TensorRT times kernels on it)."""
    from edgeseg.export.trt_build import engine_from_onnx
    from edgeseg.export.trt_flavour import load_flavour

    flavour = load_flavour("auto")
    art = tiny_onnx(tmp_path / "tiny.onnx")
    engine = engine_from_onnx(art.path, max_batch=4, timing_cache=tmp_path / "tc.cache")
    facts = Artifact.load(engine.path).engine
    assert facts["tensorrt"] == flavour.version and facts["flavour"] == flavour.name and facts["gpu"]
    assert facts["precision"] == "fp32" and facts["strongly_typed"]
    assert facts["profiles"]["input"] == [[1, 3, 32, 48], [1, 3, 32, 48], [4, 3, 32, 48]]
    assert read_plan_version(engine.path.read_bytes())[:3] == parse_version(flavour.version)[:3]
    assert (tmp_path / "tc.cache").exists() == flavour.timing_cache
