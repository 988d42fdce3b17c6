"""What only standard TensorRT on a device can show, against stand-in ``tensorrt`` modules made from the
recorded API of TensorRT 10.3, 10.16 and 11.1.

Parser, builder, config, profiles and errors are tested with the real TensorRT-RTX library
(``test_trt_build_rtx.py``). Standard TensorRT cannot be installed on a machine without a GPU and its
builder times kernels on the device, so these stand-ins remain for what differs between its releases
or needs its hardware: the timing cache (GPU), DLA (Jetson), FP16 builder flags (10.x vs 11.x) and the
version floor. The stand-in answers only names its release has (anything else raises AttributeError),
reads the real ONNX file in its parser, records what edgeseg asks for and returns a plan header with
its version. ``make_fake_tensorrt`` also serves the runner's offline tests (execution needs a device).
"""

from __future__ import annotations

import json
import struct
import types
from pathlib import Path

import numpy as np

API_DIR = Path(__file__).resolve().parents[2] / "shared" / "tensorrt-api"


class EnumValue:
    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


class Strict:
    """Base for fake classes: public attributes must be in the release's member list."""

    _members: tuple[str, ...] = ()

    def __getattribute__(self, name):
        if not name.startswith("_"):
            members = type(self)._members
            if members and name not in members:
                raise AttributeError(f"'tensorrt.{type(self).__name__}' object has no attribute '{name}'")
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            members = type(self)._members
            if members and name not in members:
                raise AttributeError(f"'tensorrt.{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


def make_fake_tensorrt(release: str = "10.3.0", version: str = "10.3.0.30", num_dla_cores: int = 0,
                       fail_parse: bool = False, fail_build: bool = False):
    """A fake ``tensorrt`` module for ``release`` (one of the JSON files) reporting ``__version__ = version``.

    ``module.calls`` records (what, details) tuples; ``module.builds`` counts successful builds.
    """
    api = json.loads((API_DIR / f"tensorrt-{release}.json").read_text())
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    trt.builds = 0
    for enum, members in api["enums"].items():
        setattr(trt, enum, types.SimpleNamespace(**{m: EnumValue(enum, m, i) for i, m in enumerate(members)}))
    severities = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")  # the real numbering
    trt.Severity = types.SimpleNamespace(**{m: EnumValue("Severity", m, i) for i, m in enumerate(severities)})
    classes = api["classes"]

    class ILogger:  # bound in every release (pyCore.cpp), absent from the recorded JSON
        def __init__(self) -> None:
            pass

    trt.ILogger = ILogger

    def init_libnvinfer_plugins(logger, namespace):
        trt.calls.append(("init_libnvinfer_plugins", namespace))
        return True

    trt.init_libnvinfer_plugins = init_libnvinfer_plugins

    class _Tensor(Strict):
        _members = tuple(classes["ITensor"])

        def __init__(self, name, shape):
            self._name, self._shape = name, shape

        name = property(lambda self: self._name)
        shape = property(lambda self: self._shape)

    class _Network(Strict):
        _members = tuple(classes["INetworkDefinition"])

        def __init__(self, flags):
            self._flags, self._inputs, self._onnx = flags, [], None

        num_inputs = property(lambda self: len(self._inputs))

        def get_input(self, i):
            return self._inputs[i]

    class _Profile(Strict):
        _members = tuple(classes["IOptimizationProfile"])

        def __init__(self):
            self._shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self._shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class _TimingCache(Strict):
        _members = tuple(classes["ITimingCache"])

        def __init__(self, blob):
            self._blob = bytes(blob)

        def serialize(self):
            return b"fake-timing-cache:" + self._blob[-8:]

    class _Config(Strict):
        _members = tuple(classes["IBuilderConfig"])

        def __init__(self):
            self._flags, self._profiles, self._pools, self._cache = [], [], {}, None

        def set_flag(self, flag):
            trt.calls.append(("set_flag", flag.name))
            self._flags.append(flag.name)

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            trt.calls.append(("profile", dict(profile._shapes)))
            return len(self._profiles) - 1

        def set_memory_pool_limit(self, pool, size):
            trt.calls.append(("pool", pool.name, size))

        def create_timing_cache(self, blob):
            return _TimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            self._cache = cache
            trt.calls.append(("timing_cache", len(cache._blob)))
            return True

        def get_timing_cache(self):
            return self._cache

    def _plan(network, config):
        major, minor, patch, build = (list(map(int, version.split("."))) + [0, 0, 0, 0])[:4]
        body = {"onnx": network._onnx, "profiles": [p._shapes for p in config._profiles]}
        return (struct.pack("<II", 0x74727466, 0) + bytes(16) + bytes([major, minor, patch, build])
                + b"fake plan" + json.dumps(body).encode())

    class Builder(Strict):
        _members = tuple(classes["Builder"])

        def __init__(self, logger):
            self._logger = logger
            trt.calls.append(("Builder", type(logger).__name__))

        num_DLA_cores = property(lambda self: num_dla_cores)

        def create_network(self, flags=0):
            trt.calls.append(("create_network", flags))
            return _Network(flags)

        def create_builder_config(self):
            return _Config()

        def create_optimization_profile(self):
            return _Profile()

        def build_serialized_network(self, network, config):
            if fail_build:
                self._logger.log(trt.Severity.ERROR, "fake: no implementation obeys the requested constraints")
                return None
            trt.builds += 1
            trt.calls.append(("build", tuple(config._flags)))
            return _plan(network, config)

    trt.Builder = Builder

    class ParserError:
        def __init__(self, text):
            self._text = text

        def __str__(self):
            return self._text

    class OnnxParser(Strict):
        _members = tuple(classes["OnnxParser"])

        def __init__(self, network, logger):
            self._network, self._errors = network, []

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, i):
            return self._errors[i]

        def parse_from_file(self, path):
            import onnx

            trt.calls.append(("parse_from_file", Path(path).name))
            model = onnx.load(path)
            if fail_parse:
                op = model.graph.node[0].op_type
                self._errors.append(ParserError(f"In node 0 ({op}): UNSUPPORTED_NODE: No importer registered for op: {op}"))
                return False
            self._network._onnx = str(path)
            for value in model.graph.input:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
                self._network._inputs.append(_Tensor(value.name, dims))
            return True

    trt.OnnxParser = OnnxParser
    class IOutputAllocator:
        def __init__(self) -> None:
            pass

    trt.IOutputAllocator = IOutputAllocator
    trt.nptype = lambda dtype: {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32}[dtype.name]
    _add_runtime(trt, classes)
    return trt


