"""Fetal head circumference (HC) from a head mask: ellipse fit + Ramanujan's perimeter, in millimetres.

The HC18 protocol: fit an ellipse to the outer contour of the head and report its perimeter times the
pixel size. ``cv2.fitEllipse`` on the largest outer contour, less the points on the image edge (there the
view ends, not the skull), gives the full axes; the perimeter of an
ellipse with semi-axes a, b is approximated by Ramanujan's formula
``pi * (3 (a + b) - sqrt((3a + b)(a + 3b)))`` (relative error below 1e-5 for axis ratios under 2, at most 0.4% for a degenerate ellipse).

>>> from edgeseg.apps.ultrasound import head_circumference_mm
>>> mask = np.zeros((540, 800), np.uint8); _ = cv2.ellipse(mask, (400, 270), (200, 150), 0, 0, 360, 1, -1)  # doctest: +SKIP
>>> head_circumference_mm(mask, pixel_size_mm=0.1)   # doctest: +SKIP
111.1...

:func:`measure_head` adds the uncertainty: on a head probability map it reports HC +- a half-width (from
the outlines at probability 0.1 and 0.9) and flags a head cut by the border, a poor fit or an unsure
boundary (see ``benchmarks/hc18_eval.py`` for how those flags line up with the large errors).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._deps import require
from ..errors import InputError


@dataclass(frozen=True)
class Ellipse:
    """An ellipse in pixel coordinates: centre (x, y), full axes lengths (d1, d2), angle in degrees."""

    center: tuple[float, float]
    axes: tuple[float, float]
    angle: float

    @property
    def perimeter(self) -> float:
        """Perimeter in pixels (Ramanujan's first approximation)."""
        return ellipse_perimeter(self.axes[0] / 2.0, self.axes[1] / 2.0)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) bool: this ellipse filled, in an image of ``shape`` (HC18 annotates heads as filled ellipses)."""
        cv2 = require("cv2", "ellipse drawing")
        out = np.zeros(tuple(shape)[:2], np.uint8)
        cv2.ellipse(out, (self.center, self.axes, self.angle), 1, -1)
        return out > 0

    def inset_perimeter(self, offset_px: float) -> float:
        """Perimeter in pixels of this ellipse with both semi-axes ``offset_px`` shorter (at least 0)."""
        return ellipse_perimeter(max(0.0, self.axes[0] / 2.0 - offset_px), max(0.0, self.axes[1] / 2.0 - offset_px))


def ellipse_perimeter(a: float, b: float) -> float:
    """Perimeter of an ellipse with semi-axes ``a`` and ``b`` (Ramanujan): exact for a circle."""
    if a < 0 or b < 0:
        raise InputError(f"semi-axes: got ({a}, {b}), expected non-negative lengths")
    return math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))


def _largest_contour(mask: np.ndarray) -> np.ndarray:
    """(N, 2) int points of the largest outer contour of ``mask`` (H, W), foreground = non-zero."""
    cv2 = require("cv2", "ellipse fitting")
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"mask: got shape {mask.shape}, expected (H, W)")
    binary = (mask != 0).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise InputError("mask: no foreground pixels, expected a head region to fit an ellipse to")
    contour = max(contours, key=cv2.contourArea)
    if len(contour) < 5:
        raise InputError(f"mask: the largest region has {len(contour)} contour points, expected at least 5")
    return contour.reshape(-1, 2)


def on_border(points: np.ndarray, shape: tuple[int, int], margin: int = 1) -> np.ndarray:
    """Boolean per (x, y) point: within ``margin`` pixels of the image edge (where the view, not the skull, ends)."""
    h, w = shape
    x, y = points[:, 0], points[:, 1]
    return (x <= margin) | (y <= margin) | (x >= w - 1 - margin) | (y >= h - 1 - margin)


def _fit(cv2, points: np.ndarray) -> Ellipse:
    (cx, cy), (d1, d2), angle = cv2.fitEllipse(points.reshape(-1, 1, 2).astype(np.float32))
    return Ellipse((float(cx), float(cy)), (float(d1), float(d2)), float(angle))


def ellipse_distances(ellipse: Ellipse, points: np.ndarray) -> np.ndarray:
    """Signed distance in pixels (outside > 0) of (x, y) points to the ellipse, along the ray from its centre.

    Exact for a circle; for the near-circular heads of HC18 within a few percent of the true normal distance.
    """
    a, b = ellipse.axes[0] / 2.0, ellipse.axes[1] / 2.0
    t = math.radians(ellipse.angle)
    d = np.asarray(points, np.float64) - ellipse.center
    u = d[:, 0] * math.cos(t) + d[:, 1] * math.sin(t)  # along the first axis
    v = -d[:, 0] * math.sin(t) + d[:, 1] * math.cos(t)
    r = np.sqrt((u / max(a, 1e-9)) ** 2 + (v / max(b, 1e-9)) ** 2)
    return np.hypot(u, v) * (1.0 - 1.0 / np.maximum(r, 1e-9))


def outside_fraction(ellipse: Ellipse, shape: tuple[int, int], samples: int = 360) -> float:
    """Fraction of the ellipse's outline (sampled evenly in angle) that lies outside an image of ``shape``."""
    a, b = ellipse.axes[0] / 2.0, ellipse.axes[1] / 2.0
    t, phi = math.radians(ellipse.angle), np.linspace(0, 2 * math.pi, samples, endpoint=False)
    x = ellipse.center[0] + a * np.cos(phi) * math.cos(t) - b * np.sin(phi) * math.sin(t)
    y = ellipse.center[1] + a * np.cos(phi) * math.sin(t) + b * np.sin(phi) * math.cos(t)
    h, w = shape
    return float(np.mean((x < 0) | (y < 0) | (x > w - 1) | (y > h - 1)))


