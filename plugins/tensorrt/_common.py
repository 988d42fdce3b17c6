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
def plugin_implementation() -> str:
    """``"aot"`` or ``"jit"``, decided once per process (at the first plugin import): AOT when this
    ``tensorrt.plugin`` has ``aot_impl`` (10.9+) and nvcc is on PATH. The plugin modules register
    ``aot_impl`` exactly when this says ``"aot"`` and the builder sets ``PREFER_AOT_PYTHON_PLUGINS``
    from the same answer; asking PATH twice could disagree, and tensorrt.plugin then refuses the network."""
    from importlib import import_module

    plugin_module = import_module("tensorrt.plugin")
    return "aot" if hasattr(plugin_module, "aot_impl") and aot_available() else "jit"


# PTX ISA version -> the oldest CUDA driver that loads it (NVIDIA's PTX release history, as cuda-python's
# get_minimal_required_cuda_ver_from_ptx_ver lists it). Newer ISAs follow the pattern 9.x -> CUDA 13.x.
_PTX_MIN_CUDA = {
    "7.0": (11, 0), "7.1": (11, 1), "7.2": (11, 2), "7.3": (11, 3), "7.4": (11, 4), "7.5": (11, 5), "7.6": (11, 6),
    "7.7": (11, 7), "7.8": (11, 8), "8.0": (12, 0), "8.1": (12, 1), "8.2": (12, 2), "8.3": (12, 3), "8.4": (12, 4),
    "8.5": (12, 5), "8.6": (12, 7), "8.7": (12, 8), "8.8": (12, 9), "9.0": (13, 0), "9.1": (13, 1),
}
PTX_BUILT: dict[str, str] = {}  # kernel source file -> PTX ISA of the AOT PTX handed to TensorRT in this process


def ptx_isa(ptx: str) -> str:
    """The ``.version`` directive of a PTX text (``"9.0"``)."""
    import re

    match = re.search(r"^\s*\.version\s+(\d+\.\d+)", ptx, re.M)
    if match is None:
        raise ValueError("PTX text has no .version directive")
    return match.group(1)


def min_driver_cuda(isa: str) -> tuple[int, int]:
    """The oldest CUDA version a driver must support to load PTX of ISA ``isa``."""
    if isa in _PTX_MIN_CUDA:
        return _PTX_MIN_CUDA[isa]
    major, minor = (int(v) for v in isa.split("."))
    return (major + 4, minor)


def driver_cuda_version() -> tuple[int, int] | None:
    """The CUDA version this machine's driver supports (``cudaDriverGetVersion``), None without a driver."""
    try:
        import cupy

        version = int(cupy.cuda.runtime.driverGetVersion())
    except Exception:  # noqa: BLE001 - no CuPy or no driver: nothing to compare with
        return None
    return (version // 1000, (version % 1000) // 10) if version else None


def check_ptx_loads(isa: str, source: str) -> None:
    """Refuse PTX that this machine's driver is too old to load, naming both versions and the ways out."""
    from edgeseg.errors import EdgesegError

    driver, need = driver_cuda_version(), min_driver_cuda(isa)
    if driver is not None and driver < need:
        have = ".".join(map(str, driver))
        raise EdgesegError(
            f"{source}: nvcc wrote PTX ISA {isa}, which needs a driver for CUDA {need[0]}.{need[1]} or newer, but "
            f"this driver supports CUDA {have}; the engine's AOT plugin kernels would not load. Update the NVIDIA "
            f"driver, put an nvcc of CUDA {have} or older first on PATH, or build with JIT plugins (no nvcc on PATH)"
        )


@functools.cache
def _compiled_ptx(source: Path, kernel_prefix: str, arch: str) -> str:
    from edgeseg.plugins.common.build import compile_ptx

    ptx = compile_ptx(source, arch=arch).read_text()
    if f".entry {kernel_prefix}" not in ptx:
        raise RuntimeError(f"{source.name} has no kernel {kernel_prefix}* for the AOT plugin")
    return ptx


def ptx_for(source: Path, kernel_prefix: str) -> str:
    """PTX text of ``source`` for this GPU's compute capability; its ISA is checked against the driver
    and recorded in :data:`PTX_BUILT` (the engine sidecar reports it)."""
    from edgeseg.runtime.tensorrt_env import gpu_info

    ptx = _compiled_ptx(source, kernel_prefix, "sm_" + gpu_info().compute_capability.replace(".", ""))
    isa = ptx_isa(ptx)
    check_ptx_loads(isa, source.name)
    PTX_BUILT[source.name] = isa
    return ptx


def float_bits(value: float) -> int:
    """The int32 bit pattern of a float32 (AOT scalar arguments are int32 only)."""
    import numpy as np

    return int(np.array([value], np.float32).view(np.int32)[0])
