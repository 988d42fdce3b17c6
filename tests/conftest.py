"""Shared fixtures and hardware markers.

Markers: ``gpu`` (a CUDA device through torch or CuPy), ``cupy`` (CuPy with a device), ``trt`` (TensorRT,
either flavour, with a device), ``nvcc`` (the CUDA compiler). Building engines needs no marker: the
``rtx`` fixture hands out the real TensorRT-RTX module, whose builder runs on the CPU (those tests
run in CI and skip, with the reason, only where ``tensorrt_rtx`` does not import). Tests carrying them skip with the reason when the
hardware or library is missing. On a GPU machine set ``EDGESEG_REQUIRE_GPU=1`` to turn those skips into
failures, so a missing library cannot pass silently.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HC18 = SHARED / "data" / "hc18"

MARKERS = {
    "gpu": "needs a CUDA GPU (torch or CuPy)",
    "cupy": "needs CuPy with a CUDA device",
    "trt": "needs TensorRT (tensorrt or tensorrt_rtx) with a CUDA device",
    "nvcc": "needs the CUDA compiler nvcc",
    "slow": "takes more than a few seconds",
}


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def _import_problem(name: str) -> str | None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        return f"{name} is not installed"
    except Exception as exc:  # noqa: BLE001 - e.g. tensorrt bindings without libraries raise ImportError
        return f"{name} does not import: {type(exc).__name__}: {exc}"
    return None


@functools.cache
def _cupy_problem() -> str | None:
    problem = _import_problem("cupy")
    if problem:
        return problem
    import cupy

    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
    except Exception as exc:  # noqa: BLE001
        return f"CuPy cannot reach a CUDA device: {exc}"
    return None


@functools.cache
def _gpu_problem() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return None
    except Exception:  # noqa: BLE001
        pass
    cupy_problem = _cupy_problem()
    return None if cupy_problem is None else f"no CUDA GPU ({cupy_problem}; torch sees no CUDA device)"


@functools.cache
def _trt_problem() -> str | None:
    standard, rtx = _import_problem("tensorrt"), _import_problem("tensorrt_rtx")
    if standard and rtx:
        return f"no TensorRT library: {standard}; {rtx}"
    problem = _gpu_problem()
    if problem or not standard:
        return problem
    from edgeseg.export.engine_cache import gpu_info  # only TensorRT-RTX here: does it know this GPU?
    from edgeseg.export.trt_flavour import load_flavour

    gpu = gpu_info()
    if gpu.compute_capability not in load_flavour("rtx").known_targets():
        return (f"only TensorRT-RTX is installed and it does not run on {gpu.name} "
                f"(compute capability {gpu.compute_capability}); install standard tensorrt")
    return None


@pytest.fixture(scope="session")
def rtx():
    """The real ``tensorrt_rtx`` module (its builder, parser, config and registry need no GPU)."""
    problem = _import_problem("tensorrt_rtx")
    if problem:
        pytest.skip(f"{problem} (pip install tensorrt-rtx-cu13; setup.sh installs it)")
    import tensorrt_rtx

    return tensorrt_rtx


def _nvcc_problem() -> str | None:
    return None if shutil.which("nvcc") else "nvcc is not on PATH"


_PROBLEMS = {"gpu": _gpu_problem, "cupy": _cupy_problem, "trt": _trt_problem, "nvcc": _nvcc_problem}


def pytest_runtest_setup(item):
    strict = os.environ.get("EDGESEG_REQUIRE_GPU", "") not in ("", "0")
    for name, problem_of in _PROBLEMS.items():
        if name not in item.keywords:
            continue
        problem = problem_of()
        if problem is None:
            continue
        if strict and name != "nvcc":
            pytest.fail(f"EDGESEG_REQUIRE_GPU is set but this {name} test cannot run: {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Pin torch to one thread for a module of tiny-tensor tests (OpenMP wake-ups dominate on shared cores)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def hc18_dir() -> Path:
    if not (HC18 / "images").is_dir():
        pytest.skip(f"HC18 data not found at {HC18}")
    return HC18


@pytest.fixture(scope="session")
def build_host_kernels():
    """``build(source) -> ctypes library``: compile a kernel's host-side C++ build. Skips only where there
    is no C++ compiler; a compile error with one present is a failure (a broken ``.cuh``, not a missing tool)."""
    from edgeseg.plugins.common.build import KernelBuildError, build_host_library, host_compiler

    def build(source):
        try:
            return build_host_library(source)
        except KernelBuildError as exc:
            if host_compiler() is not None:
                pytest.fail(f"the host build of {source} does not compile:\n{exc}", pytrace=False)
            pytest.skip(f"no C++ compiler to build the host kernel library: {exc}")

    return build