def fit_head_ellipse(mask: np.ndarray, exclude_border: bool = True) -> Ellipse:
    """Fit an ellipse to the largest outer contour of ``mask`` (H, W), foreground = non-zero.

    With ``exclude_border`` the contour points on the image edge are left out: there the view ends, not
    the skull, and fitting them pulls a cut head's ellipse inwards. They are kept when fewer than five
    points would remain.
    """
    cv2 = require("cv2", "ellipse fitting")
    points = _largest_contour(mask)
    if exclude_border:
        points = _skull(points, on_border(points, np.asarray(mask).shape))
    return _fit(cv2, points)


def _skull(points: np.ndarray, border: np.ndarray) -> np.ndarray:
    """The contour ``points`` off the image edge (``border``), or all of them when fewer than five would remain."""
    return points[~border] if (~border).sum() >= 5 else points


#: HC18's masks are filled up to the outside of the drawn outline: their contour runs 0.94 px (least squares
#: over the 708 training-split masks; the validation masks say the same) outside the reference ellipse, so a
#: fit to a mask, or to a model trained on such masks, is about 2 pi px_mm larger than the reference
#: (0.76 mm mean there, 1.2 mm for heads > 220 mm). Shrinking both semi-axes by it leaves 0.06 mm.
HC18_OUTLINE_OFFSET_PX = 0.94


def head_circumference_mm(mask: np.ndarray, pixel_size_mm: float, exclude_border: bool = True,
                          outline_offset_px: float = HC18_OUTLINE_OFFSET_PX) -> float:
    """Head circumference in mm of the head in ``mask`` (H, W) at its original resolution.

    ``outline_offset_px``: how far the mask's contour runs outside the skull outline it annotates
    (:data:`HC18_OUTLINE_OFFSET_PX` for HC18 and models trained on it; 0 to measure the contour as is).
    """
    if not pixel_size_mm > 0:
        raise InputError(f"pixel_size_mm: got {pixel_size_mm!r}, expected a positive number")
    return fit_head_ellipse(mask, exclude_border).inset_perimeter(outline_offset_px) * float(pixel_size_mm)


#: Flag thresholds. The border and fit limits were set on the stratified HC18 validation split; the half-width
#: limit on the training patients only (benchmarks/hc18_flag_limit.py: all flags together mark at most 5 % of
#: their scans, for the shipped model); benchmarks/hc18_eval.py shows how they fare on validation.
BORDER_LIMIT = 0.05       # fraction of the head's contour on the image edge: the view cuts the head
RESIDUAL_LIMIT_MM = 1.0   # RMS distance of the skull contour to its ellipse: not an elliptical outline
HALF_WIDTH_LIMIT_MM = 6.6  # the model is unsure where the skull is: the interval is wider than this
BOUNDARY_LEVELS = (0.1, 0.9)  # probability levels whose contours bound the interval


@dataclass(frozen=True)
class HeadMeasurement:
    """A head circumference with its uncertainty.

    ``interval_mm``: ``hc_mm`` +- a half-width from how far apart the model puts the head's outline at
    probability 0.1 and at 0.9 (``boundary_width_mm``, the circumferences of those two contours), with a
    floor of 1 mm (the method's own error on hand-drawn masks) and widened by the arc a border cuts off.
    ``flags`` name the reasons not to trust the number: ``cut_by_border``, ``poor_fit``, ``unsure_boundary``.
    """

    hc_mm: float
    interval_mm: tuple[float, float]
    ellipse: Ellipse
    pixel_size_mm: float
    border_fraction: float  # of the head outline on or beyond the image edge
    residual_mm: float
    boundary_width_mm: float
    flags: tuple[str, ...]

    @property
    def trusted(self) -> bool:
        return not self.flags

    @property
    def half_width_mm(self) -> float:
        return (self.interval_mm[1] - self.interval_mm[0]) / 2.0

    def describe(self) -> str:
        """``HC 172.4 mm +- 2.3`` plus ``(check: cut_by_border)`` when flagged."""
        text = f"HC {self.hc_mm:.1f} mm +- {self.half_width_mm:.1f}"
        return text + (f" (check: {', '.join(self.flags)})" if self.flags else "")


