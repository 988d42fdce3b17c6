"""A light Mask R-CNN: MobileNet encoder + small FPN, RPN, RoIAlign box head and per-class mask head.

``num_classes`` counts the background (class 0), as in torchvision: one "head" class is ``num_classes=2``.

    >>> from edgeseg.models import create_model
    >>> model = create_model("maskrcnn", num_classes=2, in_channels=1).eval()   # doctest: +SKIP
    >>> out = model(torch.zeros(1, 1, 256, 256))                                # doctest: +SKIP
    >>> out[0]["boxes"].shape, out[0]["masks"].shape                            # doctest: +SKIP
    (torch.Size([D, 4]), torch.Size([D, 28, 28]))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import InputError
from ...ops.boxes import box_iou
from ..encoders import create_encoder
from ..registry import register_model
from .anchors import AnchorGenerator, encode_boxes
from .heads import FPN, BoxHead, MaskHead, _rois
from .losses import box_losses, mask_loss
from .postprocess import BOX_WEIGHTS, detections_from_heads
from .rpn import RegionProposalNetwork
from .targets import mask_targets, match_boxes, sample_balanced


class MaskRCNN(nn.Module):
    """``forward(images (N, C, H, W), targets=None)``.

    Training (``targets``: per image a dict with ``boxes`` (G, 4) xyxy float, ``labels`` (G,) int64 in
    [1, num_classes), ``masks`` (G, H, W) {0, 1}) returns a dict of scalar losses. Eval returns per image a
    dict with ``boxes`` (D, 4), ``scores`` (D,), ``labels`` (D,) and ``masks`` (D, 28, 28) foreground
    probabilities of each detection's class over its box (paste with ``postprocess.paste_masks``).
    """

    def __init__(self, num_classes: int, in_channels: int = 1, encoder: str = "mobilenetv3_small",
                 width: float = 0.75, channels: int = 64, anchor_sizes=((32,), (64, 96), (128, 192, 256)),
                 score_threshold: float = 0.05, nms_threshold: float = 0.5, max_detections: int = 20,
                 roi_batch: int = 128, roi_positive_fraction: float = 0.25, max_mask_rois: int = 32):
        super().__init__()
        if num_classes < 2:
            raise InputError(f"num_classes: got {num_classes}, expected >= 2 (background + at least one class)")
        self.encoder = create_encoder(encoder, in_channels, width=width)
        levels = [self.encoder.stage_index(s) for s in (8, 16, 32)]
        self.levels = levels
        self.fpn = FPN([self.encoder.out_channels[i] for i in levels], channels)
        ratios = (0.5, 1.0, 2.0)
        if len({len(s) for s in anchor_sizes}) != 1:
            # one RPN head is shared by the levels, so every level needs the same anchor count: pad by repeating
            most = max(len(s) for s in anchor_sizes)
            anchor_sizes = tuple(tuple(s) + (s[-1],) * (most - len(s)) for s in anchor_sizes)
        self.rpn = RegionProposalNetwork(channels, AnchorGenerator(anchor_sizes, ratios, (8, 16, 32)))
        self.box_head = BoxHead(channels, num_classes, stride=8)
        self.mask_head = MaskHead(channels, num_classes, stride=8)
        self.num_classes = num_classes
        self.score_threshold, self.nms_threshold, self.max_detections = score_threshold, nms_threshold, max_detections
        self.roi_batch, self.roi_positive_fraction, self.max_mask_rois = roi_batch, roi_positive_fraction, max_mask_rois

    def features(self, images: Tensor) -> list[Tensor]:
        """images (N, C, H, W) -> pyramid (N, channels, H/s, W/s) for s = 8, 16, 32."""
        stages = self.encoder(images)
        return self.fpn([stages[i] for i in self.levels])

    def forward(self, images: Tensor, targets: list[dict] | None = None):
        if images.dim() != 4:
            raise InputError(f"images: got shape {tuple(images.shape)}, expected (N, C, H, W)")
        if self.training and targets is None:
            raise InputError("targets: got None in training mode, expected one dict per image (boxes, labels, masks)")
        size = (int(images.shape[-2]), int(images.shape[-1]))
        pyramid = self.features(images)
        proposals, losses = self.rpn(pyramid, size, targets if self.training else None)
        if self.training:
            losses.update(self._head_losses(pyramid[0], proposals, targets))
            return losses
        return [self.detect(pyramid[0][i:i + 1], proposals[i], size) for i in range(images.shape[0])]

    def detect(self, feature: Tensor, proposals: Tensor, size) -> dict[str, Tensor]:
        """One image: feature (1, C, h, w), proposals (P, 4) -> boxes, scores, labels, masks (D, 28, 28)."""
        class_logits, deltas = self.box_head(feature, _rois([proposals]))
        boxes, scores, labels = detections_from_heads(class_logits, deltas, proposals, size, self.score_threshold,
                                                      self.nms_threshold, self.max_detections)
        logits = self.mask_head(feature, _rois([boxes]))
        masks = torch.sigmoid(logits[torch.arange(labels.shape[0], device=labels.device), labels])
        return {"boxes": boxes, "scores": scores, "labels": labels, "masks": masks}

    def _head_losses(self, feature: Tensor, proposals: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        rois, labels, box_targets, mask_rois, mask_labels, mask_goals = self._sample_rois(
            feature, proposals, targets, 2 * self.mask_head.pool)
        class_logits, deltas = self.box_head(feature, rois)
        losses = box_losses(class_logits, deltas, labels, box_targets)
        mask_logits = self.mask_head(feature, mask_rois)
        losses["mask"] = mask_loss(mask_logits, mask_labels, mask_goals)
        return losses

    def _sample_rois(self, feature: Tensor, proposals: list[Tensor], targets: list[dict],
                     mask_size: int) -> tuple[Tensor, ...]:
        """Training RoIs per image (proposals + ground truth, balanced positives/negatives): box RoIs, their
        labels and regression targets, then the mask RoIs (positives, at most ``max_mask_rois``), their labels
        and ``mask_size`` mask targets; each concatenated over the batch."""
        rois, labels, box_targets, mask_rois, mask_labels, mask_goals = [], [], [], [], [], []
        for i, (props, target) in enumerate(zip(proposals, targets)):
            gt_boxes = target["boxes"].to(feature.dtype)
            props = torch.cat([props, gt_boxes], 0)
            matched = match_boxes(box_iou(gt_boxes, props), 0.5, 0.5)
            pos, neg = sample_balanced(matched, self.roi_batch, self.roi_positive_fraction)
            picked = torch.cat([pos, neg])
            gt_index = matched[pos]
            goal = torch.zeros(picked.numel(), 4, dtype=feature.dtype, device=feature.device)
            goal[: pos.numel()] = encode_boxes(gt_boxes[gt_index], props[pos], BOX_WEIGHTS)
            rois.append(torch.cat([torch.full_like(props[picked, :1], i), props[picked]], 1))
            labels.append(torch.cat([target["labels"][gt_index], torch.zeros_like(neg)]))
            box_targets.append(goal)
            m = pos[: self.max_mask_rois]
            mask_rois.append(torch.cat([torch.full_like(props[m, :1], i), props[m]], 1))
            mask_labels.append(target["labels"][matched[m]])
            mask_goals.append(mask_targets(target["masks"], matched[m], props[m], mask_size))
        return tuple(torch.cat(parts) for parts in (rois, labels, box_targets, mask_rois, mask_labels, mask_goals))


@register_model("maskrcnn")
def maskrcnn(num_classes: int, in_channels: int = 3, encoder: str = "mobilenetv3_small", width: float = 0.75,
             channels: int = 64, max_detections: int = 20, score_threshold: float = 0.05) -> MaskRCNN:
    """Light Mask R-CNN (MobileNetV3 + FPN, RPN, RoIAlign box and 28x28 mask heads); instance output."""
    return MaskRCNN(num_classes, in_channels, encoder=encoder, width=width, channels=channels,
                    max_detections=max_detections, score_threshold=score_threshold)
