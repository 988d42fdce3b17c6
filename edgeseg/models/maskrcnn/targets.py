"""Training targets: IoU matching of anchors/proposals to ground truth, balanced sampling, mask targets."""

from __future__ import annotations

import torch
from torch import Tensor

from ...ops.roi import roi_align

#: matched index for a box below the low IoU threshold (background)
BELOW_LOW = -1
#: matched index for a box between the thresholds (ignored by the loss)
BETWEEN = -2


def match_boxes(iou: Tensor, high: float, low: float, allow_low_quality: bool = False) -> Tensor:
    """For each column of ``iou`` (G ground truths, A boxes) the best ground-truth index, or a sentinel.

    Returns (A,) int64: ``>= 0`` matched ground truth when IoU >= ``high``; :data:`BELOW_LOW` when
    IoU < ``low``; :data:`BETWEEN` otherwise. ``allow_low_quality`` also matches, for every ground truth,
    the boxes that reach its highest IoU (so each ground truth gets at least one positive, as in the RPN).
    """
    if iou.shape[0] == 0:
        return torch.full((iou.shape[1],), BELOW_LOW, dtype=torch.long, device=iou.device)
    best, index = iou.max(0)
    matched = index.clone()
    matched[best < high] = BETWEEN
    matched[best < low] = BELOW_LOW
    if allow_low_quality:
        best_per_gt = iou.max(1, keepdim=True).values
        _, cols = torch.nonzero((iou == best_per_gt) & (best_per_gt > 0), as_tuple=True)
        matched[cols] = index[cols]
    return matched


def sample_balanced(matched: Tensor, batch_size: int, positive_fraction: float,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random positive (matched >= 0) and negative (matched == BELOW_LOW) indices, at most ``batch_size``
    in all and at most ``positive_fraction`` of them positive; returns (pos (P,), neg (Q,)) int64."""
    pos = torch.nonzero(matched >= 0).flatten()
    neg = torch.nonzero(matched == BELOW_LOW).flatten()
    n_pos = min(pos.numel(), int(batch_size * positive_fraction))
    n_neg = min(neg.numel(), batch_size - n_pos)
    pos = pos[torch.randperm(pos.numel(), generator=generator)[:n_pos].to(pos.device)]
    neg = neg[torch.randperm(neg.numel(), generator=generator)[:n_neg].to(neg.device)]
    return pos, neg


def mask_targets(gt_masks: Tensor, gt_index: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Binary (P, size, size) float targets: each ground-truth mask ``gt_masks[gt_index[p]]`` (G, H, W)
    cropped to ``boxes[p]`` (P, 4) xyxy and resampled by RoIAlign (aligned), thresholded at 0.5."""
    if boxes.shape[0] == 0:
        return boxes.new_zeros((0, size, size))
    rois = torch.cat([gt_index.to(boxes.dtype)[:, None], boxes], 1)
    crops = roi_align(gt_masks[:, None].to(boxes.dtype), rois, size, 1.0, 2, aligned=True)
    return (crops[:, 0] >= 0.5).to(boxes.dtype)