def measure_head(head: np.ndarray, pixel_size_mm: float,
                 outline_offset_px: float = HC18_OUTLINE_OFFSET_PX) -> HeadMeasurement:
    """Measure the head in ``head`` (H, W) at original resolution, with an interval and trust flags.

    ``head``: the head probability (float in [0, 1], e.g. a model's output averaged over the image and
    its mirror) or a binary mask (then the interval comes from the fit residual alone). The head is the
    largest region above 0.5; its ellipse is fitted to the skull only (not to contour points on the
    image edge), and measured ``outline_offset_px`` inside (see :func:`head_circumference_mm`).
    """
    cv2 = require("cv2", "ellipse fitting")
    if not pixel_size_mm > 0:
        raise InputError(f"pixel_size_mm: got {pixel_size_mm!r}, expected a positive number")
    head = np.asarray(head)
    if head.ndim != 2:
        raise InputError(f"head: got shape {head.shape}, expected (H, W) probabilities or a mask")
    px = float(pixel_size_mm)
    binary = head.dtype == bool or np.issubdtype(head.dtype, np.integer)
    prob = head.astype(np.float32) if not binary else (head != 0).astype(np.float32)
    points = _largest_contour((prob > 0.5).astype(np.uint8))
    border = on_border(points, prob.shape)
    skull = _skull(points, border)
    ellipse = _fit(cv2, skull)
    residual = float(np.sqrt(np.mean(ellipse_distances(ellipse, skull) ** 2))) * px
    hc = ellipse.inset_perimeter(outline_offset_px) * px
    width = 0.0
    if not binary:
        outer, inner = (_hc_at(prob > level, px, outline_offset_px) for level in BOUNDARY_LEVELS)
        width = outer - inner if inner > 0 else outer
    # Cut by the view: contour points on the edge, or an ellipse that runs outside the image.
    border_fraction = max(float(border.mean()), outside_fraction(ellipse, prob.shape))
    # Without probabilities, a contour offset by the residual changes the perimeter by 2 pi times it.
    half = math.sqrt(1.0 + (width / 2) ** 2 + (0.0 if not binary else (2 * math.pi * residual) ** 2))
    half += border_fraction * hc  # the cut-off arc is extrapolated, not seen
    flags = trust_flags(border_fraction, residual, half)
    return HeadMeasurement(hc, (hc - half, hc + half), ellipse, px, border_fraction, residual, width, flags)


def trust_flags(border_fraction: float, residual_mm: float, half_width_mm: float,
                half_width_limit_mm: float = HALF_WIDTH_LIMIT_MM) -> tuple[str, ...]:
    """The reasons not to trust a measurement with these features (:attr:`HeadMeasurement.flags`)."""
    return tuple(name for name, bad in (
        ("cut_by_border", border_fraction > BORDER_LIMIT),
        ("poor_fit", residual_mm > RESIDUAL_LIMIT_MM),
        ("unsure_boundary", half_width_mm > half_width_limit_mm),
    ) if bad)


def _hc_at(region: np.ndarray, px: float, outline_offset_px: float) -> float:
    """HC of the skull-only ellipse of ``region`` (bool), measured ``outline_offset_px`` inside; 0 when none."""
    try:
        return fit_head_ellipse(region.astype(np.uint8)).inset_perimeter(outline_offset_px) * px
    except InputError:
        return 0.0


def head_probability(scores: np.ndarray, output_kind: str = "logits") -> np.ndarray:
    """(C, H, W) logits or probabilities -> (H, W) float32 probability of "not background"."""
    scores = np.asarray(scores, np.float32)
    if output_kind == "logits":
        shifted = np.exp(scores - scores.max(0, keepdims=True))
        return 1.0 - shifted[0] / shifted.sum(0)
    return 1.0 - scores[0]


@dataclass(frozen=True)
class HCReference:
    """One row of HC18's ``pixel_size_and_hc.csv``."""

    filename: str
    pixel_size_mm: float
    hc_mm: float


def read_hc_csv(path: str | Path) -> dict[str, HCReference]:
    """Read ``filename,pixel size(mm),head circumference (mm)`` rows into a dict keyed by file name."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"hc csv: {path} not found, expected HC18's pixel_size_and_hc.csv")
    out = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or len(header) < 3:
            raise InputError(f"hc csv {path}: header {header!r}, expected filename, pixel size, head circumference")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                out[row[0]] = HCReference(row[0], float(row[1]), float(row[2]))
            except (IndexError, ValueError) as exc:
                raise InputError(f"hc csv {path} line {line}: {row!r} is not 'name,pixel_mm,hc_mm' ({exc})") from exc
    return out


def hc_errors(masks: dict[str, np.ndarray], reference: dict[str, HCReference]) -> dict[str, dict[str, float]]:
    """For each ``name -> mask`` (original resolution): measured HC, reference HC and signed error (mm)."""
    out = {}
    for name, mask in masks.items():
        if name not in reference:
            raise InputError(f"mask name: {name!r} is not in the HC csv, expected one of its file names")
        ref = reference[name]
        hc = head_circumference_mm(mask, ref.pixel_size_mm)
        out[name] = {"hc_mm": hc, "reference_mm": ref.hc_mm, "error_mm": hc - ref.hc_mm}
    return out
