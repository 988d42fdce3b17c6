"""The windowed dense CRF in NumPy: exact Gaussian kernels truncated to a k x k window (ConvCRF).

Per window offset o = (dx, dy) (self included) and pixel p with neighbour q = p + o inside the image::

    k_g(p, q) = exp(-((dx/sgx)^2 + (dy/sgy)^2) / 2)
    k_b(p, q) = exp(-((dx/sbx)^2 + (dy/sby)^2 + sum_c ((I_pc - I_qc) / s_c)^2) / 2)
    n_k(p) = 1 / sqrt(sum_q k_k(p, q));   w_k,o(p) = n_k(p) k_k(p, q) n_k(q)
    Q <- softmax(-U + G_g sum_o w_g,o Q(. + o) + G_b sum_o w_b,o Q(. + o))

The per-offset weights are computed once per image; each iteration is k^2 shifted multiply-adds.
The CUDA kernel ``plugins/dense_crf/crf_window.cuh`` computes the same step per pixel.
"""

from __future__ import annotations

import numpy as np


def window_weights(image, window: int, sxy_gaussian, sxy_bilateral, srgb):
    """Normalised per-offset weights -> (offsets list of (dx, dy), w_gauss (O, H, W), w_bilat (O, H, W))."""
    h, w, _ = image.shape
    r = window // 2
    img = image.astype(np.float32)
    pad = np.pad(img, ((r, r), (r, r), (0, 0)))
    valid_pad = np.pad(np.ones((h, w), np.float32), r)
    inv_g = [np.float32(1.0 / s) for s in sxy_gaussian]
    inv_b = [np.float32(1.0 / s) for s in sxy_bilateral]
    inv_c = np.asarray([1.0 / s for s in srgb], np.float32)
    offsets, k_gauss, k_bilat = [], [], []
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            valid = valid_pad[r + dy: r + dy + h, r + dx: r + dx + w]
            gx, gy = np.float32(dx) * inv_g[0], np.float32(dy) * inv_g[1]
            bx, by = np.float32(dx) * inv_b[0], np.float32(dy) * inv_b[1]
            diff = (img - pad[r + dy: r + dy + h, r + dx: r + dx + w]) * inv_c
            energy = np.float32(bx * bx + by * by) + (diff * diff).sum(axis=2)
            offsets.append((dx, dy))
            k_gauss.append(np.float32(np.exp(np.float32(-0.5) * (gx * gx + gy * gy))) * valid)
            k_bilat.append(np.exp(np.float32(-0.5) * energy) * valid)
    k_gauss, k_bilat = np.stack(k_gauss), np.stack(k_bilat)
    return offsets, _normalise(k_gauss, offsets, r), _normalise(k_bilat, offsets, r)


def _normalise(kernel, offsets, r):
    """``n(p) k_o(p) n(p + o)`` with ``n = 1/sqrt(sum_o k_o)`` (zero outside the image)."""
    _, h, w = kernel.shape
    norm = (1.0 / np.sqrt(kernel.sum(axis=0))).astype(np.float32)
    norm_pad = np.pad(norm, r)
    out = np.empty_like(kernel)
    for i, (dx, dy) in enumerate(offsets):
        out[i] = kernel[i] * norm * norm_pad[r + dy: r + dy + h, r + dx: r + dx + w]
    return out


def messages(q, weights, offsets, r):
    """``sum_o w_o * Q(. + o)`` for q (C, H, W) -> (C, H, W)."""
    _, h, w = q.shape
    q_pad = np.pad(q, ((0, 0), (r, r), (r, r)))
    out = np.zeros_like(q)
    for i, (dx, dy) in enumerate(offsets):
        out += weights[i] * q_pad[:, r + dy: r + dy + h, r + dx: r + dx + w]
    return out


def mean_field_windowed(energy, image, window, iterations, sxy_gaussian, sxy_bilateral, srgb, g_gauss, g_bilat):
    """Mean field on unary ``energy`` (C, H, W) float32 with windowed kernels -> Q (C, H, W) float32.

    ``g_*`` are (C, C) compatibility matrices as in :func:`edgeseg.ops.crf.compat_matrix`.
    """
    c, h, w = energy.shape
    r = window // 2
    offsets, w_gauss, w_bilat = window_weights(image, window, sxy_gaussian, sxy_bilateral, srgb)
    potts = _is_scaled_identity(g_gauss) and _is_scaled_identity(g_bilat)
    if potts:  # one pass: both kernels' weights folded together
        combined = g_gauss[0, 0] * w_gauss + g_bilat[0, 0] * w_bilat
        combined_sum = combined.sum(axis=0)[None]
    minus_unary = -energy.astype(np.float32)
    q = _softmax(minus_unary)
    for _ in range(iterations):
        if potts and c == 2:  # the weights are linear in Q and q_1 = 1 - q_0: one class is enough
            first = messages(q[:1], combined, offsets, r)
            pairwise = np.concatenate([first, combined_sum - first])
        elif potts:
            pairwise = messages(q, combined, offsets, r)
        else:
            m_g = messages(q, w_gauss, offsets, r).reshape(c, -1)
            m_b = messages(q, w_bilat, offsets, r).reshape(c, -1)
            pairwise = (g_gauss @ m_g + g_bilat @ m_b).reshape(c, h, w)
        q = _softmax(minus_unary + pairwise)
    return q


def _is_scaled_identity(g) -> bool:
    return bool(np.all(g == np.diag(np.diag(g)))) and bool(np.all(np.diag(g) == g[0, 0]))


def _softmax(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)
