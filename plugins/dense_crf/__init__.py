"""The windowed dense CRF as fused CUDA kernels (one mean-field step = one kernel launch) and the same
bodies compiled for the host. Math and layout: ``crf_window.cuh``; semantics: ``edgeseg.ops.dense_crf_windowed``.

>>> import cupy as cp, numpy as np                                           # doctest: +SKIP
>>> from edgeseg.plugins.dense_crf import windowed_crf_cupy                  # doctest: +SKIP
>>> energy = cp.asarray(np.random.rand(2, 64, 64), cp.float32)               # doctest: +SKIP
>>> image = cp.zeros((64, 64, 3), cp.uint8)                                  # doctest: +SKIP
>>> windowed_crf_cupy(energy, image, window=7, iterations=5,                  # doctest: +SKIP
...                   sxy_gaussian=(3, 3), sxy_bilateral=(80, 80), srgb=(13, 13, 13),
...                   g_gauss=3 * np.eye(2), g_bilat=10 * np.eye(2)).shape
(2, 64, 64)
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

from edgeseg.errors import InputError

KERNEL_SOURCE = Path(__file__).with_name("crf_window.cu")
HOST_SOURCE = Path(__file__).with_name("crf_window_host.cpp")
MAX_CLASSES = 32  # CRF_WINDOW_MAX_CLASSES in crf_window.cuh
MAX_CHANNELS = 4
_BLOCK = 128

_F = ctypes.POINTER(ctypes.c_float)
_U8 = ctypes.POINTER(ctypes.c_uint8)
_I = ctypes.c_int


def widths_vector(sxy_gaussian, sxy_bilateral, srgb) -> np.ndarray:
    """The kernel's ``widths`` argument: (4 + K,) float32 inverse widths."""
    values = [1.0 / sxy_gaussian[0], 1.0 / sxy_gaussian[1], 1.0 / sxy_bilateral[0], 1.0 / sxy_bilateral[1]]
    return np.asarray(values + [1.0 / s for s in srgb], dtype=np.float32)


def _check(energy_shape, image_shape, window) -> None:
    c = energy_shape[0]
    if c > MAX_CLASSES:
        raise InputError(f"probs: got {c} classes, expected at most {MAX_CLASSES} for the windowed CRF kernel")
    if image_shape[2] > MAX_CHANNELS:
        raise InputError(f"image: got {image_shape[2]} channels, expected at most {MAX_CHANNELS}")
    if tuple(image_shape[:2]) != tuple(energy_shape[1:]):
        raise InputError(f"image: got size {tuple(image_shape[:2])}, expected {tuple(energy_shape[1:])}")
    if window < 1 or window % 2 == 0:
        raise InputError(f"window: got {window!r}, expected an odd int >= 1")


def image_bytes(xp, image):
    """The kernels' image layout from NumPy or CuPy (``xp``): (H, W, K) contiguous uint8 (a (H, W) image
    gets K=1). The kernels read bytes, so any other dtype is cast here, on both paths alike."""
    image = xp.asarray(image)
    return xp.ascontiguousarray(image if image.ndim == 3 else image[:, :, None], dtype=xp.uint8)


@functools.cache
def host_library():
    """The host build of the kernel bodies (ctypes), compiled on first use with g++."""
    from edgeseg.plugins.common.build import build_host_library

    lib = build_host_library(HOST_SOURCE)
    lib.crf_window_norms_host.argtypes = [_U8, _F, _I, _I, _I, _I, _F]
    lib.crf_window_step_host.argtypes = [_F, _F, _U8, _F, _F, _F, _F, _I, _I, _I, _I, _I, _F]
    lib.crf_window_inference_host.argtypes = [_F, _U8, _F, _F, _F, _I, _I, _I, _I, _I, _F, _I]
    for fn in (lib.crf_window_norms_host, lib.crf_window_step_host, lib.crf_window_inference_host):
        fn.restype = None
    return lib


def _ptr(array, kind):
    return array.ctypes.data_as(kind)


def windowed_crf_host(energy, image, window, iterations, sxy_gaussian, sxy_bilateral, srgb, g_gauss, g_bilat):
    """Windowed mean field on the CPU through the host library: energy (C, H, W) -> Q (C, H, W) float32."""
    energy = np.ascontiguousarray(energy, dtype=np.float32)
    image = image_bytes(np, image)
    _check(energy.shape, image.shape, window)
    c, h, w = energy.shape
    widths = widths_vector(sxy_gaussian, sxy_bilateral, srgb)
    gg, gb = (np.ascontiguousarray(g, dtype=np.float32) for g in (g_gauss, g_bilat))
    out = np.empty_like(energy)
    host_library().crf_window_inference_host(
        _ptr(energy, _F), _ptr(image, _U8), _ptr(gg, _F), _ptr(gb, _F), _ptr(out, _F),
        h, w, image.shape[2], c, window // 2, _ptr(widths, _F), int(iterations),
    )
    return out


def windowed_step_host(q, energy, image, norms, window, widths, g_gauss, g_bilat):
    """One step through the host library (for tests): q (C, H, W), norms (2, H, W) -> Q' (C, H, W)."""
    c, h, w = q.shape
    out = np.empty_like(q)
    host_library().crf_window_step_host(
        _ptr(q, _F), _ptr(energy, _F), _ptr(image, _U8), _ptr(norms, _F), _ptr(g_gauss, _F), _ptr(g_bilat, _F),
        _ptr(out, _F), h, w, image.shape[2], c, window // 2, _ptr(widths, _F),
    )
    return out


@functools.cache
def _module():
    from edgeseg.plugins.common.build import load_raw_module

    return load_raw_module(KERNEL_SOURCE)


def windowed_crf_cupy(energy, image, window, iterations, sxy_gaussian, sxy_bilateral, srgb, g_gauss, g_bilat):
    """Windowed mean field on the GPU: energy (C, H, W) CuPy float32 -> Q (C, H, W) CuPy float32.

    One ``crf_window_norms`` launch per image, then one fused ``crf_window_step`` launch per iteration.
    """
    import cupy as cp

    energy = cp.ascontiguousarray(cp.asarray(energy, dtype=cp.float32))
    image = image_bytes(cp, image)
    _check(energy.shape, image.shape, window)
    c, h, w = energy.shape
    k = image.shape[2]
    widths = cp.asarray(widths_vector(sxy_gaussian, sxy_bilateral, srgb))
    gg = cp.asarray(np.asarray(g_gauss, np.float32))
    gb = cp.asarray(np.asarray(g_bilat, np.float32))
    module = _module()
    grid = ((h * w + _BLOCK - 1) // _BLOCK,)
    norms = cp.empty((2, h, w), cp.float32)
    radius = np.int32(window // 2)
    module.get_function("crf_window_norms")(
        grid, (_BLOCK,), (image, norms, np.int32(h), np.int32(w), np.int32(k), radius, widths))
    minus = -energy
    q = cp.exp(minus - minus.max(axis=0, keepdims=True))
    q /= q.sum(axis=0, keepdims=True)
    out = cp.empty_like(q)
    step = module.get_function("crf_window_step")
    for _ in range(int(iterations)):
        step(grid, (_BLOCK,), (q, energy, image, norms, gg, gb, out, np.int32(h), np.int32(w), np.int32(k),
                               np.int32(c), radius, widths))
        q, out = out, q
    return q
