"""A stable head-circumference readout for ultrasound video: a running median per head, reset when the head changes.

Per frame, :func:`~edgeseg.apps.ultrasound.measure_head` measures the head on the model's probability.
:class:`HCReadout` keeps the trusted measurements of the current head in a short window and reports their
median, so the number on screen does not flicker with speckle; it starts over when the head moves far,
changes size, or is lost for a few frames (the probe went to another head or plane).
:class:`UltrasoundOverlay` is the render stage of ``edgeseg run --effect hc``.

>>> readout = HCReadout(window=15)
>>> state = readout.update(measurement)      # doctest: +SKIP   (a HeadMeasurement, or None: no head)
>>> state.hc_mm, state.half_width_mm, state.frames   # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .._deps import require
from ..errors import InputError
from .ultrasound import HeadMeasurement, measure_head


@dataclass(frozen=True)
class ReadoutState:
    """What the screen shows: the median HC of the current head (None until a trusted frame), its
    half-width, how many frames the median holds, whether this frame started a new head, and the frame's
    own measurement (None when no head was found)."""

    hc_mm: float | None
    half_width_mm: float | None
    frames: int
    reset: bool
    frame: HeadMeasurement | None

    def describe(self) -> str:
        if self.hc_mm is None:
            return "HC --" if self.frame is None else f"HC -- (check: {', '.join(self.frame.flags)})"
        text = f"HC {self.hc_mm:.1f} mm +- {self.half_width_mm:.1f} ({self.frames} fr)"
        if self.frame is not None and self.frame.flags:
            text += f" (frame: {', '.join(self.frame.flags)})"
        return text


class HCReadout:
    """Median of the last ``window`` trusted measurements of one head.

    A new head starts (the window empties) when a frame's ellipse centre moves more than ``move`` times
    the head's mean diameter from the current head's, its HC differs from the median by more than
    ``jump`` (a fraction), or no head is found for more than ``max_missing`` frames in a row. Flagged
    measurements still detect a new head but never enter the median.
    """

    def __init__(self, window: int = 15, jump: float = 0.15, move: float = 0.25, max_missing: int = 5):
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise InputError(f"window: got {window!r}, expected a positive number of frames")
        for name, value in (("jump", jump), ("move", move)):
            if not value > 0:
                raise InputError(f"{name}: got {value!r}, expected a positive fraction")
        if not isinstance(max_missing, int) or max_missing < 0:
            raise InputError(f"max_missing: got {max_missing!r}, expected a non-negative number of frames")
        self.window, self.jump, self.move, self.max_missing = window, float(jump), float(move), max_missing
        self.heads = 0  # how many heads (resets) so far
        self._values: deque[tuple[float, float, tuple[float, float], float]] = deque(maxlen=window)
        self._missing = 0

    def _changed(self, m: HeadMeasurement) -> bool:
        if not self._values:
            return False
        hc = float(np.median([v[0] for v in self._values]))
        cx = float(np.median([v[2][0] for v in self._values]))
        cy = float(np.median([v[2][1] for v in self._values]))
        diameter = float(np.median([v[3] for v in self._values]))
        moved = math.hypot(m.ellipse.center[0] - cx, m.ellipse.center[1] - cy) > self.move * diameter
        return moved or abs(m.hc_mm - hc) > self.jump * hc

    def update(self, m: HeadMeasurement | None) -> ReadoutState:
        """Add this frame's measurement (None: no head found) and return what to show."""
        reset = False
        if m is None:
            self._missing += 1
            if self._missing > self.max_missing and self._values:
                self._values.clear()
                reset = True
        else:
            self._missing = 0
            if self._changed(m):
                self._values.clear()
                reset = True
            if m.trusted:
                if not self._values:
                    self.heads += 1
                diameter = (m.ellipse.axes[0] + m.ellipse.axes[1]) / 2
                self._values.append((m.hc_mm, m.half_width_mm, m.ellipse.center, diameter))
        if not self._values:
            return ReadoutState(None, None, 0, reset, m)
        hc = float(np.median([v[0] for v in self._values]))
        half = float(np.median([v[1] for v in self._values]))
        return ReadoutState(hc, half, len(self._values), reset, m)


class UltrasoundOverlay:
    """Render callable ``(frame, segmentation) -> BGR frame``: head outline, fitted ellipse and the stable HC.

    Keeps the per-frame readouts of the run (the last ``history`` of them) in ``self.readouts`` and a
    summary for ``edgeseg run --summary`` in :meth:`summary`.
    """

    def __init__(self, pixel_size_mm: float, window: int = 15, history: int = 10000, **readout_options):
        if not (isinstance(pixel_size_mm, (int, float)) and pixel_size_mm > 0):
            raise InputError(f"pixel_size_mm: got {pixel_size_mm!r}, expected the pixel size in mm (> 0)")
        self.cv2 = require("cv2", "the ultrasound overlay")
        self.pixel_size_mm = float(pixel_size_mm)
        self.readout = HCReadout(window=window, **readout_options)
        self.readouts: deque[ReadoutState] = deque(maxlen=history)
        self.frames = self.flagged = self.no_head = 0

    def measure(self, segmentation) -> HeadMeasurement | None:
        try:
            return measure_head(segmentation.foreground, self.pixel_size_mm)
        except InputError:  # nothing segmented in this frame
            return None

    def __call__(self, frame: np.ndarray, segmentation) -> np.ndarray:
        cv2 = self.cv2
        m = self.measure(segmentation)
        state = self.readout.update(m)
        self.readouts.append(state)
        self.frames += 1
        self.no_head += m is None
        self.flagged += m is not None and not m.trusted
        out = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
        if m is not None:
            colour = (0, 255, 255) if m.trusted else (0, 0, 255)
            e = m.ellipse
            cv2.ellipse(out, (e.center, e.axes, e.angle), colour, 2, cv2.LINE_AA)
        scale = max(0.5, out.shape[0] / 900)
        cv2.putText(out, state.describe(), (10, int(30 * scale * 1.3)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 255, 255), 2, cv2.LINE_AA)
        return out

    def summary(self) -> dict:
        """Frames measured, flagged, without a head; heads seen; the last stable readout."""
        last = next((s for s in reversed(self.readouts) if s.hc_mm is not None), None)
        return {"frames": self.frames, "flagged": self.flagged, "no_head": self.no_head, "heads": self.readout.heads,
                "pixel_size_mm": self.pixel_size_mm,
                "last_hc_mm": None if last is None else last.hc_mm,
                "last_half_width_mm": None if last is None else last.half_width_mm}
