"""The AOT TensorRT plugins' kernels compile with nvcc to PTX for Jetson Orin (sm_87) and Hopper (sm_90),
with the unmangled ``*_aot_f32``/``*_aot_f16`` entries the plugins name (``_common.ptx_for``). Only the
AOT path uses nvcc; everything CuPy or a JIT plugin loads is compiled by NVRTC (test_kernels_nvrtc.py)."""

from __future__ import annotations

import pytest

from edgeseg.plugins.common.build import DEFAULT_ARCHS, compile_ptx, cuda_sources

AOT_ENTRIES = {
    "deform_conv.cu": ["deform_conv_aot_f32", "deform_conv_aot_f16"],
    "roi_align.cu": ["roi_align_aot_f32", "roi_align_aot_f16"],
}
SOURCES = {p.name: p for p in cuda_sources()}


@pytest.mark.nvcc
@pytest.mark.parametrize("arch", DEFAULT_ARCHS)
@pytest.mark.parametrize("name", sorted(AOT_ENTRIES))
def test_aot_kernels_compile_to_ptx_with_unmangled_entries(name, arch):
    ptx = compile_ptx(SOURCES[name], arch=arch).read_text()
    assert f".target {arch}" in ptx
    for entry in AOT_ENTRIES[name]:
        assert f".entry {entry}(" in ptx, f"{entry} missing from {name} PTX"
