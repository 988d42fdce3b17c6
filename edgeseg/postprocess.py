"""Model output -> per-pixel probabilities and labels at frame size, and colour overlays.

Logits ``(C, h, w)`` become probabilities at model resolution (softmax over classes; a one-channel
output is a sigmoid foreground with C = 2: background, foreground), the letterbox padding is cut off,
and each class plane is resized bilinearly to the frame (resizing commutes with the linear EMA and keeps
probabilities summing to one). Labels are the per-pixel argmax (first class on ties), uint8 like OpenCV masks
and MediaPipe's category masks (uint16 beyond 256 classes): a quarter of the memory traffic of int32, and what
``cv2`` mask arguments take as they are.
"""

from __future__ import annotations

import numpy as np

from ._deps import require
from .errors import InputError
from .preprocess import Region


def label_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned type that holds class indices 0..num_classes-1 (uint8 up to 256 classes)."""
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16 if num_classes <= 65536 else np.int32)


def is_binary(output: np.ndarray) -> bool:
    """True for (1, h, w) sigmoid or (2, h, w) two-class outputs (the fast path applies)."""
    return output.ndim == 3 and output.shape[0] in (1, 2)


def foreground(output: np.ndarray, output_kind: str) -> np.ndarray:
    """(1, h, w) or (2, h, w) logits/probs -> (h, w) float32 foreground probability.

    One logit: ``sigmoid(x)``; two logits: ``sigmoid(x1 - x0)``, which equals the 2-class softmax.
    """
    x = np.asarray(output, dtype=np.float32)
    if output_kind == "probs":
        return np.ascontiguousarray(x[-1])
    z = np.negative(x[0]) if x.shape[0] == 1 else np.subtract(x[0], x[1])
    with np.errstate(over="ignore"):  # exp overflows to inf for very negative logits: 1 / inf = 0 is right
        np.exp(z, out=z)
    z += 1.0
    return np.reciprocal(z, out=z)  # in place: one buffer instead of four


def probabilities(output: np.ndarray, output_kind: str) -> np.ndarray:
    """(C, h, w) logits or probs -> (C', h, w) float32 probabilities (C' = 2 when C = 1)."""
    x = np.asarray(output, dtype=np.float32)
    if x.ndim != 3:
        raise InputError(f"model output: got shape {x.shape}, expected (classes, height, width) per image")
    if is_binary(x):
        fg = foreground(x, output_kind)
        return np.stack([1.0 - fg, fg])
    if output_kind == "probs":
        return x
    e = np.exp(x - x.max(axis=0, keepdims=True))
    e /= e.sum(axis=0, keepdims=True)
    return e


def to_frame_size(probs: np.ndarray, region: Region, frame_hw: tuple[int, int]) -> np.ndarray:
    """(C, h, w) at model input size -> (C, H, W) float32 at frame size, letterbox padding removed."""
    cv2 = require("cv2", "postprocessing")
    crop = probs[:, region.top:region.top + region.height, region.left:region.left + region.width]
    height, width = frame_hw
    if crop.shape[1:] == (height, width):
        return np.ascontiguousarray(crop, dtype=np.float32)
    out = np.empty((crop.shape[0], height, width), np.float32)
    for c in range(crop.shape[0]):
        cv2.resize(crop[c], (width, height), dst=out[c], interpolation=cv2.INTER_LINEAR)
    return out


def foreground_to_frame_size(foreground: np.ndarray, region: Region, frame_hw: tuple[int, int]) -> np.ndarray:
    """Two-class fast path: (h, w) foreground probability -> (H, W) float32 at frame size, padding removed.

    Only the foreground plane is resized: background is ``1 - foreground`` (bilinear weights sum to one, so
    this equals resizing both planes) and the labels are ``foreground > 0.5`` (``Segmentation`` builds both).
    """
    cv2 = require("cv2", "postprocessing")
    height, width = frame_hw
    crop = foreground[region.top:region.top + region.height, region.left:region.left + region.width]
    if crop.shape == (height, width):
        return np.array(crop, np.float32)
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)


def argmax_labels(probs: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) index of the largest class (first one on ties), dtype :func:`label_dtype`."""
    if probs.shape[0] == 2:
        return (probs[1] > probs[0]).view(np.uint8)
    best = probs[0].copy()
    labels = np.zeros(probs.shape[1:], label_dtype(probs.shape[0]))
    for c in range(1, probs.shape[0]):
        better = probs[c] > best
        labels[better] = c
        np.maximum(best, probs[c], out=best)
    return labels


def colorize(labels: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """(H, W) int labels -> (H, W, 3) BGR uint8 using one colour per class."""
    palette = np.asarray(colors, np.uint8).reshape(-1, 3)
    if labels.size and (labels.min() < 0 or labels.max() >= len(palette)):
        raise InputError(f"labels: values span {labels.min()}..{labels.max()}, expected 0..{len(palette) - 1}")
    return palette[labels]


def overlay(frame: np.ndarray, labels: np.ndarray, colors: list[tuple[int, int, int]], alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over ``frame`` (BGR or gray uint8) where label != 0; background pixels stay as they are."""
    cv2 = require("cv2", "drawing overlays")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha: got {alpha!r}, expected a number in [0, 1]")
    base = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame
    if base.shape[:2] != labels.shape:
        raise InputError(f"labels: got shape {labels.shape}, expected the frame's (H, W) {base.shape[:2]}")
    blended = cv2.addWeighted(base, 1.0 - alpha, colorize(labels, colors), alpha, 0.0)
    return np.where((labels != 0)[:, :, None], blended, base)
