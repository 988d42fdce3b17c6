"""Mean-field inference in the fully-connected CRF of Krähenbühl & Koltun (2011), as in pydensecrf.

Energy: unary ``U_i(l)`` plus, for every pair of pixels, ``mu(l, l') * sum_k w_k k_k(f_i, f_j)`` with an
appearance kernel over (x/sxy_bilateral, y/sxy_bilateral, colour/srgb) and a smoothness kernel over
(x/sxy_gaussian, y/sxy_gaussian). One mean-field step::

    Q <- softmax( -U + sum_k G_k (N_k K_k N_k Q) )     N_k = diag(1/sqrt(K_k 1)),  K_k on the lattice

where ``G_k = compat_k * I`` for a scalar (Potts, pydensecrf's default) or ``-compat_k`` for a
diagonal / matrix compatibility (pydensecrf's ``DiagonalCompatibility`` / ``MatrixCompatibility``).
``K_k`` is the permutohedral-lattice Gaussian filter (:mod:`edgeseg.ops.permutohedral`) with the
self-weight included and symmetric normalisation, which is exactly what pydensecrf's
``DenseCRF2D.addPairwiseGaussian/addPairwiseBilateral(..., DIAG_KERNEL, NORMALIZE_SYMMETRIC)`` and
``inference`` compute. The same code runs on NumPy/SciPy and, unchanged, on CuPy/cupyx.

``dense_crf_windowed`` is the same model with exact Gaussian kernels truncated to a k x k window
(ConvCRF); see :mod:`edgeseg.ops.crf_window`.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

from edgeseg.errors import InputError
from edgeseg.ops.permutohedral import Lattice, array_modules

__all__ = ["DenseCRF", "dense_crf", "dense_crf_windowed", "unary_from_probs"]

PROB_SUM_TOLERANCE = 1e-3
DEFAULT_CLIP = 1e-5  # pydensecrf.utils.unary_from_softmax's clip


def dense_crf(probs, image, iterations: int = 5, sxy_gaussian=3, compat_gaussian=3, sxy_bilateral=80,
              srgb=13, compat_bilateral=10, compat=None, unary: str = "probs", clip: float = DEFAULT_CLIP,
              window=None):
    """Refine class probabilities with a dense CRF -> (C, H, W) float32, same array type as ``probs``.

    Args:
        probs: (C, H, W) float probabilities summing to 1 over C (``unary="probs"``; the unary is
            ``-log(clip(p, clip, 1))``), or unary energies ``-log p + const`` (``unary="energy"``).
            NumPy or CuPy; the result is the same type (CuPy: no host copy).
        image: (H, W, K) uint8 (K = 3 for BGR/RGB, used in the order given; K = 1) or (H, W) gray.
        iterations: mean-field steps (pydensecrf's ``inference(n)``).
        sxy_gaussian, compat_gaussian: smoothness kernel width (pixels; number or (sx, sy)) and weight.
        sxy_bilateral, srgb, compat_bilateral: appearance kernel widths (pixels; intensity, one value
            or one per channel) and weight.
        compat: optional (C, C) label compatibility ``mu`` (penalty, e.g. ``1 - eye(C)``); then the
            kernel weights multiply it (pydensecrf's ``MatrixCompatibility(w_k * mu)``). ``None``:
            Potts. ``compat_gaussian``/``compat_bilateral`` may also be (C,) or (C, C) arrays directly,
            with pydensecrf's meaning.
        clip: smallest probability when ``unary="probs"``.
        window: ``None`` (fully connected, permutohedral lattice) or an odd int k: the same model with
            exact kernels truncated to k x k (:func:`dense_crf_windowed`).

    >>> import numpy as np
    >>> probs = np.full((2, 4, 5), 0.5, np.float32); probs[1, :, 3:] = 0.9; probs[0, :, 3:] = 0.1
    >>> out = dense_crf(probs, np.zeros((4, 5, 3), np.uint8))
    >>> out.shape, bool(out[1, 0, 0] > 0.5)
    ((2, 4, 5), True)
    """
    if window is not None:
        return dense_crf_windowed(probs, image, window, iterations, sxy_gaussian, compat_gaussian, sxy_bilateral,
                                  srgb, compat_bilateral, compat, unary, clip)
    energy = _unary_energy(probs, unary, clip)
    crf = DenseCRF(image, energy.shape[0], sxy_gaussian=sxy_gaussian, compat_gaussian=compat_gaussian,
                   sxy_bilateral=sxy_bilateral, srgb=srgb, compat_bilateral=compat_bilateral, compat=compat,
                   size=energy.shape[1:], xp=array_modules(energy)[0])  # a NumPy frame joins CuPy probs
    return crf.inference(energy, iterations)


def dense_crf_windowed(probs, image, window: int = 7, iterations: int = 5, sxy_gaussian=3, compat_gaussian=3,
                       sxy_bilateral=80, srgb=13, compat_bilateral=10, compat=None, unary: str = "probs",
                       clip: float = DEFAULT_CLIP):
    """The dense CRF with exact kernels truncated to a ``window`` x ``window`` neighbourhood (ConvCRF).

    Same arguments and result as :func:`dense_crf`; ``window`` is odd. NumPy arrays run the NumPy
    implementation (:mod:`edgeseg.ops.crf_window`); CuPy arrays run the fused CUDA kernel
    (``edgeseg.plugins.dense_crf``, one launch per iteration).

    >>> import numpy as np
    >>> probs = np.full((2, 4, 5), 0.5, np.float32); probs[1, :, 3:] = 0.9; probs[0, :, 3:] = 0.1
    >>> dense_crf_windowed(probs, np.zeros((4, 5), np.uint8), window=3).shape
    (2, 4, 5)
    """
    energy = _unary_energy(probs, unary, clip)
    xp, _ = array_modules(energy)
    image = _check_image(image, energy.shape[1:], xp)
    _check_window(window)
    _check_iterations(iterations)
    args = (energy, image, window, iterations, _pair("sxy_gaussian", sxy_gaussian),
            _pair("sxy_bilateral", sxy_bilateral), _per_channel(srgb, image.shape[2]),
            compat_matrix(compat_gaussian, compat, energy.shape[0], "compat_gaussian"),
            compat_matrix(compat_bilateral, compat, energy.shape[0], "compat_bilateral"))
    if xp is np:
        from edgeseg.ops.crf_window import mean_field_windowed

        return mean_field_windowed(*args)
    from edgeseg.plugins.dense_crf import windowed_crf_cupy

    return windowed_crf_cupy(*args)


class DenseCRF:
    """The pairwise part of the model for one image, built once; ``inference`` runs mean field.

    Args as in :func:`dense_crf`; ``num_classes`` C; ``size`` (H, W) to check the image against;
    ``xp`` the array module to run on (default: the image's; a NumPy image is copied to CuPy).
    The smoothness lattice depends only on (H, W, sxy_gaussian) and is cached across images.

    >>> import numpy as np
    >>> crf = DenseCRF(np.zeros((4, 5, 3), np.uint8), num_classes=2)
    >>> crf.inference(np.zeros((2, 4, 5), np.float32), iterations=1).shape
    (2, 4, 5)
    """

    def __init__(self, image, num_classes: int, sxy_gaussian=3, compat_gaussian=3, sxy_bilateral=80, srgb=13,
                 compat_bilateral=10, compat=None, size=None, xp=None):
        if xp is None:
            xp = array_modules(image)[0]
        image = _check_image(image, size, xp)
        h, w, channels = image.shape
        self.xp, self.shape, self.num_classes = xp, (h, w), int(num_classes)
        sxy_g, sxy_b = _pair("sxy_gaussian", sxy_gaussian), _pair("sxy_bilateral", sxy_bilateral)
        s_rgb = _per_channel(srgb, channels)
        self.kernels = []
        g = compat_matrix(compat_gaussian, compat, self.num_classes, "compat_gaussian")
        if np.any(g != 0):
            self.kernels.append(_NormalizedKernel(_gaussian_lattice(h, w, sxy_g, _device_key(xp)), g, xp))
        g = compat_matrix(compat_bilateral, compat, self.num_classes, "compat_bilateral")
        if np.any(g != 0):
            self.kernels.append(_NormalizedKernel(Lattice(bilateral_features(image, sxy_b, s_rgb, xp)), g, xp))

    def inference(self, energy, iterations: int = 5):
        """Mean field from unary ``energy`` (C, H, W) float32 -> marginals Q (C, H, W) float32."""
        xp = self.xp
        _check_iterations(iterations)
        if tuple(energy.shape) != (self.num_classes, *self.shape):
            raise InputError(f"energy: got shape {tuple(energy.shape)}, expected {(self.num_classes, *self.shape)}")
        # Pixels are rows (N, C): the layout sparse-dense products want.
        minus_unary = -xp.asarray(energy, dtype=xp.float32).reshape(self.num_classes, -1)
        # With Potts kernels of weight >= 0 every message lies in [0, K 1], so subtracting the unary's
        # maximum once keeps exp() in range and each step skips the per-pixel max (pydensecrf's
        # expAndNormalize subtracts the running max; the normalised result is the same).
        bounded = all(k.matrix_t is None and k.bound >= 0 for k in self.kernels) and (
            sum(k.bound for k in self.kernels) < 60.0)
        if bounded:
            minus_unary -= minus_unary.max(axis=0)
        minus_unary = xp.ascontiguousarray(minus_unary.T)
        q = _softmax_rows(minus_unary.copy(), xp, shifted=bounded)
        for _ in range(int(iterations)):
            logits = minus_unary.copy()
            for kernel in self.kernels:
                kernel.add_message(logits, q)
            q = _softmax_rows(logits, xp, shifted=bounded)
        return xp.ascontiguousarray(q.T).reshape(self.num_classes, *self.shape)


class _NormalizedKernel:
    """``G (N K N)`` of one lattice, ``N = diag(1/sqrt(K 1))``, with N and a Potts weight folded into S, S^T."""

    def __init__(self, lattice: Lattice, g: np.ndarray, xp):
        self.xp = xp
        norm = 1.0 / xp.sqrt(lattice.filter(xp.ones(lattice.n, dtype=xp.float32)) + np.float32(1e-20))
        norm = norm.astype(xp.float32)
        potts = bool(np.all(g == np.diag(np.diag(g)))) and bool(np.all(np.diag(g) == g[0, 0]))
        scale = np.float32(g[0, 0]) if potts else np.float32(1.0)
        self.matrix_t = None if potts else xp.asarray(g.T, dtype=xp.float32)
        self.splat, self.blur = lattice.splat_matrix(norm), lattice.blur
        self.slice = lattice.slice_matrix(norm * scale)
        self.ones_message = self._filter(xp.ones(lattice.n, dtype=xp.float32))
        # Largest message a pixel can receive (Potts, weight >= 0); -1 when messages may be negative.
        self.bound = float(self.ones_message.max()) if self.matrix_t is None and scale >= 0 else -1.0

    def _filter(self, values):
        lattice_values = self.splat @ values
        for blur in self.blur:
            lattice_values = blur @ lattice_values
        return self.slice @ lattice_values

    def add_message(self, logits, q) -> None:
        """``logits += (G (N K N) q^T)^T`` for q (N, C) rows summing to 1.

        With two labels only one column is filtered: ``K q_1 = K 1 - K q_0`` (K 1 is precomputed).
        """
        if q.shape[1] == 2 and self.matrix_t is None:
            message = self._filter(self.xp.ascontiguousarray(q[:, 0]))
            logits[:, 0] += message
            logits[:, 1] += self.ones_message - message
        elif self.matrix_t is None:
            logits += self._filter(q)
        else:
            logits += self._filter(q) @ self.matrix_t


def bilateral_features(image, sxy, srgb, xp):
    """(H, W, K) uint8 image -> (H*W, 2+K) float32 features (x/sx, y/sy, c_0/s_0, ...), pydensecrf order."""
    h, w, k = image.shape
    feats = xp.empty((h, w, 2 + k), dtype=xp.float32)
    feats[:, :, 0] = xp.arange(w, dtype=xp.float32)[None, :] / np.float32(sxy[0])
    feats[:, :, 1] = xp.arange(h, dtype=xp.float32)[:, None] / np.float32(sxy[1])
    feats[:, :, 2:] = image.astype(xp.float32) / xp.asarray(np.asarray(srgb, np.float32))
    return feats.reshape(h * w, 2 + k)


@functools.lru_cache(maxsize=8)
def _gaussian_lattice(h: int, w: int, sxy: tuple[float, float], device_key) -> Lattice:
    xp = np if device_key is None else __import__("cupy")
    feats = xp.empty((h, w, 2), dtype=xp.float32)
    feats[:, :, 0] = xp.arange(w, dtype=xp.float32)[None, :] / np.float32(sxy[0])
    feats[:, :, 1] = xp.arange(h, dtype=xp.float32)[:, None] / np.float32(sxy[1])
    return Lattice(feats.reshape(h * w, 2))


def _device_key(xp):
    return None if xp is np else ("cupy", xp.cuda.runtime.getDevice())


def _softmax_rows(x, xp, shifted: bool = False):
    """In-place softmax over the last axis of (N, C) (pydensecrf's expAndNormalize).

    ``shifted``: the caller guarantees ``x`` is small enough for exp() without subtracting the max.
    """
    c = x.shape[1]
    if not shifted:
        if c > 4:
            x -= x.max(axis=1, keepdims=True)
        else:  # few labels: column loops beat NumPy's reductions over a short last axis by ~10x
            top = x[:, 0].copy()
            for i in range(1, c):
                xp.maximum(top, x[:, i], out=top)
            x -= top[:, None]
    xp.exp(x, out=x)
    if c > 4:
        total = xp.einsum("nc->n", x)
    else:
        total = x[:, 0].copy()
        for i in range(1, c):
            total += x[:, i]
    x /= total[:, None]
    return x


def unary_from_probs(probs, clip: float = DEFAULT_CLIP):
    """(C, H, W) probabilities -> unary energies ``-log(clip(p, clip, 1))`` (pydensecrf's unary_from_softmax)."""
    xp, _ = array_modules(probs)
    return -xp.log(xp.clip(probs, np.float32(clip), np.float32(1.0))).astype(xp.float32)


def _unary_energy(probs, unary: str, clip: float):
    xp, _ = array_modules(probs)
    if not hasattr(probs, "ndim") or probs.ndim != 3:
        raise InputError(f"probs: got shape {getattr(probs, 'shape', type(probs).__name__)}, expected (C, H, W)")
    if probs.dtype.kind != "f":
        raise InputError(f"probs: got dtype {probs.dtype}, expected float32 probabilities (C, H, W)")
    if probs.shape[0] < 2:
        raise InputError(f"probs: got {probs.shape[0]} class, expected C >= 2 (for a sigmoid model pass "
                         "[1 - p, p])")
    probs = xp.asarray(probs, dtype=xp.float32)
    if not bool(xp.isfinite(probs).all()):
        bad = int((~xp.isfinite(probs)).sum())
        raise InputError(f"probs: got {bad} NaN/inf values, expected finite numbers")
    if unary == "energy":
        return probs
    if unary != "probs":
        raise InputError(f"unary: got {unary!r}, expected 'probs' or 'energy'")
    lo, hi = float(probs.min()), float(probs.max())
    if lo < -PROB_SUM_TOLERANCE or hi > 1 + PROB_SUM_TOLERANCE:
        raise InputError(f"probs: got values in [{lo:.4g}, {hi:.4g}], expected probabilities in [0, 1] "
                         "(apply a softmax, or pass unary='energy')")
    sums = probs.sum(axis=0)
    worst = float(xp.abs(sums - 1).max())
    if worst > PROB_SUM_TOLERANCE:
        raise InputError(f"probs: sums over classes differ from 1 by up to {worst:.4g}, expected 1 within "
                         f"{PROB_SUM_TOLERANCE} (apply a softmax over C, or pass unary='energy')")
    if not 0 < clip < 1:
        raise InputError(f"clip: got {clip!r}, expected a probability floor in (0, 1)")
    return unary_from_probs(probs, clip)


def _check_image(image, size, xp):
    if not hasattr(image, "dtype") or image.dtype != np.uint8:
        raise InputError(f"image: got dtype {getattr(image, 'dtype', type(image).__name__)}, expected uint8 "
                         "(H, W, 3) BGR/RGB or (H, W) gray")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] < 1:
        raise InputError(f"image: got shape {tuple(image.shape)}, expected (H, W), (H, W, 1) or (H, W, 3)")
    if size is not None and tuple(image.shape[:2]) != tuple(size):
        raise InputError(f"image: got size {tuple(image.shape[:2])}, expected the probabilities' (H, W) = "
                         f"{tuple(size)} (resize the probabilities to the frame first)")
    if xp is np and type(image).__module__.split(".")[0] == "cupy":
        image = image.get()  # CuPy frame, NumPy probabilities: run where the probabilities are
    return xp.ascontiguousarray(xp.asarray(image))


def compat_matrix(value, compat, num_classes: int, field: str) -> np.ndarray:
    """(C, C) float32 ``G`` with ``logits (C, N) += G @ message``: Potts w -> w*I; (C,) v -> -diag(v); (C, C) M -> -sym(M)."""
    c = num_classes
    if compat is not None:
        mu = np.asarray(compat.get() if hasattr(compat, "get") else compat, dtype=np.float64)
        if mu.shape != (c, c):
            raise InputError(f"compat: got shape {mu.shape}, expected ({c}, {c}) label compatibility")
        if not isinstance(value, numbers.Real):
            raise InputError(f"{field}: got {value!r}, expected a number (a weight) when compat is given")
        value = float(value) * mu
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{field}: got {value!r}, expected finite numbers")
    if arr.ndim == 0:
        return (float(arr) * np.eye(c)).astype(np.float32)
    if arr.shape == (c,):
        return (-np.diag(arr)).astype(np.float32)
    if arr.shape == (c, c):
        return (-0.5 * (arr + arr.T)).astype(np.float32)
    raise InputError(f"{field}: got shape {arr.shape}, expected a number (Potts), ({c},) or ({c}, {c})")


def _pair(field: str, value) -> tuple[float, float]:
    items = (value, value) if isinstance(value, numbers.Real) else tuple(value)
    if len(items) != 2 or not all(isinstance(v, numbers.Real) and v > 0 for v in items):
        raise InputError(f"{field}: got {value!r}, expected a positive number or a pair (sx, sy)")
    return float(items[0]), float(items[1])


def _per_channel(value, channels: int) -> tuple[float, ...]:
    items = (value,) * channels if isinstance(value, numbers.Real) else tuple(value)
    if len(items) != channels or not all(isinstance(v, numbers.Real) and v > 0 for v in items):
        raise InputError(f"srgb: got {value!r}, expected a positive number or one per image channel ({channels})")
    return tuple(float(v) for v in items)


def _check_iterations(iterations) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 0:
        raise InputError(f"iterations: got {iterations!r}, expected an int >= 0")


def _check_window(window) -> None:
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1 or window % 2 == 0:
        raise InputError(f"window: got {window!r}, expected an odd int >= 1 (e.g. 7)")
