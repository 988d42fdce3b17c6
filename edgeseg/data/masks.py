"""Decode mask files into class-index arrays: class-index PNG, palette PNG, or a binary threshold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._deps import require
from ..errors import InputError

MASK_MODES = ("binary", "index", "palette")


@dataclass(frozen=True)
class MaskSpec:
    """How to read a mask file.

    - ``binary``: foreground where ``channel`` > ``threshold`` (class 1), else 0. HC18 masks (RGB 0/255).
    - ``index``: pixel values are class indices (single-channel PNG, or RGB with equal channels).
    - ``palette``: a palette ("P" mode) PNG whose indices are classes; or an RGB PNG whose colours are
      mapped through ``colors`` (list of RGB triples, class i = colors[i]).
    Values outside ``[0, num_classes)`` other than ``ignore_index`` are an InputError.
    """

    mode: str = "binary"
    num_classes: int = 2
    threshold: int = 0
    channel: int = 0
    ignore_index: int | None = None
    colors: tuple[tuple[int, int, int], ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MASK_MODES:
            raise InputError(f"mask mode: got {self.mode!r}, expected one of {MASK_MODES}")
        if self.mode == "binary" and self.num_classes != 2:
            raise InputError(f"num_classes: got {self.num_classes} with mask mode 'binary', expected 2")
        if self.num_classes < 2:
            raise InputError(f"num_classes: got {self.num_classes}, expected at least 2 (background + one class)")


def _read_array(path: Path):
    image_mod = require("PIL.Image", "reading mask PNGs")
    try:
        with image_mod.open(path) as img:
            return np.asarray(img), img.mode
    except (OSError, ValueError) as exc:
        raise InputError(f"mask file {path}: cannot be read as an image ({exc})") from exc


def read_label_image(path: Path) -> np.ndarray:
    """A label PNG (instance ids, class indices) as a 2-D integer array at the file's own bit depth: a 16-bit
    file keeps values above 255 (an 8-bit image reader would scale them down); first channel if colour."""
    arr, _ = _read_array(Path(path))
    return arr if arr.ndim == 2 else arr[..., 0]


def _single_channel(arr: np.ndarray, path: Path, what: str) -> np.ndarray:
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(arr.shape[2], 3))):
        return arr[..., 0]
    raise InputError(
        f"mask file {path}: got a {arr.shape[2]}-channel image with differing channels, expected {what}"
    )


def _decode_one(path: Path, spec: MaskSpec) -> np.ndarray:
    arr, mode = _read_array(path)
    if spec.mode == "binary":
        plane = arr if arr.ndim == 2 else arr[..., spec.channel]
        return (plane > spec.threshold).astype(np.uint8)
    if spec.mode == "palette" and mode != "P":
        if spec.colors is None or arr.ndim != 3:
            raise InputError(
                f"mask file {path}: got a {mode!r} image, expected a palette ('P' mode) PNG, "
                "or an RGB mask together with colors=[(r, g, b) per class]"
            )
        rgb = arr[..., :3].astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        out = np.full(code.shape, -1, np.int64)
        for index, (r, g, b) in enumerate(spec.colors):
            out[code == ((r << 16) | (g << 8) | b)] = index
        if (out < 0).any():
            bad = sorted({tuple(int(v) for v in c) for c in rgb[out < 0][:1000]})[:5]
            raise InputError(f"mask file {path}: colours {bad} are not in colors={list(spec.colors)}")
        return out
    return _single_channel(arr, path, "a single-channel class-index mask").astype(np.int64)


def _check_values(mask: np.ndarray, path: Path, spec: MaskSpec) -> None:
    values = np.unique(mask)
    bad = [int(v) for v in values if not (0 <= v < spec.num_classes) and v != spec.ignore_index]
    if bad:
        ignore = f" or ignore_index {spec.ignore_index}" if spec.ignore_index is not None else ""
        raise InputError(
            f"mask file {path}: unknown class values {bad[:10]}, expected 0..{spec.num_classes - 1}{ignore} "
            "(set num_classes / ignore_index, or use mask mode 'binary')"
        )


def read_mask(paths: Path | Sequence[Path], spec: MaskSpec | None = None) -> np.ndarray:
    """Read one or several mask files for one image into an ``(H, W)`` uint8 class-index array (default: binary).

    Several files are OR-ed: a later file's non-zero labels overwrite earlier ones (for binary masks
    this is the logical OR). All files must have the same size.
    """
    spec = spec or MaskSpec()
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not paths:
        raise InputError("mask paths: got an empty list, expected at least one mask file")
    combined = None
    for path in paths:
        mask = _decode_one(path, spec)
        _check_values(mask, path, spec)
        if combined is None:
            combined = mask
        elif mask.shape != combined.shape:
            raise InputError(f"mask file {path}: size {mask.shape} differs from {paths[0].name} {combined.shape}")
        else:
            combined = np.where(mask != 0, mask, combined)
    if combined.max(initial=0) > 255:
        return combined.astype(np.int64)
    return combined.astype(np.uint8)
