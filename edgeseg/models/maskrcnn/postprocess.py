"""From head outputs to detections (per-class decode, score threshold, per-class NMS, top-k), and pasting
the 28x28 mask probabilities into the frame."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...ops.boxes import batched_nms
from .anchors import clip_boxes, decode_boxes

#: box-head delta weights (Faster R-CNN's 10, 10, 5, 5)
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def detections_from_heads(class_logits: Tensor, box_deltas: Tensor, proposals: Tensor, image_size,
                          score_threshold: float, nms_threshold: float, max_detections: int):
    """class_logits (R, C), box_deltas (R, C*4), proposals (R, 4) -> boxes (D, 4), scores (D,), labels (D,)
    int64 in [1, C), sorted by decreasing score, D <= max_detections. Background (class 0) never detects."""
    r, c = class_logits.shape
    probs = torch.softmax(class_logits, -1)[:, 1:]
    boxes = decode_boxes(box_deltas.reshape(r * c, 4), proposals.repeat_interleave(c, 0), BOX_WEIGHTS)
    boxes = clip_boxes(boxes, *image_size).reshape(r, c, 4)[:, 1:].reshape(-1, 4)
    labels = torch.arange(1, c, device=probs.device).repeat(r)
    scores = probs.reshape(-1)
    keep = torch.nonzero(scores > score_threshold).flatten()
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, nms_threshold)[:max_detections]
    return boxes[keep], scores[keep], labels[keep]


def paste_masks(masks: np.ndarray, boxes: np.ndarray, height: int, width: int, threshold: float | None = 0.5):
    """Paste per-box mask probabilities into the frame.

    Args:
        masks: (K, M, M) float probabilities over each box (pixel-centre convention, as RoIAlign aligned).
        boxes: (K, 4) xyxy in frame pixels.
        height, width: frame size.
        threshold: binarise at this probability (None keeps the float probabilities).

    Returns:
        (K, height, width) bool (or float32 when ``threshold`` is None); zero outside each box.
    """
    k, m = masks.shape[0], masks.shape[-1]
    out = np.zeros((k, height, width), dtype=np.float32)
    for i in range(k):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        if not (x2 > x1 and y2 > y1):
            continue
        c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), width)
        r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), height)
        if c1 <= c0 or r1 <= r0:
            continue
        # frame pixel centre -> mask cell coordinate: u = (x + 0.5 - x1) / box width * M - 0.5
        u = (np.arange(c0, c1) + 0.5 - x1) / (x2 - x1) * m - 0.5
        v = (np.arange(r0, r1) + 0.5 - y1) / (y2 - y1) * m - 0.5
        out[i, r0:r1, c0:c1] = _bilinear(masks[i].astype(np.float32), v, u)
    return out if threshold is None else out >= threshold


def _bilinear(image: np.ndarray, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Sample ``image`` (M, M) on the grid rows ``v`` x columns ``u`` with edge clamping -> (len v, len u)."""
    m = image.shape[0]
    v, u = np.clip(v, 0, m - 1), np.clip(u, 0, m - 1)
    v0, u0 = np.floor(v).astype(int), np.floor(u).astype(int)
    v1, u1 = np.minimum(v0 + 1, m - 1), np.minimum(u0 + 1, m - 1)
    fv, fu = (v - v0)[:, None], (u - u0)[None, :]
    top = image[v0][:, u0] * (1 - fu) + image[v0][:, u1] * fu
    bottom = image[v1][:, u0] * (1 - fu) + image[v1][:, u1] * fu
    return top * (1 - fv) + bottom * fv
