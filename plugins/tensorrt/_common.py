"""Shared pieces of edgeseg's tensorrt.plugin definitions: dtype names, the CUDA stream TensorRT hands
us, and PTX for ahead-of-time kernels compiled from the op's own ``.cu`` file."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

REQUIRES_TENSORRT = (10, 6)
BLOCK = 256


def json_attribute(name: str, value: str | bytes) -> dict:
    """A JSON-object string attribute as a dict. NVIDIA's ONNX parser appends a NUL to string
    attributes, so trailing NULs are stripped; an empty value means no options."""
    from edgeseg.errors import EdgesegError

    text = (value.decode() if isinstance(value, bytes) else value).rstrip("\0").strip()
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgesegError(f"plugin attribute {name}={text!r} is not valid JSON ({exc}); "
                           "expected a JSON object such as '{\"iterations\": 5}'") from exc
    if not isinstance(options, dict):
        raise EdgesegError(f"plugin attribute {name}={text!r} is a JSON {type(options).__name__}; "
                           "expected a JSON object")
    return options


def cupy_view(tensor):
    """A CuPy array over a ``trtp.Tensor`` (zero copy through ``__cuda_array_interface__``)."""
    import cupy

    return cupy.asarray(tensor)


def external_stream(stream: int):
    """TensorRT's stream as a CuPy stream, for ``with``: CuPy kernels and cuBLAS then run on it."""
    import cupy

    return cupy.cuda.ExternalStream(stream)


def aot_available() -> bool:
    """AOT kernels need nvcc at engine-build time (JetPack and CUDA toolkits ship it)."""
    return shutil.which("nvcc") is not None


@functools.cache
def ptx_for(source: Path, kernel_prefix: str) -> str:
    """PTX text of ``source`` for this GPU's compute capability."""
    from edgeseg.export.engine_cache import gpu_info
    from edgeseg.plugins.common.build import compile_ptx

    arch = "sm_" + gpu_info().compute_capability.replace(".", "")
    ptx = compile_ptx(source, arch=arch).read_text()
    if f".entry {kernel_prefix}" not in ptx:
        raise RuntimeError(f"{source.name} has no kernel {kernel_prefix}* for the AOT plugin")
    return ptx


def float_bits(value: float) -> int:
    """The int32 bit pattern of a float32 (AOT scalar arguments are int32 only)."""
    import numpy as np

    return int(np.array([value], np.float32).view(np.int32)[0])
