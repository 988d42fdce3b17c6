"""TensorRT backend: runs a serialized ``.engine`` through the tensor-name API (TensorRT 10.3 .. 11.x).

I/O goes by tensor name (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) on one
non-default CUDA stream, with CuPy device buffers. NumPy callers go through pinned host buffers
(async copies, one synchronize); CuPy callers stay on the device (no host sync). ``cuda_graph=True``
captures ``execute_async_v3`` once per input shape and replays it, falling back to plain enqueue
when the engine cannot be captured. Outputs whose shape depends on the data (NMS, NonZero) get an
output allocator.

Before loading, the plan header's TensorRT version and the sidecar's GPU are compared with this
machine's, and a mismatch is refused with the command to rebuild.

GPU memory ownership (all on the runner's ``device``):

- The runner owns one CuPy buffer per engine tensor, taken from CuPy's current allocator (its pool),
  reused while the tensor's shape stays and replaced when it changes; pinned host staging buffers
  for NumPy callers; the output allocator's buffers (data-dependent outputs, grow-only); its stream;
  its CUDA graphs. TensorRT only receives addresses into those buffers (its own scratch memory
  stays TensorRT's). ``close()`` synchronizes the stream, then drops graphs, buffers, context,
  engine and runtime, in that order.
- All copies and enqueues run on the runner's stream. With CuPy inputs it first waits for the
  caller's current stream (the producers), and before ``infer`` returns the caller's current stream
  waits for it, so the caller may free or overwrite its inputs with later work on that stream.
- Results belong to the caller and alias nothing of the runner's: NumPy results are copies taken
  after a synchronize; CuPy results are new arrays allocated and written on the caller's current
  stream, so CuPy's pool ties them to that stream like any array the caller made.
- A CUDA graph freezes the addresses of the runner's buffers, so it is dropped whenever a buffer
  moves. Graphs stay off for engines that run edgeseg's Python plugins (their CuPy allocations would
  be frozen into the graph, and replays would write into memory the pool has since handed to other
  arrays), and a capture during which anything allocated CuPy memory is thrown away for that reason.

>>> from edgeseg.runtime import create_runner
>>> with create_runner("hc18_fastseg.engine", cuda_graph=True) as runner:   # doctest: +SKIP
...     out = runner.infer({"input": x})      # x: (1, 1, 256, 256) float32 NumPy or CuPy
...     runner.graph_launches, runner.graph_disabled   # replays so far; why graphs are off, or None
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .._deps import require
from ..artifact import Artifact
from ..errors import ArtifactError, EdgesegError, InputError
from .base import Runner, array_module


def tensorrt_problem() -> str | None:
    """None when the tensorrt backend can run here, else why not (for the backend registry)."""
    from .._deps import available

    if not (available("tensorrt") or available("tensorrt_rtx")):
        return "neither tensorrt nor tensorrt_rtx imports"
    if not available("cupy"):
        return "cupy does not import (TensorRT buffers are CuPy arrays)"
    import cupy

    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as exc:  # noqa: BLE001 - a driver-less machine raises CUDARuntimeError
        return f"no CUDA device ({exc})"
    return None


def register() -> None:
    """Register backend ``"tensorrt"`` for ``.engine`` files with the runtime's registry."""
    from .registry import register_backend

    register_backend("tensorrt", "edgeseg.runtime.tensorrt_runner:TensorRTRunner", formats=["engine"], priority=20,
                     requires=["cupy"], probe=tensorrt_problem)


def graph_blocker(artifact: Artifact) -> str | None:
    """Why CUDA graphs must stay off for this engine, read from its sidecar; None when they may be used.

    edgeseg's ``tensorrt.plugin`` layers (``plugins="edgeseg"``) run Python with CuPy on every
    enqueue. Captured, the CuPy pool blocks they take are baked into the graph but go back to the pool
    when the capture ends; replays would then write into memory handed to other arrays. TensorRT's
    own layers and NVIDIA's C++ plugins (``plugins="native"``) allocate nothing at enqueue."""
    engine = artifact.engine or {}
    if engine.get("plugins", "native") != "edgeseg":
        return None
    export = artifact.extra.get("export")
    domains = (export or {}).get("custom_domains") or []
    if isinstance(export, dict) and not domains:
        return None  # exported by edgeseg with no plugin nodes: nothing of ours in the engine
    nodes = f"custom-domain nodes {domains}" if domains else 'plugins="edgeseg"'
    return (f"{artifact.path.name} runs edgeseg's Python plugins ({nodes}), whose CuPy allocations a "
            "CUDA graph would freeze")


