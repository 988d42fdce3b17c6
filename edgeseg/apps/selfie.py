"""Selfie background effects on the Segmenter: blur, replace with an image or a colour, feathered edges.

The model is MediaPipe's selfie segmenter imported into edgeseg (``edgeseg fetch-selfie`` puts it in the
cache once); any model whose class 0 is background works too.

>>> import cv2
>>> from edgeseg.apps.selfie import BackgroundEffect, selfie_segmenter
>>> seg = selfie_segmenter(smooth=0.5)                       # doctest: +SKIP
>>> effect = BackgroundEffect(blur=21)                       # or replace="beach.jpg", color=(0, 255, 0)
>>> frame = cv2.imread("me.jpg")                             # doctest: +SKIP
>>> out = effect(frame, seg(frame))                          # (H, W, 3) BGR uint8   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import InputError
from ..model_cache import selfie_model_path  # also importable from here, its path before model_cache

# Blur the background at reduced resolution when the kernel is large: a Gaussian of sigma s at scale 1/f is
# (nearly) the same as sigma s*f at full scale once upsampled, and costs f^2 less.
_MAX_KERNEL_AT_SCALE = 5
_NEGLIGIBLE = 1e-6  # person weights below this are treated as 0


def selfie_segmenter(variant: str = "general", backend: str = "auto", smooth: float | None = None,
                     threads: int | None = None, **options: Any):
    """A :class:`edgeseg.Segmenter` on the cached selfie model (ONNX Runtime by default)."""
    from ..pipeline import Segmenter

    return Segmenter(selfie_model_path(variant), backend=backend, smooth=smooth, threads=threads, **options)


def _odd(k: int) -> int:
    return k if k % 2 else k + 1


def parse_color(value: Any) -> tuple[int, int, int]:
    """``(b, g, r)`` / ``"b,g,r"`` with values 0..255 -> BGR tuple; anything else raises :class:`InputError`."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        bgr = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        bgr = ()
    if len(bgr) != 3 or any(not 0 <= c <= 255 for c in bgr):
        raise InputError(f"color: got {value!r}, expected three integers 0-255 in B,G,R order, e.g. 0,255,0")
    return bgr  # type: ignore[return-value]


