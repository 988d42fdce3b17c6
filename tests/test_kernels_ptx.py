"""Every CUDA source under plugins/ compiles to PTX for Jetson Orin (sm_87) and Hopper (sm_90)."""

from __future__ import annotations

import pytest
from edgeseg.plugins.common.build import DEFAULT_ARCHS, compile_ptx, cuda_sources

SOURCES = cuda_sources()


def test_our_kernels_are_found():
    names = {p.name for p in SOURCES}
    assert {"deform_conv.cu", "roi_align.cu"} <= names


@pytest.mark.nvcc
@pytest.mark.parametrize("arch", DEFAULT_ARCHS)
@pytest.mark.parametrize("source", SOURCES, ids=[p.parent.name + "/" + p.name for p in SOURCES])
def test_cu_compiles_to_ptx(source, arch):
    ptx = compile_ptx(source, arch=arch).read_text()
    assert f".target {arch}" in ptx
    assert ".entry" in ptx  # at least one kernel survived (extern "C" __global__)


EXPECTED_ENTRIES = {
    "deform_conv.cu": ["deform_im2col_f32", "deform_im2col_f16", "deform_conv_direct_f32", "deform_conv_direct_f16",
                       "deform_conv_aot_f32", "deform_conv_aot_f16"],
    "roi_align.cu": ["roi_align_f32", "roi_align_f16", "roi_align_aot_f32", "roi_align_aot_f16"],
}


@pytest.mark.nvcc
@pytest.mark.parametrize("name", sorted(EXPECTED_ENTRIES))
def test_ptx_exports_unmangled_fp32_and_fp16_kernels(name):
    source = next(p for p in SOURCES if p.name == name)
    ptx = compile_ptx(source, arch="sm_87").read_text()
    for entry in EXPECTED_ENTRIES[name]:
        assert f".entry {entry}(" in ptx, f"{entry} missing from {name} PTX"