@contextmanager
def counting_allocations(cp) -> Iterator[list[int]]:
    """Count CuPy allocations made in this thread inside the block (``[count]``), passing each on to
    the allocator in force (TensorRT runs Python plugins in the enqueuing thread)."""
    count = [0]
    inner = cp.cuda.get_allocator()

    def malloc(size):
        count[0] += 1
        return inner(size)

    with cp.cuda.using_allocator(malloc):
        yield count


class _Binding:
    """One I/O tensor: name, dtype and the persistent device (and pinned host) buffer for one shape."""

    def __init__(self, name: str, dtype: np.dtype, is_input: bool) -> None:
        self.name, self.dtype, self.is_input = name, dtype, is_input
        self.shape: tuple[int, ...] | None = None
        self.device = None
        self.host: np.ndarray | None = None

    def ensure(self, cp, shape: tuple[int, ...], pinned: bool) -> bool:
        """Buffers for ``shape``; True when the device buffer moved (captured graphs are then stale)."""
        moved = self.shape != shape or self.device is None
        if moved:
            self.shape = shape
            self.device = cp.empty(shape, self.dtype)
            self.host = None
        if pinned and self.host is None:
            nbytes = max(int(np.prod(shape)) * self.dtype.itemsize, 1)
            memory = cp.cuda.alloc_pinned_memory(nbytes)
            self.host = np.frombuffer(memory, self.dtype, int(np.prod(shape))).reshape(shape)
        return moved