def _add_runtime(trt, classes) -> None:
    """Runtime -> engine -> context that executes the plan's ONNX file with ONNX Runtime on arrays found by
    their pointers in the stand-in CuPy (``fake_cupy``); enqueues during stream capture are recorded."""

    class _Context(Strict):
        _members = tuple(classes["IExecutionContext"])

        def __init__(self, engine):
            self._engine, self._shapes, self._addresses, self._allocators = engine, {}, {}, {}
            self._fail_capture = engine._options.get("fail_capture", False)
            self._dds = engine._options.get("data_dependent_outputs", False)

        def set_input_shape(self, name, shape):
            lo, _, hi = self._engine._profiles[name]
            if not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
                return False
            self._shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            if name in self._shapes:
                return self._shapes[name]
            if self._dds:  # e.g. NMS: rows known only after execution
                return (-1,) + tuple(self._engine._run(self._zeros())[name].shape[1:])
            return tuple(self._engine._run(self._zeros())[name].shape)

        def _zeros(self):
            return {n: np.zeros(s, np.float32) for n, s in self._shapes.items()}

        def set_output_allocator(self, name, allocator):
            self._allocators[name] = allocator

        def set_tensor_address(self, name, ptr):
            self._addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            import cupy  # the stand-in

            trt.calls.append(("execute_async_v3", cupy.cuda.capturing()))
            if cupy.cuda.capturing():
                if self._fail_capture:
                    return False
                cupy.cuda.record_captured(self._execute)
                return True
            self._execute()
            return True

        def _execute(self):
            import cupy

            feed = {n: np.asarray(cupy.lookup(self._addresses[n])) for n in self._engine._inputs}
            for name, value in self._engine._run(feed).items():
                if name in self._allocators:
                    allocator = self._allocators[name]
                    ptr = allocator.reallocate_output_async(name, 0, value.nbytes, 256, 0)
                    cupy.lookup(ptr)[: value.nbytes] = np.ascontiguousarray(value).view(np.uint8).reshape(-1)
                    allocator.notify_shape(name, value.shape)
                else:
                    cupy.lookup(self._addresses[name])[...] = value

    class _Engine(Strict):
        # get_tensor_profile_shape is bound in every release (a lambda in pyCore.cpp, which the recorder
        # missed; tensorrt_rtx has it too)
        _members = (*classes["ICudaEngine"], "get_tensor_profile_shape")

        def __init__(self, body, options):
            import onnxruntime as ort

            self._session = ort.InferenceSession(body["onnx"], providers=["CPUExecutionProvider"])
            self._inputs = [i.name for i in self._session.get_inputs()]
            self._outputs = [o.name for o in self._session.get_outputs()]
            self._profiles = body["profiles"][0] if body["profiles"] else {}
            self._options = options

        num_io_tensors = property(lambda self: len(self._inputs) + len(self._outputs))

        def _run(self, feed):
            return dict(zip(self._outputs, self._session.run(None, feed)))

        def get_tensor_name(self, i):
            return (self._inputs + self._outputs)[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name in self._inputs else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return trt.DataType.FLOAT

        def get_tensor_profile_shape(self, name, profile_index):
            return [list(s) for s in self._profiles[name]]

        def create_execution_context(self):
            return _Context(self)

    class Runtime(Strict):
        _members = tuple(classes["Runtime"])

        def __init__(self, logger):
            self._logger = logger

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            marker = data.find(b"fake plan")
            if marker < 0:
                self._logger.log(trt.Severity.ERROR, "fake: not a plan")
                return None
            return _Engine(json.loads(data[marker + len(b"fake plan"):]), trt.runtime_options)

    trt.Runtime = Runtime
    trt.runtime_options = {}


# --- tests ----------------------------------------------------------------------------------------
import sys  # noqa: E402

import pytest  # noqa: E402

from edgeseg.artifact import Artifact  # noqa: E402
from edgeseg.errors import InputError  # noqa: E402
from edgeseg.export.engine_cache import read_plan_version  # noqa: E402
from edgeseg.runtime import tensorrt_env  # noqa: E402
from edgeseg.runtime.tensorrt_env import GpuInfo  # noqa: E402
from test_trt_build import tiny_onnx  # noqa: E402

pytestmark = pytest.mark.skipif(not API_DIR.is_dir(), reason=f"TensorRT API surface not found at {API_DIR}")


@pytest.fixture
def fake(monkeypatch):
    """Install a stand-in tensorrt for one release: ``fake(release, version, **options)``."""
    pytest.importorskip("onnx")

    def install(release="10.3.0", version="10.3.0.30", **options):
        trt = make_fake_tensorrt(release, version, **options)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda device=0: GpuInfo("Orin (stand-in)", "8.7"))
    import edgeseg.export.trt_build as trt_build

    monkeypatch.setattr(trt_build, "gpu_info", lambda device=0: GpuInfo("Orin (stand-in)", "8.7"))
    return install


