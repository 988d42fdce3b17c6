"""The RoIAlign kernel body (plugins/roi_align/roi_align.cuh), built for the host, agrees with a float64
reference with torchvision's semantics (aligned and not, fixed and adaptive sampling, boxes crossing the
border); the CuPy launcher agrees on a GPU."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from edgeseg.plugins import roi_align as ra

from edgeseg.errors import InputError
from edgeseg.ops.reference.roi_align import roi_align as reference_roi_align


def _references():
    """The ops' literal float64 reference (torchvision semantics, rois (K, 5))."""
    return [reference_roi_align]


def _rois(rng, n, h, w, count):
    x1 = rng.uniform(-6, w, count)
    y1 = rng.uniform(-6, h, count)
    rois = np.stack([rng.integers(0, n, count), x1, y1, x1 + rng.uniform(0.2, w, count),
                     y1 + rng.uniform(0.2, h, count)], axis=1)
    # fixed boxes: whole image, one exactly past the bottom-right border, a degenerate point box
    fixed = np.array([[0, 0, 0, w, h], [n - 1, w - 2, h - 2, w + 3, h + 3], [0, 3, 3, 3, 3]], np.float64)
    return np.concatenate([rois, fixed]).astype(np.float32)


CASES = [  # (N, C, H, W, output_size, spatial_scale, sampling_ratio, aligned)
    (2, 3, 12, 10, (4, 4), 1.0, 2, False),
    (2, 3, 12, 10, (3, 5), 0.5, -1, False),
    (1, 2, 9, 13, (2, 2), 1.0, 0, True),
    (2, 2, 16, 16, (7, 7), 0.25, 3, True),
]


@pytest.fixture(scope="module")
def host_lib(build_host_kernels):
    return build_host_kernels(ra.HOST_SOURCE)


def _host_roi_align(lib, x, rois, output_size, scale, sampling, aligned):
    ph, pw = ra.check_shapes(x.shape, rois.shape, output_size)
    out = np.empty((rois.shape[0], x.shape[1], ph, pw), np.float32)
    n, c, h, w = x.shape
    lib.roi_align_f32(x.ctypes.data_as(ctypes.c_void_p), rois.ctypes.data_as(ctypes.c_void_p),
                      out.ctypes.data_as(ctypes.c_void_p), *[ctypes.c_int(v) for v in (n, c, h, w, rois.shape[0], ph, pw)],
                      ctypes.c_float(scale), ctypes.c_int(sampling), ctypes.c_int(int(aligned)))
    return out


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_host_kernel_matches_reference(host_lib, case):
    n, c, h, w, size, scale, sampling, aligned = case
    rng = np.random.default_rng(CASES.index(case))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    rois = _rois(rng, n, h / scale, w / scale, 12)
    got = _host_roi_align(host_lib, x, rois, size, scale, sampling, aligned)
    for ref in _references():
        want = ref(x, rois, size, scale, sampling, aligned)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=ref.__module__)


def test_aligned_whole_image_box_with_one_sample_reproduces_the_image(host_lib):
    """Half-pixel convention: an aligned RoI over the whole image pooled to its own size, one sample per
    bin, lands on pixel centres and returns the input exactly."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 6, 9)).astype(np.float32)
    rois = np.array([[0, 0, 0, 9, 6]], np.float32)
    got = _host_roi_align(host_lib, x, rois, (6, 9), 1.0, 1, True)
    np.testing.assert_allclose(got[0], x[0], atol=1e-6)


def test_bad_boxes_shape_names_the_field():
    with pytest.raises(InputError, match="boxes"):
        ra.check_shapes((1, 2, 8, 8), (3, 4), (2, 2))
    with pytest.raises(InputError, match="output_size"):
        ra.check_shapes((1, 2, 8, 8), (3, 5), (0, 2))


@pytest.mark.cupy
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float16", 2e-2)])
def test_cupy_launcher_matches_reference(dtype, tol):
    import cupy as cp

    for index, (n, c, h, w, size, scale, sampling, aligned) in enumerate(CASES):
        rng = np.random.default_rng(50 + index)
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        rois = _rois(rng, n, h / scale, w / scale, 12)
        want = reference_roi_align(x, rois, size, scale, sampling, aligned)
        got = ra.roi_align(cp.asarray(x.astype(dtype)), cp.asarray(rois.astype(dtype)), size, scale, sampling, aligned)
        assert got.dtype == np.dtype(dtype)
        if dtype == "float16":  # fp16 rois move boxes: compare with the reference on the rounded boxes
            want = reference_roi_align(x.astype(dtype), rois.astype(dtype), size, scale, sampling, aligned)
        np.testing.assert_allclose(cp.asnumpy(got).astype(np.float64), want, rtol=tol, atol=tol)


@pytest.mark.cupy
def test_cupy_launcher_accepts_per_image_box_lists():
    import cupy as cp

    x = cp.asarray(np.random.default_rng(1).standard_normal((2, 2, 8, 8)), cp.float32)
    boxes = [cp.asarray([[1.0, 1.0, 5.0, 6.0]], cp.float32), cp.asarray([[0.0, 2.0, 7.0, 7.0]], cp.float32)]
    rows = cp.asarray([[0, 1.0, 1.0, 5.0, 6.0], [1, 0.0, 2.0, 7.0, 7.0]], cp.float32)
    cp.testing.assert_allclose(ra.roi_align(x, boxes, 3, aligned=True), ra.roi_align(x, rows, 3, aligned=True))
