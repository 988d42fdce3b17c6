"""TensorRT backend: runs a serialized ``.engine`` through the tensor-name API (TensorRT 10.3 .. 11.x).

I/O goes by tensor name (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) on one
non-default CUDA stream, with CuPy device buffers. NumPy callers go through pinned host buffers
(async copies, one synchronize); CuPy callers stay on the device (the caller's stream waits on ours
through an event, no host sync). ``cuda_graph=True`` captures ``execute_async_v3`` once per input
shape and replays it, falling back to plain enqueue when the engine cannot be captured. Outputs
whose shape depends on the data (NMS, NonZero) get an output allocator.

Before loading, the plan header's TensorRT version and the sidecar's GPU are compared with this
machine's, and a mismatch is refused with the command to rebuild.

>>> from edgeseg.runtime import create_runner
>>> with create_runner("hc18_fastseg.engine", cuda_graph=True) as runner:   # doctest: +SKIP
...     out = runner.infer({"input": x})      # x: (1, 1, 256, 256) float32 NumPy or CuPy
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._deps import require
from ..artifact import Artifact
from ..errors import ArtifactError, EdgesegError, InputError
from .base import Runner, array_module


def tensorrt_problem() -> str | None:
    """None when the tensorrt backend can run here, else why not (for the backend registry)."""
    from .._deps import available

    if not available("tensorrt"):
        return "tensorrt does not import"
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

    register_backend("tensorrt", "edgeseg.runtime.trt_runner:TrtRunner", formats=["engine"], priority=20,
                     requires=["tensorrt", "cupy"], probe=tensorrt_problem)


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


class TrtRunner(Runner):
    """Runs a TensorRT ``.engine`` artifact.

    Args:
        artifact: the engine's Artifact or path (sidecar next to it, written by ``edgeseg build``).
        device: CUDA device index.
        cuda_graph: capture the enqueue in a CUDA graph per input shape and replay it (falls back to
            plain enqueue, once, when capture fails).
        profile: optimization profile index to use.
        check_compatibility: refuse engines from another TensorRT version or GPU before loading.

    Example::

        with TrtRunner("hc18_fastseg.engine") as runner:
            logits = runner.infer({"input": x})["logits"]   # x (1, 1, 256, 256) float32 -> (1, 2, 256, 256)
    """

    backend = "tensorrt"

    def __init__(self, artifact: Artifact | str, device: int = 0, cuda_graph: bool = False, profile: int = 0,
                 check_compatibility: bool = True, check_finite: bool = True) -> None:
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
        self._graph_failed = False
        super().__init__(artifact, check_finite=check_finite)

    # --- lifecycle -------------------------------------------------------------------------------
    def _activate(self) -> None:
        from edgeseg.export.engine_cache import check_engine_compatible, gpu_info
        from edgeseg.export.trt_build import (
            capturing_logger,
            import_tensorrt,
            log_text,
            register_plugins,
        )

        trt = import_tensorrt()
        cp = require("cupy", "the tensorrt backend's device buffers")
        cp.cuda.Device(self.device_index).use()
        data = self.artifact.path.read_bytes()
        if self.check_compatibility:
            check_engine_compatible(self.artifact, data[:64], trt.__version__, gpu_info(self.device_index))
        logger = capturing_logger(trt, echo_severity=1)
        register_plugins(trt, logger, (self.artifact.engine or {}).get("plugins", "native"))
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ArtifactError(f"TensorRT could not load {self.artifact.path}:\n{log_text(logger, worst=1)}")
        context = engine.create_execution_context()
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
        self._graphs.clear()
        self._bindings = {}
        self._allocator = None
        self._context = self._engine = self._runtime = None
        self._stream = None

    # --- inference -------------------------------------------------------------------------------
    def _infer(self, feed: dict[str, Any]) -> dict[str, Any]:
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
        engine = self._engine
        if hasattr(engine, "get_tensor_profile_shape"):  # absent from the recorded 10.3..11.1 API surface
            lo, opt, hi = engine.get_tensor_profile_shape(name, self.profile)
            return f"(min {tuple(lo)}, opt {tuple(opt)}, max {tuple(hi)})"
        return f"{(self.artifact.engine or {}).get('profiles', {}).get(name, '(see the engine sidecar)')}"

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
        graph_ok = self.use_cuda_graph and not self._graph_failed and not self._dynamic_outputs
        graph = self._graphs.get(shape_key) if graph_ok else None
        if graph is not None:
            graph.launch(stream)
            return
        if not ctx.execute_async_v3(stream.ptr):
            raise EdgesegError(f"TensorRT enqueue failed for {self.artifact.path}:\n"
                               + _log(self._logger))
        if graph_ok:  # first run of this shape done: capture the next one (initialisation stays out)
            self._graphs[shape_key] = self._capture()

    def _capture(self):
        """Capture one enqueue into a CUDA graph (the run itself already happened); on failure disable
        graphs for this runner and return None. trtexec's recipe: a normal run first, then capture on a
        non-default stream, and trust enqueue's return value."""
        cp, ctx, stream = self._cp, self._context, self._stream
        stream.synchronize()
        graph = None
        try:
            stream.begin_capture()
            try:
                ok = ctx.execute_async_v3(stream.ptr)
            finally:
                graph = stream.end_capture()  # always leave capture mode, even if enqueue raised
        except cp.cuda.runtime.CUDARuntimeError:
            ok = False
        # CuPy has no cudaGetLastError binding: an invalidated capture is reported (and raised) by
        # end_capture itself, and CuPy checks each call's own status, so there is nothing to clear here.
        if not ok or graph is None:
            self._graph_failed = True
            return None
        return graph

    def _collect(self, on_host: bool) -> dict[str, Any]:
        cp, stream = self._cp, self._stream
        outputs: dict[str, Any] = {}
        for name in self.output_names:
            if name not in self._bindings:
                raise ArtifactError(f"{self.artifact.sidecar_path}: output {name!r} is not an engine output "
                                    f"({[n for n, b in self._bindings.items() if not b.is_input]})")
            binding = self._bindings[name]
            if name in self._dynamic_outputs:
                stream.synchronize()  # the final shape is known only after execution
                device = self._allocator.array(name, binding.dtype)
            else:
                device = binding.device
            if on_host and name not in self._dynamic_outputs:
                device.get(stream=stream, out=binding.host, blocking=False)  # pinned: truly async
                outputs[name] = binding.host
            elif on_host:
                outputs[name] = device.get(stream=stream)
            else:
                with stream:
                    outputs[name] = device.copy()  # the caller owns it; our buffer is reused next call
        if on_host:
            stream.synchronize()
            return {name: array.copy() for name, array in outputs.items()}  # pinned buffers are reused
        cp.cuda.get_current_stream().wait_event(stream.record())
        return outputs


def _log(logger) -> str:
    from edgeseg.export.trt_build import log_text

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