class TensorRTRunner(Runner):
    """Runs a TensorRT ``.engine`` artifact.

    Args:
        artifact: the engine's Artifact or path (sidecar next to it, written by ``edgeseg build``).
        device: CUDA device index.
        cuda_graph: capture the enqueue in a CUDA graph per input shape and replay it (falls back to
            plain enqueue, for good, when capture fails or the engine runs Python plugins; the
            reason is then in ``graph_disabled``, and ``graph_launches`` counts the replays).
        profile: optimization profile index to use.
        check_compatibility: refuse engines from another TensorRT version or GPU before loading.
        threads: accepted for interface parity with the CPU backends and ignored (the GPU runs the engine).

    Example::

        with TensorRTRunner("hc18_fastseg.engine") as runner:
            logits = runner.infer({"input": x})["logits"]   # x (1, 1, 256, 256) float32 -> (1, 2, 256, 256)
    """

    backend = "tensorrt"

    def __init__(self, artifact: Artifact | str, device: int = 0, cuda_graph: bool = False, profile: int = 0,
                 check_compatibility: bool = True, check_finite: bool = True, threads: int | None = None) -> None:
        if not isinstance(artifact, Artifact):
            artifact = Artifact.load(artifact)
        if artifact.format != "engine":
            raise InputError(f"artifact: got {artifact.path.name} ({artifact.format}), expected a .engine file")
        self.device_index = device
        self.use_cuda_graph = cuda_graph
        self.profile = profile
        self.check_compatibility = check_compatibility
        self._trt = self._cp = self._logger = self._runtime = self._engine = self._context = None
        self._stream = None
        self._bindings: dict[str, _Binding] = {}
        self._allocator = None
        self._dynamic_outputs: set[str] = set()
        self._graphs: dict[tuple, Any] = {}
        self.graph_launches = 0  # CUDA graph replays so far
        self.graph_disabled: str | None = graph_blocker(artifact) if cuda_graph else "cuda_graph=False"
        super().__init__(artifact, check_finite=check_finite)

    # --- lifecycle -------------------------------------------------------------------------------
    def _activate(self) -> None:
        from .engine_fit import check_engine_compatible, runtime_cache_path
        from .tensorrt_env import capturing_logger, gpu_info, load_flavour, log_text
        from .tensorrt_plugins import register_plugins

        flavour = load_flavour((self.artifact.engine or {}).get("flavour", "tensorrt"))  # the library that built it
        trt = flavour.trt
        cp = require("cupy", "the tensorrt backend's device buffers")
        cp.cuda.Device(self.device_index).use()
        data = self.artifact.path.read_bytes()
        gpu = gpu_info(self.device_index)
        if self.check_compatibility:
            check_engine_compatible(self.artifact, data[:64], trt.__version__, gpu, flavour.name)
        logger = capturing_logger(trt, echo_severity=1)
        register_plugins(flavour, (self.artifact.engine or {}).get("plugins", "native"))
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ArtifactError(f"TensorRT could not load {self.artifact.path}:\n{log_text(logger, worst=1)}")
        context, self._save_runtime_cache = flavour.execution_context(
            engine, runtime_cache_path(self.artifact.path, gpu) if flavour.runtime_cache else None)
        if context is None:
            raise ArtifactError(f"TensorRT could not create an execution context for {self.artifact.path}:\n"
                                f"{log_text(logger, worst=1)}")
        self._trt, self._cp, self._logger, self._runtime, self._engine, self._context = trt, cp, logger, runtime, engine, context
        self._stream = cp.cuda.Stream(non_blocking=True)
        if self.profile:
            context.set_optimization_profile_async(self.profile, self._stream.ptr)
        self._bindings = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            try:
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            except TypeError as exc:  # BF16/FP8/INT4 I/O has no NumPy type
                raise ArtifactError(f"{self.artifact.path}: tensor {name!r} has a type NumPy cannot hold ({exc}); "
                                    "export the model with float32/float16 inputs and outputs") from exc
            self._bindings[name] = _Binding(name, dtype, is_input)
        self._check_names()

    def _check_names(self) -> None:
        engine_inputs = [n for n, b in self._bindings.items() if b.is_input]
        if sorted(engine_inputs) != sorted(self.input_names):
            raise ArtifactError(f"{self.artifact.sidecar_path}: inputs {self.input_names} do not match the engine's "
                                f"{engine_inputs}; rebuild the engine from its ONNX file")

    def _deactivate(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        if getattr(self, "_save_runtime_cache", None) is not None:  # TensorRT-RTX: keep its JIT kernels
            self._save_runtime_cache()
            self._save_runtime_cache = None
        self._graphs.clear()
        self._bindings = {}
        self._allocator = None
        self._context = self._engine = self._runtime = None
        self._stream = None

    # --- inference -------------------------------------------------------------------------------
    def _infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        with self._cp.cuda.Device(self.device_index):  # buffers on the runner's device, whatever is current
            return self._infer_on_device(feed)

    def _infer_on_device(self, feed: dict[str, Any]) -> dict[str, Any]:
        cp, ctx, stream = self._cp, self._context, self._stream
        xp = array_module(next(iter(feed.values())))
        on_host = xp is np
        if not on_host:  # the caller's producer kernels must finish before our stream reads
            stream.wait_event(cp.cuda.get_current_stream().record())
        shape_key = []
        for name in self.input_names:
            array = feed[name]
            binding = self._bindings[name]
            if array.dtype != binding.dtype:
                raise InputError(f"input {name!r}: got dtype {array.dtype}, the engine expects {binding.dtype}")
            shape = tuple(int(d) for d in array.shape)
            if not ctx.set_input_shape(name, shape):
                raise InputError(f"input {name!r}: got shape {shape}, outside the engine's optimization profile "
                                 f"{self._profile_text(name)}; rebuild with a wider --shapes/--max-batch")
            if binding.ensure(cp, shape, pinned=on_host):
                self._graphs.clear()  # graphs freeze tensor addresses
            with stream:
                if on_host:
                    np.copyto(binding.host, array, casting="no")
                    binding.device.set(binding.host, stream=stream)
                else:
                    binding.device[...] = array
            ctx.set_tensor_address(name, binding.device.data.ptr)
            shape_key.append(shape)
        self._prepare_outputs(on_host)
        self._enqueue(tuple(shape_key))
        return self._collect(on_host)

    def _profile_text(self, name: str) -> str:
        lo, opt, hi = self._engine.get_tensor_profile_shape(name, self.profile)
        return f"(min {tuple(lo)}, opt {tuple(opt)}, max {tuple(hi)})"

    def _prepare_outputs(self, on_host: bool) -> None:
        ctx = self._context
        for name, binding in self._bindings.items():
            if binding.is_input:
                continue
            shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # data-dependent: TensorRT asks the allocator during enqueue
                self._dynamic_outputs.add(name)
                if self._allocator is None:
                    self._allocator = _make_output_allocator(self._trt, self._cp)
                ctx.set_output_allocator(name, self._allocator)
                continue
            if binding.ensure(self._cp, shape, pinned=on_host):
                self._graphs.clear()
            ctx.set_tensor_address(name, binding.device.data.ptr)

    def _enqueue(self, shape_key: tuple) -> None:
        ctx, stream = self._context, self._stream
        graph_ok = self.graph_disabled is None and not self._dynamic_outputs
        graph = self._graphs.get(shape_key) if graph_ok else None
        if graph is not None:
            graph.launch(stream)
            self.graph_launches += 1
            return
        if not ctx.execute_async_v3(stream.ptr):
            raise EdgesegError(f"TensorRT enqueue failed for {self.artifact.path}:\n"
                               + _log(self._logger))
        if graph_ok:  # first run of this shape done: capture the next one (initialisation stays out)
            graph = self._capture()
            if graph is not None:
                self._graphs[shape_key] = graph

    def _capture(self):
        """Capture one enqueue into a CUDA graph (the run itself already happened); on failure set
        ``graph_disabled`` and return None. trtexec's recipe: a normal run first, then capture on a
        non-default stream, and trust enqueue's return value."""
        cp, ctx, stream = self._cp, self._context, self._stream
        stream.synchronize()
        graph = None
        try:
            with counting_allocations(cp) as allocations:
                stream.begin_capture()
                try:
                    ok = ctx.execute_async_v3(stream.ptr)
                finally:
                    graph = stream.end_capture()  # always leave capture mode, even if enqueue raised
        except cp.cuda.runtime.CUDARuntimeError as exc:
            self.graph_disabled = f"CUDA could not capture the enqueue ({exc})"
            return None
        # CuPy has no cudaGetLastError binding: an invalidated capture is reported (and raised) by
        # end_capture itself, and CuPy checks each call's own status, so there is nothing to clear here.
        if allocations[0]:
            self.graph_disabled = (f"the captured enqueue allocated CuPy memory {allocations[0]} time(s) (a Python "
                                   "plugin); a graph would replay into blocks the pool hands to other arrays")
        elif not ok or graph is None:
            self.graph_disabled = "TensorRT's enqueue failed under stream capture"
        return None if self.graph_disabled else graph

    def _collect(self, on_host: bool) -> dict[str, Any]:
        cp, stream = self._cp, self._stream
        devices: dict[str, Any] = {}
        for name in self.output_names:
            if name not in self._bindings:
                raise ArtifactError(f"{self.artifact.sidecar_path}: output {name!r} is not an engine output "
                                    f"({[n for n, b in self._bindings.items() if not b.is_input]})")
            if name in self._dynamic_outputs:
                stream.synchronize()  # the final shape is known only after execution
                devices[name] = self._allocator.array(name, self._bindings[name].dtype)
            else:
                devices[name] = self._bindings[name].device
        if not on_host:
            # The caller's stream waits for ours (inputs read, outputs written), then copies the outputs:
            # allocated on the caller's stream, they are the caller's, and our buffers are free for the next call.
            cp.cuda.get_current_stream().wait_event(stream.record())
            return {name: device.copy() for name, device in devices.items()}
        outputs: dict[str, Any] = {}
        for name, device in devices.items():
            if name in self._dynamic_outputs:
                outputs[name] = device.get(stream=stream)
            else:
                binding = self._bindings[name]
                device.get(stream=stream, out=binding.host, blocking=False)  # pinned: truly async
                outputs[name] = binding.host
        stream.synchronize()
        return {name: array.copy() for name, array in outputs.items()}  # pinned buffers are reused


def _log(logger) -> str:
    from .tensorrt_env import log_text

    return log_text(logger, worst=1)


def _make_output_allocator(trt, cp):
    """An ``IOutputAllocator`` backed by CuPy memory, for outputs whose shape depends on the data."""

    class CupyOutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, Any] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name, memory, size, alignment):
            buffer = self.buffers.get(tensor_name)
            if buffer is None or buffer.nbytes < size:
                buffer = cp.empty(max(int(size), 1), cp.uint8)
                self.buffers[tensor_name] = buffer
            return buffer.data.ptr

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

        def array(self, name: str, dtype: np.dtype):
            shape = self.shapes[name]
            count = int(np.prod(shape))
            return self.buffers[name][: count * dtype.itemsize].view(dtype).reshape(shape)

    return CupyOutputAllocator()
