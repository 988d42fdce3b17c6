"""Every ``.cu`` under plugins/ compiles the way the product compiles it: NVRTC, through CuPy's RawModule
(``load_raw_module``: the CuPy launchers and the JIT TensorRT plugins), and exports the kernels the
launchers look up by name, ``float`` and ``__half`` alike. nvcc is only for AOT PTX (test_kernels_ptx.py).

NVRTC runs without a GPU or driver and has no C standard library headers (unlike nvcc), so an
unguarded ``#include <math.h>`` fails here exactly as it would inside ``cupy.RawModule`` on a device.
"""

from __future__ import annotations

import functools

import pytest

from edgeseg.plugins.common.build import cuda_sources, raw_module_options

# What the launchers pass to RawModule.get_function (plugins/*/__init__.py).
LAUNCHED = {
    "deform_conv.cu": ["deform_im2col_f32", "deform_im2col_f16", "deform_conv_direct_f32", "deform_conv_direct_f16"],
    "roi_align.cu": ["roi_align_f32", "roi_align_f16"],
    "crf_window.cu": ["crf_window_norms", "crf_window_step"],
}
SOURCES = {p.name: p for p in cuda_sources()}


def test_every_plugin_source_is_found():
    assert set(LAUNCHED) == set(SOURCES), "a new .cu needs its launched kernels listed here"


@functools.cache
def _nvrtc_ptx(name: str, arch: str) -> str:
    """PTX of one source as ``cupy.RawModule`` compiles it on an ``arch`` GPU."""
    cupy = pytest.importorskip("cupy")
    from cupy._core.core import assemble_cupy_compiler_options  # what RawModule's compile_with_cache applies

    nvrtc = cupy.cuda.nvrtc
    try:
        nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - libnvrtc missing: nothing to compile with
        pytest.skip(f"NVRTC cannot be loaded: {exc}")
    source = SOURCES[name]
    # compile_using_nvrtc then appends the arch and --device-as-default-execution-space (cupy/cuda/compiler.py).
    options = (*assemble_cupy_compiler_options(raw_module_options(source)), f"-arch={arch}",
               "--device-as-default-execution-space")
    prog = nvrtc.createProgram(source.read_text(), source.name, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, list(options))
        except nvrtc.NVRTCError as exc:
            pytest.fail(f"NVRTC failed on {source} ({arch}): {exc}\n{nvrtc.getProgramLog(prog)}")
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


@pytest.mark.parametrize("name", sorted(LAUNCHED))
@pytest.mark.parametrize("arch", ["compute_87", "compute_90"])  # Jetson Orin, Hopper
def test_cuda_source_compiles_with_nvrtc_and_exports_the_launched_kernels(name, arch):
    ptx = _nvrtc_ptx(name, arch)
    assert f".target sm_{arch.split('_')[1]}" in ptx
    entries = {line.split()[2].split("(")[0] for line in ptx.splitlines() if line.startswith(".visible .entry")}
    missing = [kernel for kernel in LAUNCHED[name] if kernel not in entries]
    assert not missing, f"{name}: {missing} not in NVRTC's PTX (extern \"C\"?); it has {sorted(entries)}"
