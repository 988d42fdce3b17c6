"""Temporal stabilisation of class probabilities across video frames: EMA, or motion-aware.

``ema``:    p_t = a p_(t-1) + (1 - a) x_t  everywhere (today's ``smooth``: steady, but a moving person leaves a
            ghost, since the old mask fades out over ~1/(1-a) frames).
``motion``: the same blend with a per-pixel weight that falls to 0 where the image changed,

            d = dilate3x3(|I_t - I_(t-1)|)       (gray, 0..255, at the probabilities' resolution)
            w = a * (1 - clip((d - noise) / (threshold - noise), 0, 1))      (noise 4, threshold 16)
            p_t = w p_(t-1) + (1 - w) x_t

            so still regions are averaged (no flicker) and moving ones follow the current frame (no ghost).

Works on any number of class planes (C, h, w) at any resolution; the probabilities of a pixel still sum to one
(each pixel's weight is the same for every class). State is kept between calls; :meth:`reset` clears it, and a
change of size restarts it.

>>> stab = Stabilizer("motion", alpha=0.8)
>>> probs = stab(low_res_gray, probs)          # doctest: +SKIP  (C, h, w) float32 in, (C, h, w) out
"""

from __future__ import annotations

import numpy as np

from ._deps import require
from .errors import InputError

MODES = ("none", "ema", "motion")
DEFAULT_ALPHA = {"ema": 0.5, "motion": 0.8}


class Stabilizer:
    """Callable ``(gray (h, w), planes (C, h, w)) -> (C, h, w) float32``; see the module for the formulas.

    Args:
        mode: ``"none"``, ``"ema"`` or ``"motion"``.
        alpha: weight of the past in [0, 1) (``motion``: where the image is still); default 0.5 (ema), 0.8 (motion).
        threshold: ``motion``: gray-level change at which the past gets no weight (default 16).
        noise: ``motion``: change still counted as no change (sensor and codec noise; default 4).
    """

    def __init__(self, mode: str = "motion", alpha: float | None = None, threshold: float = 16.0,
                 noise: float = 4.0):
        if mode not in MODES:
            raise InputError(f"stabilize: got {mode!r}, expected one of {', '.join(MODES)}")
        alpha = DEFAULT_ALPHA.get(mode, 0.0) if alpha is None else alpha
        if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and 0.0 <= alpha < 1.0):
            raise InputError(f"alpha: got {alpha!r}, expected a number in [0, 1)")
        if not (isinstance(threshold, (int, float)) and threshold > 0):
            raise InputError(f"threshold: got {threshold!r}, expected gray levels > 0")
        if not (isinstance(noise, (int, float)) and 0 <= noise < threshold):
            raise InputError(f"noise: got {noise!r}, expected gray levels in [0, threshold={threshold})")
        self.mode, self.alpha, self.threshold, self.noise = mode, float(alpha), float(threshold), float(noise)
        self.cv2 = require("cv2", "temporal stabilisation")
        self._kernel = np.ones((3, 3), np.uint8)
        d = np.arange(256, dtype=np.float64)
        self._lut = (self.alpha * (1 - np.clip((d - self.noise) / (self.threshold - self.noise), 0, 1))).astype(
            np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the history (the next frame passes unchanged)."""
        self._state: np.ndarray | None = None
        self._gray: np.ndarray | None = None

    @property
    def active(self) -> bool:
        return self.mode != "none" and self.alpha > 0

    def weight(self, gray: np.ndarray) -> np.ndarray | float:
        """The past's weight: ``alpha`` (ema) or the (h, w) float32 motion-aware plane (``gray``: this frame's
        gray, uint8 or float32 0..255, same type as the previous frame's)."""
        if self.mode == "ema":
            return self.alpha
        cv2 = self.cv2
        change = cv2.dilate(cv2.absdiff(gray, self._gray), self._kernel)
        if change.dtype == np.uint8:  # whole gray levels: the weight of each of the 256 changes, one lookup
            return cv2.LUT(change, self._lut)
        # w = a * (1 - clip((d - n) / (T - n), 0, 1)); thresholds in place, no temporaries
        cv2.threshold(change, self.threshold, self.threshold, cv2.THRESH_TRUNC, dst=change)
        if self.noise:
            change -= np.float32(self.noise)
            cv2.threshold(change, 0.0, 0.0, cv2.THRESH_TOZERO, dst=change)
        change *= np.float32(-self.alpha / (self.threshold - self.noise))
        change += np.float32(self.alpha)
        return change

    @property
    def needs_gray(self) -> bool:
        return self.active and self.mode == "motion"

    def __call__(self, gray: np.ndarray | None, planes: np.ndarray) -> np.ndarray:
        """``gray``: (h, w) frame gray 0..255 at the planes' size, uint8 (fastest) or float (``None`` is fine
        for ema)."""
        planes = np.asarray(planes, np.float32)
        if planes.ndim != 3:
            raise InputError(f"planes: got shape {planes.shape}, expected (classes, height, width)")
        if gray is not None:
            gray = np.asarray(gray)
            gray = gray if gray.dtype == np.uint8 else gray.astype(np.float32, copy=False)
        if self.needs_gray and (gray is None or gray.shape != planes.shape[1:]):
            raise InputError(f"gray: got shape {getattr(gray, 'shape', None)}, expected the planes' (h, w) "
                             f"{planes.shape[1:]}")
        if not self.active:
            return planes
        restart = self._state is None or self._state.shape != planes.shape
        if not restart and self.needs_gray and gray.dtype != self._gray.dtype:
            self._gray = self._gray.astype(np.float32)
            gray = gray.astype(np.float32)
        if restart:
            self._state, self._gray = planes.copy(), None if gray is None else gray.copy()
            return planes
        w = self.weight(gray)
        # p = x + w (p_prev - x)
        state = self._state
        np.subtract(state, planes, out=state)
        state *= w
        state += planes
        self._gray = None if gray is None else gray.copy()
        return state.copy()