def _calls(trt, what):
    return [c for c in trt.calls if c[0] == what]


@pytest.mark.parametrize("release, version", [("10.3.0", "10.3.0.30"), ("10.16", "10.16.0.4"), ("11.1", "11.1.0.6")])
def test_standard_build_on_every_release(fake, tmp_path, release, version):
    """Needs a device for real (standard TensorRT builds on the GPU): plugin library first, no precision
    flags, the timing cache read and written, the version and GPU in the sidecar and plan header."""
    from edgeseg.export.trt_build import engine_from_onnx

    trt = fake(release, version)
    art = tiny_onnx(tmp_path / "tiny.onnx")
    engine = engine_from_onnx(art, max_batch=4, opt_batch=2, workspace_mb=256, timing_cache=tmp_path / "tc.cache")
    assert trt.calls.index(("init_libnvinfer_plugins", "")) < trt.calls.index(("parse_from_file", "tiny.onnx"))
    assert _calls(trt, "build") == [("build", ())]  # no precision flags: the ONNX carries precision
    assert _calls(trt, "timing_cache") == [("timing_cache", 0)]
    assert (tmp_path / "tc.cache").read_bytes().startswith(b"fake-timing-cache")
    facts = Artifact.load(engine.path).engine
    assert facts["flavour"] == "tensorrt" and facts["tensorrt"] == version and facts["strongly_typed"]
    assert facts["compute_capability"] == facts["target_compute_capabilities"][0] == "8.7"
    assert read_plan_version(engine.path.read_bytes())[:2] == tuple(int(v) for v in version.split(".")[:2])


