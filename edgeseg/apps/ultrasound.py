"""Fetal head circumference (HC) from a head mask: ellipse fit + Ramanujan's perimeter, in millimetres.

The HC18 protocol: fit an ellipse to the outer contour of the head and report its perimeter times the
pixel size. ``cv2.fitEllipse`` on the largest outer contour gives the full axes; the perimeter of an
ellipse with semi-axes a, b is approximated by Ramanujan's formula
``pi * (3 (a + b) - sqrt((3a + b)(a + 3b)))`` (relative error below 1e-5 for axis ratios under 2, at most 0.4% for a degenerate ellipse).

>>> from edgeseg.apps.ultrasound import head_circumference_mm
>>> mask = np.zeros((540, 800), np.uint8); _ = cv2.ellipse(mask, (400, 270), (200, 150), 0, 0, 360, 1, -1)  # doctest: +SKIP
>>> head_circumference_mm(mask, pixel_size_mm=0.1)   # doctest: +SKIP
111.1...
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


def ellipse_perimeter(a: float, b: float) -> float:
    """Perimeter of an ellipse with semi-axes ``a`` and ``b`` (Ramanujan): exact for a circle."""
    if a < 0 or b < 0:
        raise InputError(f"semi-axes: got ({a}, {b}), expected non-negative lengths")
    return math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))


def fit_head_ellipse(mask: np.ndarray) -> Ellipse:
    """Fit an ellipse to the largest outer contour of ``mask`` (H, W), foreground = non-zero."""
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
    (cx, cy), (d1, d2), angle = cv2.fitEllipse(contour)
    return Ellipse((float(cx), float(cy)), (float(d1), float(d2)), float(angle))


def head_circumference_mm(mask: np.ndarray, pixel_size_mm: float) -> float:
    """Head circumference in mm of the head in ``mask`` (H, W) at its original resolution."""
    if not pixel_size_mm > 0:
        raise InputError(f"pixel_size_mm: got {pixel_size_mm!r}, expected a positive number")
    return fit_head_ellipse(mask).perimeter * float(pixel_size_mm)


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
