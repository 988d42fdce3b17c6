"""TensorRTRunner's GPU memory rules (module docstring of ``edgeseg.runtime.tensorrt_runner``) on the real CuPy and
TensorRT-RTX objects, with no device: CuPy's allocator hook (``cupy.cuda.using_allocator``) hands out
host memory, so ``cupy.empty`` and views are real ``cupy.ndarray`` objects whose allocations we see."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.artifact import Artifact
from edgeseg.runtime.tensorrt_runner import TensorRTRunner, _Binding, _make_output_allocator, counting_allocations, graph_blocker


@pytest.fixture
def cupy_on_host():
    """(cupy, blocks): real CuPy whose allocations in this thread are host blocks, listed in ``blocks``."""
    cp = pytest.importorskip("cupy")
    blocks: list[np.ndarray] = []

    def malloc(size):
        block = np.empty(max(int(size), 1), np.uint8)
        blocks.append(block)
        memory = cp.cuda.UnownedMemory(block.ctypes.data, block.nbytes, block, device_id=0)
        return cp.cuda.MemoryPointer(memory, 0)

    with cp.cuda.using_allocator(malloc):
        yield cp, blocks


def test_binding_buffer_is_reused_until_the_shape_changes(cupy_on_host):
    cp, blocks = cupy_on_host
    binding = _Binding("input", np.dtype(np.float16), is_input=True)
    assert binding.ensure(cp, (2, 3, 8, 8), pinned=False)  # first buffer: captured graphs must go
    first = binding.device
    assert type(first) is cp.ndarray and first.dtype == np.float16 and first.shape == (2, 3, 8, 8)
    assert first.data.ptr == blocks[0].ctypes.data and len(blocks) == 1
    assert not binding.ensure(cp, (2, 3, 8, 8), pinned=False)  # same shape: same address, no allocation
    assert binding.device is first and len(blocks) == 1
    assert binding.ensure(cp, (1, 3, 8, 8), pinned=False)  # new shape: new buffer, the address moved
    assert binding.device.data.ptr == blocks[1].ctypes.data != first.data.ptr


def test_output_allocator_grows_only_and_results_are_views(cupy_on_host):
    cp, blocks = cupy_on_host
    trt = pytest.importorskip("tensorrt_rtx")
    allocator = _make_output_allocator(trt, cp)
    assert isinstance(allocator, trt.IOutputAllocator)
    ptr = allocator.reallocate_output_async("boxes", 0, 4 * 6 * 4, 256, 0)
    assert ptr == blocks[0].ctypes.data
    assert allocator.reallocate_output("boxes", ptr, 16, 256) == ptr and len(blocks) == 1  # fits: kept
    grown = allocator.reallocate_output("boxes", ptr, 1024, 256)
    assert grown == blocks[1].ctypes.data and len(blocks) == 2
    allocator.notify_shape("boxes", (5, 6))
    view = allocator.array("boxes", np.dtype(np.float32))
    assert view.shape == (5, 6) and view.dtype == np.float32 and view.data.ptr == grown
    assert len(blocks) == 2  # a view of the runner's buffer: _collect copies it for the caller


def test_counting_allocations_sees_cupy_allocations_and_passes_them_on(cupy_on_host):
    cp, blocks = cupy_on_host
    outer = cp.cuda.get_allocator()
    cp.empty(4, np.float32)
    with counting_allocations(cp) as count:
        assert count == [0]
        scratch = cp.empty((3, 5), np.float32)  # what a Python plugin does inside a captured enqueue
        scratch[1:].reshape(-1).view(np.int32)  # views allocate nothing
        cp.ndarray((7,), np.int8)
    assert count[0] == 2 and len(blocks) == 3  # counted, and served by the allocator in force
    assert cp.cuda.get_allocator() is outer


def _engine_artifact(tmp_path, plugins, export=None):
    extra = {} if export is None else {"export": export}
    return Artifact(tmp_path / "model.engine", engine={"plugins": plugins}, extra=extra)


def test_graphs_stay_off_for_engines_with_python_plugins(tmp_path):
    assert graph_blocker(_engine_artifact(tmp_path, "native")) is None
    assert graph_blocker(_engine_artifact(tmp_path, "edgeseg", export={"opset": 18})) is None  # no plugin nodes
    reason = graph_blocker(_engine_artifact(tmp_path, "edgeseg", export={"custom_domains": ["edgeseg"]}))
    assert "model.engine" in reason and "Python plugins" in reason and "['edgeseg']" in reason
    assert "Python plugins" in graph_blocker(_engine_artifact(tmp_path, "edgeseg"))  # unknown ONNX: assume so
    assert graph_blocker(Artifact(tmp_path / "model.engine")) is None  # no sidecar details: native plugins

    plugin_engine = _engine_artifact(tmp_path, "edgeseg", export={"custom_domains": ["edgeseg"]})
    assert TensorRTRunner(plugin_engine, cuda_graph=True).graph_disabled == reason  # decided before loading
    assert TensorRTRunner(_engine_artifact(tmp_path, "native"), cuda_graph=True).graph_disabled is None
    assert TensorRTRunner(_engine_artifact(tmp_path, "native")).graph_disabled == "cuda_graph=False"
