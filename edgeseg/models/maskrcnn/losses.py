"""Mask R-CNN losses: RPN objectness/box, box-head classification/regression, per-class mask BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: smooth-L1 transition (torchvision's 1/9): nearly L1 for the box deltas
SMOOTH_L1_BETA = 1.0 / 9


def rpn_losses(objectness: Tensor, deltas: Tensor, pos: Tensor, neg: Tensor, box_targets: Tensor) -> dict[str, Tensor]:
    """objectness (A,) logits and deltas (A, 4) over all anchors of the batch; ``pos``/``neg`` sampled
    anchor indices; ``box_targets`` (P, 4) encoded deltas for ``pos``. Both losses are averaged over
    the sampled anchors (P + Q)."""
    sampled = torch.cat([pos, neg])
    labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).to(objectness.dtype)
    count = max(sampled.numel(), 1)
    loss_obj = F.binary_cross_entropy_with_logits(objectness[sampled], labels, reduction="sum") / count
    loss_box = F.smooth_l1_loss(deltas[pos], box_targets, beta=SMOOTH_L1_BETA, reduction="sum") / count
    return {"rpn_objectness": loss_obj, "rpn_box": loss_box}


def box_losses(class_logits: Tensor, box_deltas: Tensor, labels: Tensor, box_targets: Tensor) -> dict[str, Tensor]:
    """class_logits (R, C) with class 0 = background, box_deltas (R, C*4), labels (R,) int64 in [0, C),
    box_targets (R, 4) encoded deltas (used where labels > 0). Cross-entropy averaged over R; smooth-L1
    on the labelled class's deltas, summed over positives and divided by R."""
    loss_cls = F.cross_entropy(class_logits, labels)
    pos = torch.nonzero(labels > 0).flatten()
    deltas = box_deltas.reshape(box_deltas.shape[0], -1, 4)[pos, labels[pos]]
    loss_box = F.smooth_l1_loss(deltas, box_targets[pos], beta=SMOOTH_L1_BETA, reduction="sum")
    return {"box_classifier": loss_cls, "box_regression": loss_box / max(labels.numel(), 1)}


def mask_loss(mask_logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """mask_logits (P, C, M, M), labels (P,) the class of each positive RoI, targets (P, M, M) in {0, 1}:
    per-pixel BCE on the channel of each RoI's own class (Mask R-CNN's per-class masks)."""
    if labels.numel() == 0:
        return mask_logits.sum() * 0
    logits = mask_logits[torch.arange(labels.numel(), device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(logits, targets)