class BackgroundEffect:
    """Callable ``(frame, result) -> frame`` that keeps the person and changes the background.

    Args:
        blur: Gaussian kernel size (odd, >= 3) for the background blur; used when neither ``replace``
            nor ``color`` is given.
        replace: a background image (path or (h, w, 3) BGR uint8 array), resized to each frame's size.
        color: a solid background, B,G,R 0-255 (tuple or ``"0,255,0"``).
        feather: radius in pixels of the Gaussian that softens the mask edge (0 = hard edge as predicted).

    ``frame``: (H, W, 3) BGR uint8; ``result``: a :class:`~edgeseg.pipeline.Segmentation` of this frame
    (its ``foreground``, or ``probs`` (C, H, W) with class 0 the background, at frame size). Returns (H, W, 3) BGR uint8.
    Temporal smoothing belongs to the Segmenter (``smooth=``), which averages probabilities over frames.
    """

    def __init__(self, blur: int = 21, replace: Any = None, color: Any = None, feather: int = 3) -> None:
        self.cv2 = require("cv2", "selfie background effects")
        if replace is not None and color is not None:
            raise InputError("replace/color: got both, expected at most one background (an image or a colour)")
        if isinstance(blur, bool) or not isinstance(blur, int) or blur < 3 or blur % 2 == 0:
            raise InputError(f"blur: got {blur!r}, expected an odd integer >= 3 (Gaussian kernel size in pixels)")
        if isinstance(feather, bool) or not isinstance(feather, int) or feather < 0:
            raise InputError(f"feather: got {feather!r}, expected an integer >= 0 (pixels)")
        self.blur, self.feather = blur, feather
        self.color = parse_color(color) if color is not None else None
        self.image = self._load_image(replace) if replace is not None else None
        self.mode = "replace" if self.image is not None else "color" if self.color is not None else "blur"
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def _load_image(self, replace: Any) -> np.ndarray:
        if isinstance(replace, (str, Path)):
            image = self.cv2.imread(str(replace), self.cv2.IMREAD_COLOR)
            if image is None:
                raise InputError(f"replace: cannot read an image from {str(replace)!r}, expected a readable "
                                 "image file (png, jpg, ...)")
            return image
        if not (isinstance(replace, np.ndarray) and replace.dtype == np.uint8 and replace.ndim == 3
                and replace.shape[2] == 3):
            got = f"{type(replace).__name__} {getattr(replace, 'shape', '')} {getattr(replace, 'dtype', '')}".strip()
            raise InputError(f"replace: got {got}, expected an image path or an (h, w, 3) BGR uint8 array")
        return replace

    def __call__(self, frame: np.ndarray, result: Any) -> np.ndarray:
        return self.composite(frame, self.person(frame, result))

    def person(self, frame: np.ndarray, result: Any) -> np.ndarray:
        """(H, W) float32 person probability ``1 - P(background)`` at frame size (``result.foreground``)."""
        frame_hw = tuple(frame.shape[:2])
        person = getattr(result, "foreground", None)
        if person is None:  # any result object with class probabilities, class 0 the background
            probs = getattr(result, "probs", None)
            if probs is None or probs.ndim != 3 or tuple(probs.shape[1:]) != frame_hw:
                raise InputError(f"result.probs: got shape {getattr(probs, 'shape', None)}, expected (C, H, W) at "
                                 f"the frame size {frame_hw} (pass the Segmentation of this frame)")
            person = probs[1] if probs.shape[0] == 2 else np.subtract(1.0, probs[0], dtype=np.float32)
        if tuple(person.shape) != frame_hw:
            raise InputError(f"result.foreground: got shape {person.shape}, expected the frame size {frame_hw} "
                             "(pass the Segmentation of this frame)")
        return np.asarray(person, np.float32)

    def composite(self, frame: np.ndarray, person: np.ndarray) -> np.ndarray:
        """Blend ``frame`` over the new background with weight ``person`` (H, W) float32 in [0, 1], feathered."""
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
            raise InputError(f"frame: got {getattr(frame, 'shape', type(frame).__name__)} "
                             f"{getattr(frame, 'dtype', '')}, expected an (H, W, 3) BGR uint8 image")
        if person.shape != frame.shape[:2] or person.dtype != np.float32:
            raise InputError(f"person: got {person.shape} {person.dtype}, expected float32 {frame.shape[:2]}")
        # Sigmoid outputs far from the person underflow to denormal floats (LiteRT's do), which make the
        # blur and blend several times slower on x86; values this small are 0 for blending anyway.
        person = self.cv2.threshold(person, _NEGLIGIBLE, 0.0, self.cv2.THRESH_TOZERO)[1]
        alpha = self.feathered(person)
        return self.cv2.blendLinear(frame, self.background(frame), alpha, 1.0 - alpha)

    def feathered(self, person: np.ndarray) -> np.ndarray:
        """Soften the mask edge: Gaussian of radius ``feather`` over the person probability."""
        if not self.feather:
            return person
        k = 2 * self.feather + 1
        return self.cv2.GaussianBlur(person, (k, k), 0)

    def background(self, frame: np.ndarray) -> np.ndarray:
        """The new background at the frame's size, (H, W, 3) BGR uint8."""
        cv2, (h, w) = self.cv2, frame.shape[:2]
        if self.mode == "blur":
            return self._blurred(frame)
        if (h, w) not in self._cache:
            if self.mode == "color":
                self._cache[(h, w)] = np.full((h, w, 3), self.color, np.uint8)
            else:
                self._cache[(h, w)] = cv2.resize(self.image, (w, h), interpolation=cv2.INTER_AREA)
        return self._cache[(h, w)]

    def _blurred(self, frame: np.ndarray) -> np.ndarray:
        cv2, (h, w) = self.cv2, frame.shape[:2]
        factor = max(1, min(self.blur // _MAX_KERNEL_AT_SCALE, min(h, w) // 32))
        if factor == 1:
            return cv2.GaussianBlur(frame, (self.blur, self.blur), 0)
        small = cv2.resize(frame, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
        k = _odd(max(3, round(self.blur / factor)))
        small = cv2.GaussianBlur(small, (k, k), 0)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
