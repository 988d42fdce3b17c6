"""The windowed-CRF CUDA kernel's body, built for the host, computes exactly the NumPy windowed CRF,
borders included (NVRTC compiles the kernel itself for Orin and Hopper: test_kernels_nvrtc.py)."""

from __future__ import annotations

import numpy as np
import pytest
from edgeseg.plugins.dense_crf import (
    HOST_SOURCE,
    host_library,
    widths_vector,
    windowed_crf_host,
    windowed_step_host,
)

import edgeseg.ops.crf as crf_module
from edgeseg.ops.crf_window import mean_field_windowed, window_weights

compat_matrix, unary_from_probs = crf_module.compat_matrix, crf_module.unary_from_probs
WIDTHS = {"sxy_gaussian": (3.0, 2.5), "sxy_bilateral": (20.0, 30.0)}


@pytest.fixture
def crf_host(build_host_kernels):
    """The host build, or a skip only where there is no C++ compiler (a compile error fails)."""
    build_host_kernels(HOST_SOURCE)
    return host_library()


def test_a_host_compile_error_fails_instead_of_skipping(build_host_kernels, tmp_path):
    from edgeseg.plugins.common.build import host_compiler

    if host_compiler() is None:
        pytest.skip("no C++ compiler here: then skipping is right")
    broken = tmp_path / "broken_host.cpp"
    broken.write_text("extern \"C\" int f() { return undefined_name; }\n")
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as raised:
        build_host_kernels(broken)
    assert raised.type is pytest.fail.Exception, f"a compile error became a skip: {raised.value}"
    assert "broken_host.cpp does not compile" in str(raised.value) and "undefined_name" in str(raised.value)


def case(classes, size, channels, seed):
    rng = np.random.default_rng(seed)
    h, w = size
    image = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    image[:, : w // 2] //= 4  # two regions, so the bilateral kernel has something to see
    logits = rng.normal(0, 2, (classes, h, w))
    probs = np.exp(logits - logits.max(0))
    probs = (probs / probs.sum(0)).astype(np.float32)
    srgb = tuple(float(v) for v in rng.uniform(8, 20, channels))
    return image, probs, srgb


@pytest.mark.parametrize(
    "classes, size, channels, window, matrix",
    [(2, (6, 9), 3, 7, False), (5, (11, 8), 1, 5, True), (3, (4, 4), 3, 9, True), (21, (7, 10), 3, 3, False)],
)
def test_host_build_matches_numpy_windowed_crf(crf_host, classes, size, channels, window, matrix):
    image, probs, srgb = case(classes, size, channels, seed=classes)
    energy = unary_from_probs(probs)
    mu = np.abs(np.subtract.outer(np.arange(classes), np.arange(classes))).astype(np.float32) if matrix else None
    g_gauss = compat_matrix(3.0, mu, classes, "compat_gaussian")
    g_bilat = compat_matrix(10.0, mu, classes, "compat_bilateral")
    args = (energy, image, window, 5, WIDTHS["sxy_gaussian"], WIDTHS["sxy_bilateral"], srgb, g_gauss, g_bilat)
    expected = mean_field_windowed(*args)
    got = windowed_crf_host(*args)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert np.abs(got - probs).max() > 0.05  # five steps moved the marginals: not a vacuous comparison


def test_one_host_step_matches_numpy_at_every_border_pixel(crf_host):
    image, probs, srgb = case(3, (5, 6), 3, seed=9)
    window, r = 5, 2
    energy = unary_from_probs(probs)
    g = compat_matrix(2.0, None, 3, "compat")
    offsets, w_gauss, w_bilat = window_weights(image, window, WIDTHS["sxy_gaussian"], WIDTHS["sxy_bilateral"], srgb)
    # norms from the kernel, then one step, against the same step written in NumPy
    norms = np.empty((2, 5, 6), np.float32)
    widths = widths_vector(WIDTHS["sxy_gaussian"], WIDTHS["sxy_bilateral"], srgb)
    from edgeseg.plugins.dense_crf import _F, _U8, _ptr

    crf_host.crf_window_norms_host(_ptr(image, _U8), _ptr(norms, _F), 5, 6, 3, r, _ptr(widths, _F))
    got = windowed_step_host(probs, energy, image, norms, window, widths, g, g)
    q_pad = np.pad(probs, ((0, 0), (r, r), (r, r)))
    message = sum(w_gauss[i] * q_pad[:, r + dy: r + dy + 5, r + dx: r + dx + 6] +
                  w_bilat[i] * q_pad[:, r + dy: r + dy + 5, r + dx: r + dx + 6] for i, (dx, dy) in enumerate(offsets))
    logits = -energy + 2.0 * message
    expected = np.exp(logits - logits.max(0))
    expected /= expected.sum(0)
    np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.cupy
def test_cupy_launcher_matches_numpy():
    import cupy as cp
    from edgeseg.plugins.dense_crf import windowed_crf_cupy

    image, probs, srgb = case(4, (37, 53), 3, seed=11)
    energy = unary_from_probs(probs)
    g_gauss, g_bilat = compat_matrix(3.0, None, 4, "g"), compat_matrix(10.0, None, 4, "b")
    args = (7, 5, WIDTHS["sxy_gaussian"], WIDTHS["sxy_bilateral"], srgb, g_gauss, g_bilat)
    expected = mean_field_windowed(energy, image, *args)
    got = windowed_crf_cupy(cp.asarray(energy), cp.asarray(image), *args)
    np.testing.assert_allclose(cp.asnumpy(got), expected, atol=1e-5)
