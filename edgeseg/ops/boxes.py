"""Non-maximum suppression with ``torchvision.ops.nms`` semantics, vectorized in PyTorch, exportable.

Greedy NMS visits boxes by decreasing score and drops a box whose IoU with an already-kept box is
greater than ``iou_threshold``. Here it runs without a per-box Python loop: with the boxes sorted by
score and ``over[i, j] = iou(i, j) > t and i < j``, the kept set is the fixed point of
``keep[j] = not any_i(keep[i] and over[i, j])``. Iterating that map from "keep all" fixes one more leading
box per step at worst (box 0 is always kept; once boxes ``< j`` are right, box ``j`` is right), and in
practice converges in a handful of matrix steps. Ties in score keep the lower index first (stable sort).
The math, literally: :mod:`edgeseg.ops.reference.nms`.

Export: ``edgeseg::nms`` is a ``torch.library.custom_op`` with a data-dependent output length; with the
dynamo exporter, pass ``custom_translation_table=edgeseg.ops.onnx_translations.translation_table()`` and it
becomes the standard ONNX ``NonMaxSuppression`` (opset 10+), which ONNX Runtime and TensorRT run natively.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["batched_nms", "box_iou", "nms"]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of boxes a (K, 4) and b (L, 4), xyxy -> (K, L); 0 where the union is empty."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(a.dtype).tiny), torch.zeros_like(inter))


def _greedy_keep(over: Tensor) -> Tensor:
    """Fixed point of ``keep[j] = not any_i(keep[i] & over[i, j])`` for a strictly upper-triangular ``over``."""
    keep = torch.ones(over.shape[0], dtype=torch.bool, device=over.device)
    for _ in range(over.shape[0] + 1):
        new = ~(over & keep[:, None]).any(0)
        if torch.equal(new, keep):
            break
        keep = new
    return keep


@torch.library.custom_op("edgeseg::nms", mutates_args=())
def _nms_op(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """boxes (K, 4), scores (K,) -> int64 kept indices (M,) by decreasing score; validated by :func:`nms`."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    iou = box_iou(sorted_boxes, sorted_boxes)
    upper = torch.ones_like(iou, dtype=torch.bool).triu(1)
    keep = _greedy_keep((iou > iou_threshold) & upper)
    return order[keep]


@_nms_op.register_fake
def _(boxes, scores, iou_threshold):
    count = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((count,), dtype=torch.long)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression (``torchvision.ops.nms`` signature and semantics).

    Args:
        boxes: (K, 4) float boxes ``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2``.
        scores: (K,) float scores.
        iou_threshold: drop a box whose IoU with a higher-scoring kept box is greater than this.

    Returns:
        (M,) int64 indices of the kept boxes, sorted by decreasing score (ties: lower index first).

    Example:
        >>> import torch
        >>> from edgeseg.ops import nms
        >>> boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
        >>> nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
        [0, 2]
    """
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise InputError(f"boxes: got {shape}, expected a Tensor[K, 4] (x1, y1, x2, y2)")
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise InputError(f"scores: got {shape}, expected a Tensor[{boxes.shape[0]}] (one score per box)")
    if not boxes.dtype.is_floating_point:
        raise InputError(f"boxes: got dtype {boxes.dtype}, expected a floating-point tensor")
    return torch.ops.edgeseg.nms(boxes, scores.to(boxes.dtype), float(iou_threshold))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category ``idxs`` (K,) independently (boxes of different categories never overlap).

    Same trick as torchvision: offset each category's boxes by ``idxs * (max coordinate + 1)``.
    Returns (M,) int64 kept indices by decreasing score.
    """
    # no early return on K == 0: torch.export cannot branch on a data-dependent K; the zero keeps max() defined
    offsets = idxs.to(boxes.dtype) * (torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)

