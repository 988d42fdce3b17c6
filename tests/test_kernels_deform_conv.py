"""The deformable-convolution kernel bodies (plugins/deform_conv/deform_conv.cuh), built for the host,
agree with a float64 reference with torchvision's semantics, borders included; the CuPy launcher agrees
on a GPU."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from edgeseg.plugins import deform_conv as dcn

from edgeseg.errors import InputError
from edgeseg.ops.reference.deform_conv import deform_conv2d as reference_deform_conv2d


def _references():
    """The ops' literal float64 reference (torchvision semantics)."""
    return [reference_deform_conv2d]


CASES = [
    # (N, C, H, W, CO, KH, KW, stride, padding, dilation, groups, offset_groups, with_mask, with_bias)
    (2, 4, 7, 6, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, True, True),
    (1, 4, 8, 8, 6, 3, 3, (2, 2), (1, 1), (1, 1), 2, 2, True, False),
    (1, 2, 9, 7, 2, 3, 2, (1, 2), (2, 0), (2, 1), 1, 2, False, True),
    (1, 6, 5, 5, 3, 1, 1, (1, 1), (0, 0), (1, 1), 3, 1, True, True),
]


def _random_case(case, seed):
    n, c, h, w, co, kh, kw, stride, padding, dilation, groups, og, with_mask, with_bias = case
    rng = np.random.default_rng(seed)
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    # offsets wide enough to push many samples across every border, plus exact integers and the
    # exact border values where the sampling rule switches (-1 and H/W)
    offset = rng.uniform(-4, 4, (n, og * 2 * kh * kw, ho, wo)).astype(np.float32)
    offset.flat[:: 7] = np.round(offset.flat[:: 7])
    offset[0, 0, 0, 0] = -1.0 - (0 * stride[0] - padding[0])  # y exactly -1 for tap 0
    mask = rng.uniform(0, 1, (n, og * kh * kw, ho, wo)).astype(np.float32) if with_mask else None
    weight = rng.standard_normal((co, c // groups, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32) if with_bias else None
    return dict(x=x, offset=offset, weight=weight, bias=bias, mask=mask, stride=stride, padding=padding,
                dilation=dilation)


def _ptr(a):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


@pytest.fixture(scope="module")
def host_lib(build_host_kernels):
    return build_host_kernels(dcn.HOST_SOURCE)


def _dims(a):
    return dcn.check_shapes(a["x"].shape, a["offset"].shape, a["weight"].shape,
                            None if a["mask"] is None else a["mask"].shape,
                            None if a["bias"] is None else a["bias"].shape, a["stride"], a["padding"], a["dilation"])


def _host_direct(lib, a):
    dims = _dims(a)
    n, co, ho, wo = dims[0], dims[4], dims[5], dims[6]
    out = np.empty((n, co, ho, wo), np.float32)
    lib.deform_conv_direct_f32(_ptr(a["x"]), _ptr(a["offset"]), _ptr(a["mask"]), _ptr(a["weight"]),
                               _ptr(a["bias"]), _ptr(out), *[ctypes.c_int(d) for d in dims])
    return out


def _host_im2col(lib, a):
    dims = _dims(a)
    n, c, co, ho, wo, kh, kw, groups = dims[0], dims[1], dims[4], dims[5], dims[6], dims[7], dims[8], dims[15]
    cols = np.empty((c * kh * kw, n * ho * wo), np.float32)
    lib.deform_im2col_f32(_ptr(a["x"]), _ptr(a["offset"]), _ptr(a["mask"]), _ptr(cols), *[ctypes.c_int(d) for d in dims])
    w_g = a["weight"].reshape(groups, co // groups, -1).astype(np.float64)
    out = np.matmul(w_g, cols.astype(np.float64).reshape(groups, -1, n * ho * wo)).reshape(co, n, ho, wo)
    out = out.transpose(1, 0, 2, 3)
    return out if a["bias"] is None else out + a["bias"].reshape(1, co, 1, 1)


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("route", ["direct", "im2col"])
def test_host_kernel_matches_reference(host_lib, case, route):
    a = _random_case(case, seed=len(route) * 10 + CASES.index(case))
    got = (_host_direct if route == "direct" else _host_im2col)(host_lib, a)
    for ref in _references():
        want = ref(a["x"], a["offset"], a["weight"], a["bias"], a["stride"], a["padding"], a["dilation"], a["mask"])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{route} vs {ref.__module__}")


def test_samples_outside_image_read_zero(host_lib):
    """Offsets moving every tap far outside the image give bias only (nothing leaks from the border)."""
    a = _random_case(CASES[0], seed=3)
    a["offset"] = np.full_like(a["offset"], 50.0)
    got = _host_direct(host_lib, a)
    np.testing.assert_allclose(got, np.broadcast_to(a["bias"].reshape(1, -1, 1, 1), got.shape), atol=1e-6)


def test_zero_offsets_equal_plain_convolution(host_lib):
    torch = pytest.importorskip("torch")
    a = _random_case(CASES[1], seed=4)
    a["offset"] = np.zeros_like(a["offset"])
    a["mask"] = None
    got = _host_direct(host_lib, a)
    want = torch.nn.functional.conv2d(torch.from_numpy(a["x"]), torch.from_numpy(a["weight"]), stride=a["stride"],
                                      padding=a["padding"], dilation=a["dilation"], groups=2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "change, field",
    [(dict(offset_shape=(1, 17, 8, 8)), "offset"), (dict(mask_shape=(1, 3, 8, 8)), "mask"),
     (dict(weight_shape=(6, 3, 3, 3)), "weight"), (dict(bias_shape=(5,)), "bias")],
)
def test_bad_shapes_name_the_field(change, field):
    shapes = dict(input_shape=(1, 4, 8, 8), offset_shape=(1, 18, 8, 8), weight_shape=(6, 4, 3, 3),
                  mask_shape=(1, 9, 8, 8), bias_shape=(6,))
    shapes.update(change)
    with pytest.raises(InputError, match=field):
        dcn.check_shapes(**shapes, stride=1, padding=1, dilation=1)


@pytest.mark.cupy
@pytest.mark.parametrize("method", ["im2col", "direct"])
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-4), ("float16", 3e-2)])
def test_cupy_launcher_matches_reference(method, dtype, tol):
    import cupy as cp

    for index, case in enumerate(CASES):
        a = _random_case(case, seed=100 + index)
        want = reference_deform_conv2d(a["x"], a["offset"], a["weight"], a["bias"], a["stride"], a["padding"],
                                       a["dilation"], a["mask"])
        dev = {k: (cp.asarray(v.astype(dtype)) if isinstance(v, np.ndarray) else v) for k, v in a.items()}
        got = dcn.deform_conv2d(dev["x"], dev["offset"], dev["weight"], dev["bias"], a["stride"], a["padding"],
                                a["dilation"], dev["mask"], method=method)
        assert got.dtype == np.dtype(dtype)
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(cp.asnumpy(got).astype(np.float64), want, atol=tol * scale, rtol=tol)
