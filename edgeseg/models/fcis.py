"""FCIS: fully convolutional instance segmentation with position-sensitive inside/outside maps (``fcis``).

One 1x1 conv on the finest pyramid level (stride 8) gives 2 x C x k x k score maps: for every class c and
every cell (i, j) of a k x k grid over an RoI, an *inside* and an *outside* map. Per RoI the maps are
assembled by position (output pixel (u, v) reads the maps of the cell it falls in), then per pixel
mask = softmax(inside, outside)[inside] and the class logit is the mean over pixels of max(inside, outside).
A sibling 4 x k x k map, assembled the same way and averaged, regresses the box. No per-RoI conv head.

Encoder, FPN and RPN are the Mask R-CNN's (this class subclasses :class:`MaskRCNN` and replaces its two RoI
heads), so training, the export wrappers (:mod:`.maskrcnn.export`, RoiAlign + NMS inside the graph) and
:class:`~edgeseg.instances.segmenter.InstanceSegmenter` serve both. Masks come out (D, M, M) with
M = ``mask_size`` (28) over each box, as Mask R-CNN's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.roi import roi_align_op
from .maskrcnn.heads import _pool, _rois
from .maskrcnn.losses import box_losses
from .maskrcnn.model import MaskRCNN
from .maskrcnn.postprocess import detections_from_heads
from .registry import register_model


def cell_index(k: int, size: int) -> Tensor:
    """(size, size) int64: the grid cell i * k + j that output pixel (u, v) of a size x size RoI falls in."""
    cells = torch.arange(size) * k // size
    return cells[:, None] * k + cells[None, :]


def assemble(pooled: Tensor, k: int) -> Tensor:
    """Position-sensitive assembly: pooled (R, G * k * k, M, M) maps (group-major, cell-minor channels) pooled
    over each RoI -> (R, G, M, M), pixel (u, v) of group g taken from channel g * k * k + cell(u, v)."""
    r, ch, m, _ = pooled.shape
    index = cell_index(k, m).to(pooled.device).expand(r, ch // (k * k), 1, m, m)
    return torch.gather(pooled.reshape(r, ch // (k * k), k * k, m, m), 2, index)[:, :, 0]


class PositionSensitiveHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 convs to 2 * C * k * k inside/outside maps and 4 * k * k box maps.

    ``maps(feature)`` runs the convs once per image; ``forward(maps, rois (R, 5), size)`` assembles them per
    RoI on a size x size grid -> inside (R, C, size, size), outside (R, C, size, size) logits, class logits
    (R, C) = mean over the grid of max(inside, outside), and box deltas (R, 4) (cell-assembled, averaged).
    """

    def __init__(self, channels: int, num_classes: int, stride: int, k: int = 7, mask_size: int = 28):
        super().__init__()
        self.k, self.mask_size, self.num_classes, self.scale = k, mask_size, num_classes, 1.0 / stride
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.scores = nn.Conv2d(channels, 2 * num_classes * k * k, 1)
        self.boxes = nn.Conv2d(channels, 4 * k * k, 1)
        nn.init.normal_(self.scores.weight, std=0.01)
        nn.init.normal_(self.boxes.weight, std=0.001)
        nn.init.zeros_(self.scores.bias)
        nn.init.zeros_(self.boxes.bias)

    def maps(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        x = F.relu(self.conv(feature))
        return self.scores(x), self.boxes(x)

    def forward(self, maps: tuple[Tensor, Tensor], rois: Tensor, size: int):
        c = self.num_classes
        # one bilinear sample per output pixel: at stride 8 a pixel of a 28 x 28 RoI grid is below one cell
        pooled = roi_align_op(maps[0], rois.to(maps[0].dtype), self.scale, size, size, 1, True)
        assembled = assemble(pooled, self.k)                                                # (R, 2C, s, s)
        inside, outside = assembled[:, :c], assembled[:, c:]
        class_logits = torch.maximum(inside, outside).mean((2, 3))
        deltas = assemble(_pool(maps[1], rois, self.k, self.scale), self.k).mean((2, 3))
        return inside, outside, class_logits, deltas


class FCIS(MaskRCNN):
    """Mask R-CNN's encoder, FPN and RPN with the FCIS position-sensitive head in place of the RoI heads.

    Same interface as :class:`MaskRCNN`: training returns the losses (RPN, classification, box, mask),
    eval per image ``boxes`` (D, 4), ``scores``, ``labels`` and ``masks`` (D, M, M) inside probabilities.
    Classification votes on a 2k x 2k grid per RoI (cheaper than the M x M mask grid, same cells).
    """

    def __init__(self, num_classes: int, in_channels: int = 1, k: int = 7, mask_size: int = 28,
                 roi_batch: int = 64, **kwargs):
        super().__init__(num_classes, in_channels, roi_batch=roi_batch, **kwargs)
        del self.box_head, self.mask_head
        self.ps_head = PositionSensitiveHead(self.fpn.smooth[0].out_channels, num_classes, stride=8, k=k,
                                             mask_size=mask_size)

    def _classify(self, maps, rois: Tensor):
        _, _, class_logits, deltas = self.ps_head(maps, rois, 2 * self.ps_head.k)
        return class_logits, deltas.repeat(1, self.num_classes)  # class-agnostic boxes, one copy per class

    def detect(self, feature: Tensor, proposals: Tensor, size) -> dict[str, Tensor]:
        """One image: feature (1, C, h, w), proposals (P, 4) -> boxes, scores, labels, masks (D, M, M)."""
        maps = self.ps_head.maps(feature)
        class_logits, deltas = self._classify(maps, _rois([proposals]))
        boxes, scores, labels = detections_from_heads(class_logits, deltas, proposals, size, self.score_threshold,
                                                      self.nms_threshold, self.max_detections)
        inside, outside, _, _ = self.ps_head(maps, _rois([boxes]), self.ps_head.mask_size)  # on the final boxes
        pick = torch.arange(labels.shape[0], device=labels.device)
        return {"boxes": boxes, "scores": scores, "labels": labels,
                "masks": torch.sigmoid(inside[pick, labels] - outside[pick, labels])}  # softmax(in, out)[in]

    def _head_losses(self, feature: Tensor, proposals: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        m_size = self.ps_head.mask_size
        rois, labels, box_targets, mask_rois, lab, mask_goals = self._sample_rois(feature, proposals, targets, m_size)
        maps = self.ps_head.maps(feature)
        class_logits, deltas = self._classify(maps, rois)
        losses = box_losses(class_logits, deltas, labels, box_targets)
        if lab.numel():
            inside, outside, _, _ = self.ps_head(maps, mask_rois, m_size)
            pick = torch.arange(lab.numel(), device=lab.device)
            logit = inside[pick, lab] - outside[pick, lab]  # 2-way softmax(in, out) == sigmoid(in - out)
            losses["mask"] = F.binary_cross_entropy_with_logits(logit, mask_goals)
        else:
            losses["mask"] = maps[0].sum() * 0
        return losses


@register_model("fcis")
def fcis(num_classes: int, in_channels: int = 3, encoder: str = "mobilenetv3_small", width: float = 0.75,
         channels: int = 64, k: int = 7, max_detections: int = 20, score_threshold: float = 0.05) -> FCIS:
    """FCIS (position-sensitive inside/outside maps, k x k cells) on Mask R-CNN's encoder, FPN and RPN."""
    return FCIS(num_classes, in_channels, k=k, encoder=encoder, width=width, channels=channels,
                max_detections=max_detections, score_threshold=score_threshold)
