"""The render stage's mask filter: temporal stabilisation and edge-aware upsampling of any segmenter's result.

``MaskFilter(stabilize, refine)(frame, segmentation) -> segmentation``: takes the result's probabilities at
the lowest resolution it has (a Segmenter's two-class result: the model's own output, letterbox cut off),
stabilises them over frames (:mod:`edgeseg.stabilize`), then brings them to frame size either bilinearly
(``refine="none"``, as without the filter) or with the fast guided filter (``refine="guided"``,
:mod:`edgeseg.refine`, coefficients at half that resolution). Labels follow the filtered probabilities
(foreground > 0.5, or the argmax), so the overlay, the selfie effect and ``result.labels`` all see the same
mask. Its cost is added to ``post``.
"""

from __future__ import annotations

import time

import numpy as np

from .. import postprocess
from ..errors import InputError
from ..refine import GuidedUpsampler, bilinear_upsample, shrink, to_gray
from ..stabilize import Stabilizer

REFINE_MODES = ("none", "guided")
MAX_FILTER_SIDE = 320  # frame-size probabilities are halved down to this before guided filtering
# refine="guided" computes the coefficients at half the probabilities' resolution (He & Sun's s = 2): on 640x480
# it costs ~35% less than s = 1 with boundary F and flicker within 0.001 (benchmarks/video_quality.py)
GUIDED_SUBSAMPLE = 2
# radius, eps and blend of refine="guided": chosen by benchmarks/guided_tuning.py on the 708 HC18 training images
# (highest boundary F with mIoU >= bilinear; results/video_quality/guided_tuning.json). The untuned filter
# (eps 1e-3, no blend) cost 0.0002 mIoU on HC18 validation: it moved the mask where the model was confident.
GUIDED_RADIUS, GUIDED_EPS, GUIDED_BLEND = 2, 1e-5, 1.0


class MaskFilter:
    """Stabilise and/or refine each frame's probabilities; ``stabilize``: a mode name or a :class:`Stabilizer`,
    ``refine``: ``"none"``, ``"guided"`` or a :class:`~edgeseg.refine.GuidedUpsampler`."""

    def __init__(self, stabilize="none", refine="none"):
        if isinstance(stabilize, str) or stabilize is None:
            stabilize = Stabilizer(stabilize or "none")  # it names the field and the modes on a bad one
        if not isinstance(stabilize, Stabilizer):
            raise InputError(f"stabilize: got {type(stabilize).__name__}, expected a mode name or a Stabilizer")
        if isinstance(refine, str) or refine is None:
            if (refine or "none") not in REFINE_MODES:
                raise InputError(f"refine: got {refine!r}, expected one of {', '.join(REFINE_MODES)}")
            refine = GuidedUpsampler(GUIDED_RADIUS, GUIDED_EPS, subsample=GUIDED_SUBSAMPLE,
                                      blend=GUIDED_BLEND) if refine == "guided" else None
        if refine is not None and not isinstance(refine, GuidedUpsampler):
            raise InputError(f"refine: got {type(refine).__name__}, expected 'none', 'guided' or a GuidedUpsampler")
        self.stabilizer, self.upsampler = stabilize, refine

    @property
    def active(self) -> bool:
        return self.stabilizer.active or self.upsampler is not None

    def reset(self) -> None:
        self.stabilizer.reset()

    def describe(self) -> dict:
        s = self.stabilizer
        return {"stabilize": s.mode, "alpha": s.alpha if s.active else None,
                "refine": "guided" if self.upsampler is not None else "none"}

    def __call__(self, frame: np.ndarray, result):
        from ..pipeline import Segmentation
        from ..preprocess import Region

        t0 = time.perf_counter()
        planes, frame_hw, binary = postprocess.low_resolution_planes(result)
        if tuple(np.shape(frame)[:2]) != tuple(frame_hw):
            raise InputError(f"result: got planes for a {frame_hw} frame, expected the frame's {np.shape(frame)[:2]}")
        at_frame_size = planes.shape[1:] == tuple(frame_hw)
        if at_frame_size and self.upsampler is not None:
            planes = _halve_to(planes, MAX_FILTER_SIDE)
        gray = low = None
        if self.upsampler is not None or self.stabilizer.needs_gray:
            gray = to_gray(frame)
            low = shrink(gray, planes.shape[1:], np.uint8)  # whole gray levels: the stabiliser's lookup route
        planes = self.stabilizer(low, planes)
        timings = dict(getattr(result, "timings", None) or {})
        instances = getattr(result, "instances", None)
        if self.upsampler is not None:
            full = self.upsampler(frame, planes, gray=gray, low=low)
        elif binary:
            h, w = planes.shape[1:]
            out = Segmentation.at_model_resolution(planes[0], Region(0, 0, h, w), frame_hw, _add_post(timings, t0))
            out.instances = instances
            return out
        else:
            full = planes if at_frame_size else bilinear_upsample(planes, frame_hw)
        if binary:
            return Segmentation(foreground=full[0], timings=_add_post(timings, t0), instances=instances)
        return Segmentation(labels=postprocess.argmax_labels(full), probs=full, timings=_add_post(timings, t0),
                            instances=instances)


def _add_post(timings: dict, t0: float) -> dict:
    spent = time.perf_counter() - t0
    timings["post"] = timings.get("post", 0.0) + spent
    timings["filter"] = spent
    return timings


def _halve_to(planes: np.ndarray, side: int) -> np.ndarray:
    from .._deps import require

    cv2 = require("cv2", "mask filtering")
    while max(planes.shape[1:]) > side and min(planes.shape[1:]) >= 16:
        planes = np.stack([cv2.pyrDown(p) for p in planes])
    return planes
