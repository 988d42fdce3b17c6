"""Brute-force mean-field dense CRF: the model of :func:`edgeseg.ops.dense_crf` with exact kernels.

O(N^2) time and memory: tiny images only (a few hundred pixels). Everything is written out:

    k_g(i, j) = exp(-|p_i - p_j|^2 / 2 sxy_g^2)
    k_b(i, j) = exp(-|p_i - p_j|^2 / 2 sxy_b^2 - sum_c |I_ic - I_jc|^2 / 2 srgb_c^2)
    K~ = D^-1/2 K D^-1/2 with D = diag(K 1)       (symmetric normalisation, self weight included)
    Q <- softmax(-U + sum_k G_k K~_k Q)             (G = w I for Potts; see compat_matrix)

``window`` restricts every kernel to pixels with |dx|, |dy| <= window // 2 (the windowed variant;
its normalisation uses the same truncated kernel). ``window=None``: fully connected.
The lattice-based :func:`edgeseg.ops.dense_crf` approximates the fully connected kernels.
"""

from __future__ import annotations

import numpy as np


def kernel_matrices(image, sxy_gaussian, sxy_bilateral, srgb, window=None):
    """Exact (N, N) float64 Gaussian and bilateral kernels of ``image`` (H, W, K) uint8, row-major pixels."""
    h, w, k = image.shape
    ys, xs = np.mgrid[0:h, 0:w]
    pos = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)  # (N, 2): x, y
    colour = image.reshape(-1, k).astype(np.float64)
    dpos = pos[:, None, :] - pos[None, :, :]  # (N, N, 2)
    gauss_sq = (dpos[..., 0] / sxy_gaussian[0]) ** 2 + (dpos[..., 1] / sxy_gaussian[1]) ** 2
    bilat_sq = (dpos[..., 0] / sxy_bilateral[0]) ** 2 + (dpos[..., 1] / sxy_bilateral[1]) ** 2
    for c in range(k):
        bilat_sq = bilat_sq + ((colour[:, None, c] - colour[None, :, c]) / srgb[c]) ** 2
    k_gauss, k_bilat = np.exp(-0.5 * gauss_sq), np.exp(-0.5 * bilat_sq)
    if window is not None:
        inside = (np.abs(dpos[..., 0]) <= window // 2) & (np.abs(dpos[..., 1]) <= window // 2)
        k_gauss, k_bilat = k_gauss * inside, k_bilat * inside
    return k_gauss, k_bilat


def normalize_symmetric(kernel):
    """``D^-1/2 K D^-1/2`` with ``D = diag(K 1)``."""
    norm = 1.0 / np.sqrt(kernel.sum(axis=1))
    return kernel * norm[:, None] * norm[None, :]


def dense_crf_reference(energy, image, iterations, sxy_gaussian, sxy_bilateral, srgb, g_gaussian, g_bilateral,
                        window=None):
    """Mean field on unary ``energy`` (C, H, W) -> Q (C, H, W) float64.

    ``image`` (H, W, K) uint8; ``sxy_*`` (sx, sy); ``srgb`` one width per channel; ``g_*`` (C, C)
    matrices from :func:`edgeseg.ops.crf.compat_matrix`.
    """
    c, h, w = energy.shape
    k_gauss, k_bilat = kernel_matrices(image, sxy_gaussian, sxy_bilateral, srgb, window)
    k_gauss, k_bilat = normalize_symmetric(k_gauss), normalize_symmetric(k_bilat)
    minus_unary = -energy.reshape(c, -1).astype(np.float64)
    q = _softmax(minus_unary)
    for _ in range(iterations):
        logits = minus_unary + g_gaussian @ (q @ k_gauss.T) + g_bilateral @ (q @ k_bilat.T)
        q = _softmax(logits)
    return q.reshape(c, h, w)


def _softmax(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)
