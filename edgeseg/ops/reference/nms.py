"""Greedy non-maximum suppression, literally (NumPy): the reference for :func:`edgeseg.ops.nms`.

Visit boxes by score, highest first (ties: lower index first); keep a box unless its IoU with a box
already kept is greater than ``iou_threshold``. Boxes are (x1, y1, x2, y2), area ``(x2-x1)*(y2-y1)``
with no +1, as ``torchvision.ops.nms``.
"""

from __future__ import annotations

import numpy as np


def iou_one(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boxes (4,) in xyxy; 0 when the union is empty."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def nms_reference(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """boxes (K, 4), scores (K,) -> int64 indices of the kept boxes, by decreasing score."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    for i in order:
        if all(iou_one(boxes[i], boxes[j]) <= iou_threshold for j in kept):
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)