def test_legacy_fp16_flag_only_where_it_exists(fake, tmp_path):
    """Standard TensorRT 10.x has the FP16 flag, 11.x does not (neither release installs without a GPU)."""
    from edgeseg.export.trt_build import engine_from_onnx

    art = tiny_onnx(tmp_path / "tiny.onnx")
    trt = fake("10.3.0", "10.3.0.30")
    engine_from_onnx(art, legacy_fp16=True, timing_cache=False)
    assert _calls(trt, "create_network") == [("create_network", 0)]  # weakly typed
    assert ("set_flag", "FP16") in trt.calls
    fake("11.1", "11.1.0.6")
    with pytest.raises(InputError, match="edgeseg quantize"):
        engine_from_onnx(art, legacy_fp16=True, timing_cache=False)


def test_dla_build_on_10x_sets_device_core_and_records_the_real_precision(fake, tmp_path):
    """DLA exists only on Jetson: an FP32 ONNX on 10.x is built weakly typed with the FP16 flag, so the
    engine runs FP16 and the sidecar says so (it said "fp32" before)."""
    from edgeseg.export.trt_build import engine_from_onnx

    trt = fake("10.3.0", "10.3.0.30", num_dla_cores=2)
    engine = engine_from_onnx(tiny_onnx(tmp_path / "tiny.onnx"), dla_core=1, timing_cache=False)
    assert ("set_flag", "GPU_FALLBACK") in trt.calls and ("set_flag", "FP16") in trt.calls
    assert engine.engine["dla_core"] == 1 and not engine.engine["strongly_typed"]
    assert engine.engine["precision"] == engine.precision == Artifact.load(engine.path).precision == "fp16"


def test_dla_on_11_stays_strongly_typed(fake, tmp_path):
    """DLA (Jetson): 11.x keeps the ONNX's precision, no flag."""
    from edgeseg.export.trt_build import engine_from_onnx

    trt = fake("11.1", "11.1.0.6", num_dla_cores=1)
    engine = engine_from_onnx(tiny_onnx(tmp_path / "tiny.onnx"), dla_core=0, timing_cache=False)
    assert [c for c in trt.calls if c[0] == "set_flag"] == [("set_flag", "GPU_FALLBACK")]
    assert engine.engine["precision"] == "fp32"


def test_dla_core_on_a_device_without_dla(fake, tmp_path):
    """DLA needs a Jetson's standard TensorRT (num_DLA_cores)."""
    from edgeseg.export.trt_build import engine_from_onnx

    fake("10.3.0", "10.3.0.30", num_dla_cores=0)
    with pytest.raises(InputError, match="no DLA cores"):
        engine_from_onnx(tiny_onnx(tmp_path / "tiny.onnx"), dla_core=0, timing_cache=False)


def test_too_old_tensorrt_is_refused_with_the_jetson_route(fake, tmp_path):
    """An old standard TensorRT (JetPack 5) cannot be installed here."""
    from edgeseg.errors import EdgesegError
    from edgeseg.export.trt_build import engine_from_onnx

    fake("10.3.0", "8.6.2.3")
    with pytest.raises(EdgesegError, match="JetPack"):
        engine_from_onnx(tiny_onnx(tmp_path / "tiny.onnx"))


