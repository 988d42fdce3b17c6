"""Model output -> per-pixel probabilities and labels at frame size, and colour overlays.

Logits ``(C, h, w)`` become probabilities at model resolution (softmax over classes; a one-channel
output is a sigmoid foreground with C = 2: background, foreground), the letterbox padding is cut off,
and each class plane is resized bilinearly to the frame (resizing commutes with the linear EMA and keeps
probabilities summing to one). Labels are the per-pixel argmax (first class on ties), uint8 like OpenCV masks
and MediaPipe's category masks (uint16 beyond 256 classes): a quarter of the memory traffic of int32, and what
``cv2`` mask arguments take as they are.

Two-class models resize only the foreground plane, either in float32 (:func:`foreground_to_frame_size`) or,
when only labels are wanted, as 16-bit fixed point (:func:`fixed_point_foreground_to_frame_size`): OpenCV's
uint16 resize is faster and thresholding reads half the bytes, 0.07 ms less per 800x540 frame.
"""

from __future__ import annotations

import numpy as np

from ._deps import require
from .errors import InputError
from .preprocess import Region


def label_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned type that holds class indices 0..num_classes-1 (uint8 up to 256 classes)."""
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16 if num_classes <= 65536 else np.int32)


# A 16-bit fixed-point probability p is stored as round(p * FIXED_ONE). Even, so 0.5 is exactly 32767 (a tie stays
# background, as the argmax's "first class on ties" says), and dividing by it (correctly rounded) gives exactly 0.5
# back, so labels (> 32767) and the converted foreground (> 0.5) agree on every value.
FIXED_ONE = 65534


def is_binary(output: np.ndarray) -> bool:
    """True for (1, h, w) sigmoid or (2, h, w) two-class outputs (the fast path applies)."""
    return output.ndim == 3 and output.shape[0] in (1, 2)


def foreground(output: np.ndarray, output_kind: str) -> np.ndarray:
    """(1, h, w) or (2, h, w) logits/probs -> (h, w) float32 foreground probability.

    One logit: ``sigmoid(x)``; two logits: ``sigmoid(x1 - x0)``, which equals the 2-class softmax. Computed as
    ``0.5 + 0.5 * tanh(z / 2)`` in place: one buffer and one transcendental pass, no overflow for large ``|z|``.
    """
    x = np.asarray(output, dtype=np.float32)
    if output_kind == "probs":  # a copy: the result may outlive a runner that reuses its output buffer
        return np.array(x[-1], np.float32)
    z = np.array(x[0]) if x.shape[0] == 1 else np.subtract(x[1], x[0])
    z *= 0.5
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5
    return z


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
    crop = _crop(foreground, region)
    if crop.shape == (height, width):
        return np.array(crop, np.float32)
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)


def fixed_point_foreground_to_frame_size(foreground: np.ndarray, region: Region,
                                         frame_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) foreground probability -> (H, W) uint16 ``round(p * FIXED_ONE)`` at frame size, padding removed.

    The labels-only path: OpenCV resizes 16-bit planes about 1.5x faster than float32 ones and the threshold
    reads half the bytes, while 1/65534 steps are far finer than any decision made on the labels.
    """
    cv2 = require("cv2", "postprocessing")
    height, width = frame_hw
    crop = _crop(foreground, region)
    fixed = cv2.addWeighted(crop, float(FIXED_ONE), crop, 0.0, 0.0, dtype=cv2.CV_16U)  # scale, round, clip
    if fixed.shape == (height, width):
        return fixed
    return cv2.resize(fixed, (width, height), interpolation=cv2.INTER_LINEAR)


def labels_from_fixed_point(fixed: np.ndarray) -> np.ndarray:
    """(H, W) uint16 fixed-point foreground -> (H, W) uint8 labels: exactly ``foreground_from_fixed_point(f) > 0.5``."""
    return (fixed > FIXED_ONE // 2).view(np.uint8)


def foreground_from_fixed_point(fixed: np.ndarray) -> np.ndarray:
    """(H, W) uint16 fixed-point foreground -> (H, W) float32 probability (a division: 32767 gives exactly 0.5)."""
    return np.divide(fixed, np.float32(FIXED_ONE), dtype=np.float32)


def low_resolution_planes(result) -> tuple[np.ndarray, tuple[int, int], bool]:
    """A result's probabilities at the lowest resolution at hand: ``(planes (C', h, w), frame_hw, binary)``.

    A Segmenter's two-class result still at model resolution gives its (1, h, w) foreground with the letterbox
    cut off (nothing resized yet); any other result gives its frame-size planes: the foreground (1, H, W) for
    two classes, else all (C, H, W) probabilities. Used by the render stage's stabilising and refining filter.
    """
    pending = getattr(result, "_pending", None)  # Segmentation.at_model_resolution: (foreground, region, frame_hw)
    if pending is not None and getattr(result, "_foreground", None) is None:
        fg, region, frame_hw = pending
        return np.asarray(_crop(fg, region), np.float32)[None], tuple(frame_hw), True
    probs = np.asarray(result.probs, np.float32)
    if probs.ndim != 3:
        raise InputError(f"result.probs: got shape {probs.shape}, expected (classes, height, width)")
    if probs.shape[0] == 2:
        return np.asarray(result.foreground, np.float32)[None], probs.shape[1:], True
    return probs, probs.shape[1:], False


def _crop(plane: np.ndarray, region: Region) -> np.ndarray:
    return plane[region.top:region.top + region.height, region.left:region.left + region.width]


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
