"""The build path against the real TensorRT-RTX library, on the CPU (no GPU, no driver).

TensorRT-RTX's builder compiles ahead of time, so its ``Builder``, ``OnnxParser``, builder config,
optimization profiles, plugin registry and ``build_serialized_network`` run here for real: these tests
replace the stand-in modules for everything but execution. They run in CI wherever ``tensorrt_rtx``
imports (``rtx`` fixture) and skip with the reason elsewhere.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HC18, REPO
from test_trt_build import tiny_onnx

from edgeseg.artifact import Artifact, Preprocess, TensorSpec
from edgeseg.errors import ArtifactError, InputError, MissingDependencyError
from edgeseg.export.engine_cache import EngineCache, parse_version, read_plan_version

ASSET = REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx"


def _fails_at_build(path: Path) -> Artifact:
    """Parses, but the builder rejects it: Reshape to (5, -1) of a (batch, 48) volume feeds a 48x2 MatMul."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((48, 2), np.float32), "w")
    shape = numpy_helper.from_array(np.array([5, -1], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["flat"], name="bad_reshape"),
         helper.make_node("MatMul", ["flat", "w"], ["logits"], name="head")], "fails_at_build",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [5, 2])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    art = Artifact(path, inputs=[TensorSpec("input", ["batch", 3, 4, 4])], preprocess=Preprocess(size=(4, 4)))
    art.save()
    return art


def _unsupported_nodes(path: Path) -> Artifact:
    """A MaxPool with an indices output (TensorRT has none) and an op from an unknown domain."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["a"], name="relu0"),
         helper.make_node("MaxPool", ["a"], ["p", "idx"], kernel_shape=[2, 2], strides=[2, 2], name="pool_with_indices"),
         helper.make_node("NoSuchOp", ["p"], ["logits"], domain="nowhere", name="mystery")], "bad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("idx", TensorProto.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("nowhere", 1)])
    model.ir_version = 8
    onnx.save(model, str(path))
    art = Artifact(path, inputs=[TensorSpec("input", [1, 3, 8, 8])], preprocess=Preprocess(size=(8, 8)))
    art.save()
    return art


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --- flavour -------------------------------------------------------------------------------------
def test_auto_uses_standard_tensorrt_when_it_loads_else_rtx(rtx, monkeypatch):
    from edgeseg.export.trt_flavour import load_flavour

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    flavour = load_flavour("auto")
    assert (flavour.name, flavour.trt, flavour.version) == ("rtx", rtx, rtx.__version__)
    assert not flavour.has_dla and not flavour.timing_cache and flavour.builds_without_gpu
    with pytest.raises(InputError, match="flavour: got 'trt'"):
        load_flavour("trt")


def test_no_tensorrt_at_all_names_the_route_per_platform(monkeypatch, tmp_path, capsys):
    pytest.importorskip("onnx")
    from edgeseg import cli
    from edgeseg.runtime import tensorrt_env as trt_flavour  # the flavour adapter's home

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    monkeypatch.setattr(trt_flavour, "_gpu_found", lambda: False)
    art = tiny_onnx(tmp_path / "tiny.onnx")
    assert cli.main(["build", str(art.path), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "pip install tensorrt-rtx-cu13==" in err and "pip install tensorrt`" in err
    assert "No NVIDIA GPU was found" in err and "edgeseg[tensorrt]" not in err
    monkeypatch.setattr(trt_flavour, "is_jetson", lambda: True)
    with pytest.raises(MissingDependencyError, match="JetPack's TensorRT"):
        trt_flavour.load_flavour("tensorrt")


def test_info_reports_both_flavours_and_why(monkeypatch):
    from edgeseg._deps import require
    from edgeseg.info import Probe, tensorrt_probes

    libs = {"tensorrt": Probe("tensorrt", False, "not installed"), "tensorrt_rtx": Probe("tensorrt_rtx", True, "1.7.1.116")}
    no_gpu = Probe("cuda", False, "no driver (no /dev/nvidia0) and no GPU found")
    standard, rtx_probe = tensorrt_probes(libs, no_gpu)
    assert not standard.ok and "pip install tensorrt`" in standard.detail and "No NVIDIA GPU" in standard.detail
    assert rtx_probe.ok and rtx_probe.detail.startswith("tensorrt_rtx 1.7.1.116: builds here (AOT")
    assert "runs only on a GPU" in rtx_probe.detail
    libs["tensorrt"] = Probe("tensorrt", True, "10.3.0.30")
    standard, _ = tensorrt_probes(libs, no_gpu)
    assert not standard.ok and "only on a GPU" in standard.detail
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError) as info:  # the extra "edgeseg[tensorrt]" does not exist
        require("tensorrt", "the engine")
    assert "edgeseg[" not in str(info.value) and "pip install tensorrt`" in str(info.value)


def test_one_logger_per_process(rtx):
    from edgeseg.export.trt_build import capturing_logger
    from edgeseg.export.trt_flavour import load_flavour

    assert capturing_logger(rtx) is capturing_logger(rtx, echo_severity=4) is load_flavour("rtx").logger


def test_plugin_library_gets_the_process_logger_once(rtx, tmp_path, monkeypatch):
    """NVIDIA's plugin library keeps a raw pointer to the logger it was initialised with: it must be the
    process logger (never freed), handed over once, not a logger made per build and freed after it."""
    from edgeseg.runtime import tensorrt_env as trt_flavour  # the flavour adapter's home
    from edgeseg.export.trt_build import engine_from_onnx

    seen = []
    real = rtx.init_libnvinfer_plugins
    monkeypatch.setattr(rtx, "init_libnvinfer_plugins", lambda logger, namespace: seen.append(logger) or
                        real(logger, namespace))
    monkeypatch.setattr(trt_flavour, "_PLUGINS_READY", {})
    art = tiny_onnx(tmp_path / "tiny.onnx")
    engine_from_onnx(art, flavour="rtx")
    engine_from_onnx(art, tmp_path / "again.engine", flavour="rtx")
    assert len(seen) == 1 and seen[0] is trt_flavour.load_flavour("rtx").logger


def test_builder_errors_reach_the_error_after_an_earlier_build(rtx, tmp_path):
    """TensorRT keeps the first logger it is given for every later builder: a fresh logger per build
    (the old code) received none of the second build's errors and said "TensorRT logged no errors"."""
    from edgeseg.export.trt_build import EngineBuildError, engine_from_onnx

    engine_from_onnx(tiny_onnx(tmp_path / "tiny.onnx"), flavour="rtx")
    with pytest.raises(EngineBuildError) as info:
        engine_from_onnx(_fails_at_build(tmp_path / "bad.onnx"), flavour="rtx", max_batch=2)
    text = str(info.value)
    assert "mismatching dimensions" in text and "logged no errors" not in text
    assert "Engine generation completed" not in text  # only this build's errors, not the first build's log


