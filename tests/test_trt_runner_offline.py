"""TensorRTRunner end to end without TensorRT or a GPU: a stand-in ``tensorrt`` (recorded 10.3 API surface,
executing the plan's ONNX with ONNX Runtime) and a stand-in ``cupy`` (NumPy memory, streams, pinned
buffers, graph capture that records enqueues and replays them on launch). Checks the runner's side of
the contract: tensor-name I/O, NumPy in/out through pinned buffers, CuPy in/out, CUDA graph capture,
replay and fallback, profile errors and backend registration."""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.runtime import tensorrt_env
from edgeseg.runtime.tensorrt_env import GpuInfo
from test_trt_build import tiny_onnx
from test_trt_build_offline import API_DIR, make_fake_tensorrt

pytestmark = pytest.mark.skipif(not API_DIR.is_dir(), reason=f"TensorRT API surface not found at {API_DIR}")


def make_fake_cupy():
    cp = types.ModuleType("cupy")
    state = {"capturing": False, "recorded": [], "by_ptr": {}, "allocator": lambda size: None,
             "streams": [None]}

    class ndarray:
        """Device memory stand-in: NumPy storage, but not a numpy.ndarray (as with real CuPy)."""

        def __init__(self, host):
            self._a = host
            self.allocated_on = state["streams"][-1]  # CuPy's pool ties a block to the current stream
            state["by_ptr"][host.__array_interface__["data"][0]] = self

        shape = property(lambda self: self._a.shape)
        dtype = property(lambda self: self._a.dtype)
        ndim = property(lambda self: self._a.ndim)
        size = property(lambda self: self._a.size)
        nbytes = property(lambda self: self._a.nbytes)
        data = property(lambda self: types.SimpleNamespace(ptr=self._a.__array_interface__["data"][0]))

        def __array__(self, dtype=None, copy=None):
            return self._a if dtype is None else self._a.astype(dtype)

        def __setitem__(self, key, value):
            self._a[key] = np.asarray(value)

        def set(self, host, stream=None):
            self._a[...] = host

        def get(self, stream=None, out=None, blocking=True):
            if out is None:
                return self._a.copy()
            out[...] = self._a
            return out

        def copy(self):
            return ndarray(self._a.copy())

        def __getitem__(self, key):  # views share memory (no registration: not allocations)
            view = object.__new__(ndarray)
            view._a = self._a[key]
            return view

        def view(self, dtype):
            out = object.__new__(ndarray)
            out._a = self._a.view(dtype)
            return out

        def reshape(self, *shape):
            out = object.__new__(ndarray)
            out._a = self._a.reshape(*shape)
            return out

    ndarray.__module__ = "cupy"

    cp.ndarray = ndarray

    def empty(shape, dtype=np.float32):
        host = np.empty(shape, dtype)
        state["allocator"](host.nbytes)  # the allocator in force sees every allocation, as in CuPy
        return ndarray(host)

    cp.empty = empty
    cp.asarray = lambda a, dtype=None: ndarray(np.array(a, dtype=dtype))
    cp.lookup = lambda ptr: state["by_ptr"][ptr]._a
    cp.isfinite = lambda a: np.isfinite(np.asarray(a))
    cp.isnan = lambda a: np.isnan(np.asarray(a))
    cp.uint8 = np.uint8

    class Event:
        pass

    class Graph:
        def __init__(self, ops):
            self.ops = ops

        def launch(self, stream=None):
            for op in self.ops:
                op()

    class Stream:
        _count = 0

        def __init__(self, non_blocking=False):
            Stream._count += 1
            self.ptr = 1000 + Stream._count

        def synchronize(self):
            pass

        def record(self, event=None):
            return Event()

        def wait_event(self, event):
            assert isinstance(event, Event)

        def __enter__(self):
            state["streams"].append(self)
            return self

        def __exit__(self, *exc):
            state["streams"].pop()

        def begin_capture(self, mode=None):
            state["capturing"], state["recorded"] = True, []

        def end_capture(self):
            state["capturing"] = False
            return Graph(list(state["recorded"]))

    @contextlib.contextmanager
    def using_allocator(allocator):
        previous, state["allocator"] = state["allocator"], allocator
        try:
            yield
        finally:
            state["allocator"] = previous

    class Device:
        def __init__(self, index=0):
            pass

        def use(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    state["streams"][0] = Stream()
    cuda = types.SimpleNamespace(
        Stream=Stream, Event=Event, get_current_stream=lambda: state["streams"][-1],
        Device=Device, using_allocator=using_allocator, get_allocator=lambda: state["allocator"],
        alloc_pinned_memory=lambda n: bytearray(n),
        capturing=lambda: state["capturing"], record_captured=lambda fn: state["recorded"].append(fn),
        runtime=types.SimpleNamespace(CUDARuntimeError=RuntimeError, getDeviceCount=lambda: 1),
    )
    cp.cuda = cuda
    return cp


def install_offline_trt(monkeypatch):
    """Put the stand-in ``tensorrt`` (10.3) and ``cupy`` in ``sys.modules`` and a stand-in Orin GPU behind
    ``gpu_info``; returns ``(trt, cp, trt_build)``."""
    trt = make_fake_tensorrt("10.3.0", "10.3.0.30")
    cp = make_fake_cupy()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    gpu = GpuInfo("Orin (stand-in)", "8.7")
    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda device=0: gpu)
    import edgeseg.export.trt_build as trt_build

    monkeypatch.setattr(trt_build, "gpu_info", lambda device=0: gpu)
    return trt, cp, trt_build


