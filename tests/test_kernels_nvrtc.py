"""Every ``.cu`` under plugins/ compiles with NVRTC, the compiler CuPy's RawModule uses at run time.

NVRTC runs without a GPU or driver, and has no C standard library headers (unlike nvcc), so an
unguarded ``#include <math.h>`` fails here exactly as it would inside ``cupy.RawModule`` on a device.
The options are CuPy's own (``assemble_cupy_compiler_options``) plus the ones ``load_raw_module`` adds.
"""

from __future__ import annotations

import pytest

from edgeseg.plugins.common.build import COMMON_DIR, cuda_sources


def _nvrtc():
    cupy = pytest.importorskip("cupy")
    try:
        nvrtc = cupy.cuda.nvrtc
        nvrtc.getVersion()
    except Exception as exc:  # no libnvrtc on this machine: nothing to compile with
        pytest.skip(f"NVRTC cannot be loaded: {exc}")
    from cupy._core.core import assemble_cupy_compiler_options

    return nvrtc, assemble_cupy_compiler_options


def test_every_plugin_source_is_found():
    names = {p.name for p in cuda_sources()}
    assert {"deform_conv.cu", "roi_align.cu", "crf_window.cu"} <= names, names


@pytest.mark.parametrize("source", cuda_sources(), ids=lambda p: p.name)
@pytest.mark.parametrize("arch", ["compute_87", "compute_90"])
def test_cuda_source_compiles_with_nvrtc(source, arch):
    nvrtc, assemble = _nvrtc()
    options = assemble(("-std=c++17", f"-I{COMMON_DIR}", f"-I{source.parent}")) + (f"-arch={arch}",)
    prog = nvrtc.createProgram(source.read_text(), source.name, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, list(options))
        except nvrtc.NVRTCError as exc:
            pytest.fail(f"NVRTC failed on {source} ({arch}): {exc}\n{nvrtc.getProgramLog(prog)}")
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    # Both storage types are instantiated: the __half kernels are the ones the FP16 engines call.
    entries = [line.split()[2].split("(")[0] for line in ptx.splitlines() if line.startswith(".visible .entry")]
    assert entries, f"{source}: NVRTC produced no kernels"
    if source.name != "crf_window.cu":
        assert any(e.endswith("_f32") for e in entries) and any(e.endswith("_f16") for e in entries), entries