# --- edgeseg's tensorrt.plugin ops: AOT or JIT, decided once; AOT PTX vs the driver ------------------
@pytest.fixture
def stub_plugins(monkeypatch):
    """Stand-in ``tensorrt``/``tensorrt.plugin`` (standard TensorRT 10.9+ only; not installable here) that
    records what each plugin module registers; ``load()`` imports the plugin modules afresh."""
    import importlib

    from test_trt_plugin_definitions import _stub_modules

    from edgeseg.plugins.tensorrt import _common

    trt, trtp, registry = _stub_modules()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda device=0: GpuInfo("Orin (stand-in)", "8.7"))
    _common.plugin_implementation.cache_clear()

    def load():
        for name in ("deform_conv", "roi_align"):
            monkeypatch.delitem(sys.modules, f"edgeseg.plugins.tensorrt.{name}", raising=False)
            importlib.import_module(f"edgeseg.plugins.tensorrt.{name}")
        return registry

    yield load
    _common.plugin_implementation.cache_clear()
    for name in ("deform_conv", "roi_align"):
        sys.modules.pop(f"edgeseg.plugins.tensorrt.{name}", None)


def test_aot_or_jit_is_decided_once(stub_plugins, monkeypatch):
    """The builder used to ask PATH again at build time: nvcc there at import (AOT registered) but gone at
    build meant no PREFER_AOT flag, a combination tensorrt.plugin refuses (and the other way round)."""
    import shutil

    from edgeseg.export.trt_build import _plugin_implementation

    if not shutil.which("nvcc"):
        pytest.skip("nvcc is not on PATH: AOT plugins cannot register here")
    registry = stub_plugins()
    assert "aot_impl" in registry["edgeseg::RoIAlign"] and "aot_impl" in registry["edgeseg::DeformConv2d"]
    monkeypatch.setenv("PATH", "")  # nvcc gone after the plugins registered
    assert _plugin_implementation("edgeseg") == "aot"
    assert _plugin_implementation("native") is None


def test_jit_only_when_nvcc_is_missing_at_first_import(stub_plugins, monkeypatch):
    from edgeseg.export.trt_build import _plugin_implementation

    monkeypatch.setenv("PATH", "")
    registry = stub_plugins()
    assert "aot_impl" not in registry["edgeseg::RoIAlign"] and "impl" in registry["edgeseg::RoIAlign"]
    monkeypatch.setenv("PATH", "/usr/local/cuda/bin:/usr/bin")
    assert _plugin_implementation("edgeseg") == "jit"


@pytest.mark.nvcc
def test_aot_ptx_records_its_isa_and_refuses_an_older_driver(monkeypatch):
    """Compiled by the real nvcc (no device needed); the driver's CUDA version is the stand-in part."""
    from edgeseg.errors import EdgesegError
    from edgeseg.plugins.roi_align import KERNEL_SOURCE
    from edgeseg.plugins.tensorrt import _common

    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda device=0: GpuInfo("RTX 3090 (stand-in)", "8.6"))
    monkeypatch.setattr(_common, "driver_cuda_version", lambda: (99, 0))
    ptx = _common.ptx_for(KERNEL_SOURCE, "roi_align_aot")
    isa = _common.ptx_isa(ptx)
    assert _common.PTX_BUILT[KERNEL_SOURCE.name] == isa and f".version {isa}" in ptx
    need = _common.min_driver_cuda(isa)
    older = (need[0], need[1] - 1) if need[1] else (need[0] - 1, 9)
    monkeypatch.setattr(_common, "driver_cuda_version", lambda: older)
    with pytest.raises(EdgesegError, match=rf"PTX ISA {isa}, which needs a driver for CUDA {need[0]}\.{need[1]}"):
        _common.ptx_for(KERNEL_SOURCE, "roi_align_aot")
    assert _common.min_driver_cuda("8.8") == (12, 9) and _common.min_driver_cuda("9.0") == (13, 0)
    monkeypatch.setattr(_common, "driver_cuda_version", lambda: None)  # no driver here: nothing to compare
    _common.ptx_for(KERNEL_SOURCE, "roi_align_aot")