@pytest.fixture
def offline(monkeypatch, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    trt, cp, trt_build = install_offline_trt(monkeypatch)
    art = tiny_onnx(tmp_path / "tiny.onnx")
    engine = trt_build.engine_from_onnx(art, max_batch=4, timing_cache=False)
    return trt, cp, art, engine


def _ort(art, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _executions(trt):
    return [c[1] for c in trt.calls if c[0] == "execute_async_v3"]


def _x(seed, batch=1):
    return np.random.default_rng(seed).standard_normal((batch, 3, 32, 48)).astype(np.float32)


def test_numpy_in_numpy_out_by_tensor_name(offline):
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    trt, _, art, engine = offline
    with TensorRTRunner(engine) as runner:
        first = runner.infer({"input": _x(0, 3)})["logits"]
        first_copy = first.copy()
        second = runner.infer({"input": _x(1)})["logits"]
    assert type(first) is np.ndarray and first.shape == (3, 2, 32, 48)
    np.testing.assert_allclose(first, _ort(art, _x(0, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(second, _ort(art, _x(1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(first, first_copy)  # results are the caller's, not reused buffers
    assert not runner.is_active


def test_cuda_graph_captures_once_per_shape_and_replays(offline):
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    trt, _, art, engine = offline
    with TensorRTRunner(engine, cuda_graph=True) as runner:
        outs = [runner.infer({"input": _x(seed)})["logits"] for seed in range(4)]
        assert _executions(trt) == [False, True]  # one real run, one capture; then graph launches
        other = runner.infer({"input": _x(9, 2)})["logits"]  # new shape: new buffers, new capture
        assert _executions(trt) == [False, True, False, True]
        assert runner.graph_launches == 3 and runner.graph_disabled is None  # seeds 1..3 replayed
    for seed, out in enumerate(outs):
        np.testing.assert_allclose(out, _ort(art, _x(seed)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(other, _ort(art, _x(9, 2)), rtol=1e-5, atol=1e-5)


def test_failed_capture_falls_back_to_plain_enqueue(offline):
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    trt, _, art, engine = offline
    trt.runtime_options["fail_capture"] = True
    with TensorRTRunner(engine, cuda_graph=True) as runner:
        outs = [runner.infer({"input": _x(seed)})["logits"] for seed in range(3)]
    assert _executions(trt) == [False, True, False, False]  # tried once, then never again
    assert runner.graph_launches == 0 and "capture" in runner.graph_disabled
    for seed, out in enumerate(outs):
        np.testing.assert_allclose(out, _ort(art, _x(seed)), rtol=1e-5, atol=1e-5)


def test_cupy_in_cupy_out(offline):
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    _, cp, art, engine = offline
    with TensorRTRunner(engine) as runner:
        out = runner.infer({"input": cp.asarray(_x(3))})["logits"]
        again = runner.infer({"input": cp.asarray(_x(4))})["logits"]
        buffer = runner._bindings["logits"].device
    assert type(out).__module__ == "cupy"
    np.testing.assert_allclose(np.asarray(out), _ort(art, _x(3)), rtol=1e-5, atol=1e-5)  # not overwritten
    np.testing.assert_allclose(np.asarray(again), _ort(art, _x(4)), rtol=1e-5, atol=1e-5)
    # The caller's arrays: allocated on the caller's stream (CuPy's pool then reuses them only in that
    # stream's order), never one of the runner's buffers.
    assert out.allocated_on is again.allocated_on is cp.cuda.get_current_stream()
    assert out.data.ptr != buffer.data.ptr and again.data.ptr != buffer.data.ptr


def test_shape_outside_profile_names_input_and_range(offline):
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    _, _, _, engine = offline
    with TensorRTRunner(engine) as runner, pytest.raises(InputError, match=r"input 'input'.*max \(4, 3, 32, 48\)"):
        runner.infer({"input": _x(0, 5)})


def test_create_runner_picks_tensorrt_for_engines(offline):
    from edgeseg.runtime import create_runner
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner, register

    register()
    _, _, art, engine = offline
    runner = create_runner(engine.path)
    assert isinstance(runner, TensorRTRunner)
    with runner:
        np.testing.assert_allclose(runner.infer({"input": _x(5)})["logits"], _ort(art, _x(5)), rtol=1e-5, atol=1e-5)


def test_data_dependent_output_goes_through_the_output_allocator(offline):
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    trt, cp, art, engine = offline
    trt.runtime_options["data_dependent_outputs"] = True
    with TensorRTRunner(engine, cuda_graph=True) as runner:
        host = runner.infer({"input": _x(6, 2)})["logits"]
        device = runner.infer({"input": cp.asarray(_x(7))})["logits"]
    np.testing.assert_allclose(host, _ort(art, _x(6, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(device), _ort(art, _x(7)), rtol=1e-5, atol=1e-5)
    assert not any(_executions(trt))  # no graph capture with data-dependent shapes


def test_engine_with_python_plugins_never_captures(offline, monkeypatch):
    from edgeseg.runtime import tensorrt_plugins
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    trt, _, art, engine = offline
    registered = []
    monkeypatch.setattr(tensorrt_plugins, "register_plugins", lambda *args: registered.append(args[-1]))
    engine.engine["plugins"] = "edgeseg"
    engine.extra["export"] = {"custom_domains": ["edgeseg"]}
    with TensorRTRunner(engine, cuda_graph=True) as runner:
        outs = [runner.infer({"input": _x(seed)})["logits"] for seed in range(3)]
    assert registered == ["edgeseg"] and _executions(trt) == [False, False, False]
    assert runner.graph_launches == 0 and "Python plugins" in runner.graph_disabled
    for seed, out in enumerate(outs):
        np.testing.assert_allclose(out, _ort(art, _x(seed)), rtol=1e-5, atol=1e-5)


def test_capture_that_allocates_cupy_memory_is_thrown_away(offline):
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    trt, cp, art, engine = offline
    with TensorRTRunner(engine, cuda_graph=True) as runner:
        enqueue = runner._context.execute_async_v3

        def plugin_like_enqueue(stream):  # what a JIT Python plugin does inside enqueue: take pool memory
            cp.empty((16,), np.float32)
            return enqueue(stream)

        runner._context.execute_async_v3 = plugin_like_enqueue
        outs = [runner.infer({"input": _x(seed)})["logits"] for seed in range(3)]
    assert _executions(trt) == [False, True, False, False]  # captured once, graph dropped, plain after
    assert runner.graph_launches == 0 and "allocated CuPy memory" in runner.graph_disabled
    for seed, out in enumerate(outs):
        np.testing.assert_allclose(out, _ort(art, _x(seed)), rtol=1e-5, atol=1e-5)
