"""Compile edgeseg's CUDA sources: PTX with nvcc, host libraries of the kernel bodies with g++,
and CuPy RawModules on a GPU.

Outputs are cached under ``$EDGESEG_CACHE`` (default ``~/.cache/edgeseg/kernels``), keyed by the
hash of the sources and flags, so repeated test runs compile once.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from edgeseg.errors import EdgesegError

PLUGINS_DIR = Path(__file__).resolve().parents[1]
COMMON_DIR = PLUGINS_DIR / "common"
DEFAULT_ARCHS = ("sm_87", "sm_90")  # Jetson Orin, Hopper


class KernelBuildError(EdgesegError):
    """A compiler failed; the message carries its output."""


def cache_dir() -> Path:
    root = Path(os.environ.get("EDGESEG_CACHE", Path.home() / ".cache" / "edgeseg")) / "kernels"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _digest(paths: list[Path], flags: list[str]) -> str:
    h = hashlib.sha256()
    for path in sorted(set(paths)):
        h.update(path.read_bytes())
    h.update(" ".join(flags).encode())
    return h.hexdigest()[:16]


def _headers(source: Path) -> list[Path]:
    return [source, *source.parent.glob("*.cuh"), *COMMON_DIR.glob("*.cuh")]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KernelBuildError(f"{' '.join(cmd)} failed:\n{proc.stderr or proc.stdout}")


def compile_ptx(source: str | Path, arch: str = "sm_87", extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile one ``.cu`` file to PTX for ``arch`` with nvcc and return the ``.ptx`` path."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise KernelBuildError("nvcc is not on PATH; install the CUDA toolkit to compile kernels")
    source = Path(source)
    flags = ["-ptx", f"-arch={arch}", "-std=c++17", f"-I{COMMON_DIR}", f"-I{source.parent}", *extra_flags]
    out = cache_dir() / f"{source.stem}-{arch}-{_digest(_headers(source), flags)}.ptx"
    if not out.exists():
        _run([nvcc, *flags, str(source), "-o", str(out)])
    return out


def host_compiler() -> str | None:
    """The C++ compiler :func:`host_library_path` uses (``$CXX``, else g++ or c++), or None."""
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def host_library_path(source: str | Path, extra_flags: tuple[str, ...] = (), depends: tuple[Path, ...] = (),
                      what: str = "the host kernel library") -> Path:
    """Compile a C++ ``source`` into a shared library with :func:`host_compiler` and return its path (cached,
    keyed by the source, its headers, ``depends`` and the flags)."""
    cxx = host_compiler()
    if cxx is None:
        raise KernelBuildError(f"no C++ compiler (g++) found to build {what}")
    source = Path(source)
    flags = ["-O2", "-std=c++17", "-shared", "-fPIC", f"-I{COMMON_DIR}", f"-I{source.parent}", *extra_flags]
    out = cache_dir() / f"{source.stem}-{_digest([*_headers(source), *depends], flags)}.so"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp.so")
        _run([cxx, *flags, str(source), "-o", str(tmp)])
        tmp.replace(out)
    return out


def build_host_library(source: str | Path, extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Compile a ``*_host.cpp`` (kernel bodies in plain loops) into a shared library and load it."""
    return ctypes.CDLL(str(host_library_path(source, extra_flags)))


def raw_module_options(source: str | Path) -> tuple[str, ...]:
    """Our NVRTC options for ``source`` in a CuPy ``RawModule`` (CuPy adds its own, and ``-arch``)."""
    source = Path(source)
    return ("-std=c++17", f"-I{COMMON_DIR}", f"-I{source.parent}")


def load_raw_module(source: str | Path, options: tuple[str, ...] = ()):
    """Load a ``.cu`` file as a CuPy ``RawModule`` (compiled by NVRTC on first use, on a GPU)."""
    from edgeseg._deps import require

    cupy = require("cupy", "CUDA kernels")
    return cupy.RawModule(code=Path(source).read_text(), options=(*raw_module_options(source), *options))


def cuda_sources() -> list[Path]:
    """Every ``.cu`` file under ``plugins/``."""
    return sorted(PLUGINS_DIR.rglob("*.cu"))