# --- the build -----------------------------------------------------------------------------------
def test_strongly_typed_network_uses_the_real_flag(rtx):
    from edgeseg.export.trt_build import _network_flags
    from edgeseg.export.trt_flavour import load_flavour

    builder = rtx.Builder(load_flavour("rtx").logger)
    flags = _network_flags(rtx, strongly_typed=True, prefer_aot=True)  # no AOT-plugin flag on RTX: ignored
    assert flags == 1 << int(rtx.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    assert network.get_flag(rtx.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def test_rtx_build_writes_engine_and_sidecar(rtx, tmp_path):
    from edgeseg.export.trt_build import engine_from_onnx

    art = tiny_onnx(tmp_path / "tiny.onnx")
    engine = engine_from_onnx(art, flavour="rtx", max_batch=4, opt_batch=2, workspace_mb=256,
                              timing_cache=tmp_path / "tc.cache")
    facts = Artifact.load(engine.path).engine
    assert facts["flavour"] == "rtx" and facts["tensorrt"] == rtx.__version__ and facts["library"] == "tensorrt_rtx"
    assert facts["target_compute_capabilities"] == ["8.0", "8.6", "8.9", "12.0"] and facts["gpu"] is None
    assert facts["profiles"]["input"] == [[1, 3, 32, 48], [2, 3, 32, 48], [4, 3, 32, 48]]
    assert facts["precision"] == "fp32" and facts["strongly_typed"] and facts["plugins"] == "native"
    assert read_plan_version(engine.path.read_bytes()) == parse_version(rtx.__version__)
    assert not (tmp_path / "tc.cache").exists()  # RTX: a timing cache would make the AOT build look for a GPU


def test_compute_capability_targets_go_onto_the_real_config(rtx, tmp_path):
    from edgeseg.export.trt_build import engine_from_onnx
    from edgeseg.export.trt_flavour import load_flavour

    flavour = load_flavour("rtx")
    config = rtx.Builder(flavour.logger).create_builder_config()
    flavour.apply_targets(config, flavour.resolve_targets(["8.6", "7.5"], None))
    assert [config.get_compute_capability(i) for i in range(config.num_compute_capabilities)] == [
        rtx.ComputeCapability.SM86, rtx.ComputeCapability.SM75]
    engine = engine_from_onnx(tiny_onnx(tmp_path / "tiny.onnx"), flavour="rtx", compute_capabilities=["8.9"])
    assert engine.engine["target_compute_capabilities"] == ["8.9"]
    with pytest.raises(InputError, match=r"got '9.0', expected some of \['7.5', '8.0'"):
        flavour.resolve_targets(["9.0"], None)
    with pytest.raises(InputError, match="no GPU"):
        flavour.resolve_targets(["current"], None)
    from edgeseg.export.engine_cache import GpuInfo

    assert flavour.resolve_targets(None, GpuInfo("RTX 2080 Ti", "7.5")) == ["7.5"]  # Turing: not in the default
    assert flavour.resolve_targets(None, GpuInfo("RTX 4090", "8.9")) == ["8.0", "8.6", "8.9", "12.0"]
    assert flavour.resolve_targets(None, GpuInfo("H200", "9.0")) == ["8.0", "8.6", "8.9", "12.0"]  # no RTX target
    with pytest.raises(InputError, match="got '9.0'"):
        flavour.resolve_targets(["current"], GpuInfo("H200", "9.0"))


def test_what_rtx_lacks_is_refused_with_the_route(rtx, tmp_path):
    from edgeseg.export.trt_build import engine_from_onnx

    art = tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(InputError, match="no DLA support"):
        engine_from_onnx(art, flavour="rtx", dla_core=0)
    with pytest.raises(InputError, match="edgeseg quantize"):
        engine_from_onnx(art, flavour="rtx", legacy_fp16=True)
    with pytest.raises(InputError, match="cannot run Python-defined plugins"):
        engine_from_onnx(art, flavour="rtx", plugins="edgeseg")


def test_nvidia_plugin_library_registers_in_the_real_registry(rtx):
    from edgeseg.export.trt_build import register_plugins
    from edgeseg.export.trt_flavour import load_flavour

    flavour = load_flavour("rtx")
    register_plugins(flavour, "native")
    creators = {(c.name, c.plugin_namespace) for c in rtx.get_plugin_registry().all_creators}
    assert ("ROIAlign_TRT", "") in creators  # NVIDIA's RoIAlign, the native route's plugin
    with pytest.raises(InputError, match="plugins: got 'nvidia'"):
        register_plugins(flavour, "nvidia")


def test_parser_error_names_node_op_and_reason(rtx, tmp_path):
    from edgeseg.export.trt_build import EngineBuildError, engine_from_onnx

    with pytest.raises(EngineBuildError) as info:
        engine_from_onnx(_unsupported_nodes(tmp_path / "bad.onnx"), flavour="rtx")
    text = str(info.value)
    assert "node 'pool_with_indices' (MaxPool)" in text and "node 'mystery' (NoSuchOp)" in text


def test_to_trt_and_cli_reuse_the_cache(rtx, tmp_path, cache_home, capsys):
    from edgeseg import cli
    from edgeseg.export.trt_build import to_trt

    art = tiny_onnx(tmp_path / "tiny.onnx")
    first = to_trt(art.path, flavour="rtx")
    stamp = first.path.stat().st_mtime_ns
    assert f"-sm80_86_89_120-rtx{rtx.__version__}-" in first.path.name
    second = to_trt(art.path, flavour="rtx")
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp
    to_trt(art.path, flavour="rtx", max_batch=2)
    to_trt(art.path, flavour="rtx", compute_capabilities=["8.6"])
    assert len(EngineCache().entries()) == 3
    assert cli.main(["build", str(art.path), "--flavour", "rtx", "-o", str(tmp_path / "out.engine")]) == 0
    assert len(EngineCache().entries()) == 3  # cache hit, copied
    assert f"TensorRT-RTX {rtx.__version__} ahead of time (no GPU), targets 8.0, 8.6, 8.9, 12.0, precision fp32" \
        in capsys.readouterr().out
    assert Artifact.load(tmp_path / "out.engine").engine["onnx"] == "tiny.onnx"


def test_build_check_lists_each_failing_node(rtx, tmp_path, capsys):
    from edgeseg import cli

    bad = _unsupported_nodes(tmp_path / "bad.onnx")
    assert cli.main(["build", "--check", str(bad.path), "--flavour", "rtx"]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out
    assert "pool_with_indices  [MaxPool]" in out and "mystery  [NoSuchOp]" in out and "Plugin not found" in out
    assert "MaxPool: re-export with `edgeseg export --route decomposed`" in out
    assert cli.main(["build", "--check", str(_fails_at_build(tmp_path / "b.onnx").path), "--flavour", "rtx",
                     "--max-batch", "2"]) == 1
    assert "mismatching dimensions" in capsys.readouterr().out
    assert cli.main(["build", "--check", str(ASSET), "--flavour", "rtx"]) == 0
    assert "parses and builds with TensorRT-RTX" in capsys.readouterr().out


# --- the shipped models --------------------------------------------------------------------------
def _build_and_check(source: Path, out: Path, precision: str, rtx) -> dict:
    from edgeseg.export.trt_build import engine_from_onnx

    art = Artifact.load(source)
    engine = engine_from_onnx(art, out, flavour="rtx", max_batch=2)
    facts = Artifact.load(out).engine
    assert out.stat().st_size > 100_000 and read_plan_version(out.read_bytes()) == parse_version(rtx.__version__)
    assert facts["precision"] == precision == engine.precision and facts["flavour"] == "rtx"
    assert facts["onnx"] == source.name and facts["target_compute_capabilities"]
    for spec in art.inputs:  # one profile per dynamic input, from the sidecar's named axes
        dims = [d if isinstance(d, int) else None for d in spec.shape]
        if None in dims:
            lo, _, hi = facts["profiles"][spec.name]
            assert [d for d in dims if d is not None] == [d for d, want in zip(hi, dims) if want is not None]
            assert lo[0] == 1 and (hi[0] == 2 or dims[0] is not None)
    return facts


def test_shipped_hc18_fp32_builds(rtx, tmp_path):
    _build_and_check(ASSET, tmp_path / "hc18.engine", "fp32", rtx)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_shipped_hc18_quantized_variants_build(rtx, tmp_path, precision):
    if precision == "int8" and not (HC18 / "images").is_dir():
        pytest.skip(f"HC18 calibration images not found at {HC18}")
    variant = tmp_path / f"hc18_fastseg.{precision}.onnx"
    command = [sys.executable, "-m", "edgeseg", "quantize", str(ASSET), "--precision", precision, "-o", str(variant)]
    if precision == "int8":
        command += ["--calibration", str(HC18 / "images"), "--limit", "4"]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    _build_and_check(variant, tmp_path / f"hc18.{precision}.engine", precision, rtx)


@pytest.mark.parametrize("variant", ["general", "landscape"])
def test_selfie_graphs_build(rtx, tmp_path, variant):
    from edgeseg.apps.selfie import selfie_model_path

    try:
        path = selfie_model_path(variant)
    except ArtifactError as exc:  # not fetched (or changed): the message says how
        pytest.skip(f"selfie {variant} model not available ({exc}); run `edgeseg fetch-selfie`")
    local = tmp_path / path.name
    shutil.copy(path, local)
    shutil.copy(path.with_name(path.name + ".json"), local.with_name(local.name + ".json"))
    _build_and_check(local, tmp_path / f"selfie_{variant}.engine", Artifact.load(local).precision, rtx)


def test_rtx_runtime_cache_is_loaded_and_saved(rtx, tmp_path):
    """Needs a device for real (an ICudaEngine comes only from deserializing on a GPU): a recording engine
    stands in; the flavour must load the file into the runtime config before the context and write it back."""
    from edgeseg.export.trt_flavour import load_flavour

    calls = []

    class Cache:
        def deserialize(self, blob):
            calls.append(("deserialize", bytes(blob)))
            return True

        def serialize(self):
            return b"jit kernels v2"

    class Config:
        def create_runtime_cache(self):
            return Cache()

        def set_runtime_cache(self, cache):
            calls.append(("set_runtime_cache", type(cache).__name__))

    class Engine:
        def create_runtime_config(self):
            return Config()

        def create_execution_context(self, config=None):
            calls.append(("context", type(config).__name__))
            return "context"

    cache_file = tmp_path / "runtime.cache"
    cache_file.write_bytes(b"jit kernels v1")
    context, save = load_flavour("rtx").execution_context(Engine(), cache_file)
    assert context == "context"
    assert calls == [("deserialize", b"jit kernels v1"), ("set_runtime_cache", "Cache"), ("context", "Config")]
    save()
    assert cache_file.read_bytes() == b"jit kernels v2" and not list(tmp_path.glob("*.tmp"))
    for name in ("create_runtime_config", "create_execution_context"):  # the names exist on the real class
        assert hasattr(rtx.ICudaEngine, name)
    assert {"create_runtime_cache", "set_runtime_cache"} <= set(dir(rtx.IRuntimeConfig))
    assert {"serialize", "deserialize"} <= set(dir(rtx.IRuntimeCache))
