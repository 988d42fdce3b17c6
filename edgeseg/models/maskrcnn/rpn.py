"""Region proposal network: a shared conv head over the pyramid, proposals by top-k + NMS, and its targets."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...ops.boxes import batched_nms, box_iou
from .anchors import AnchorGenerator, clip_boxes, decode_boxes, encode_boxes
from .losses import rpn_losses
from .targets import match_boxes, sample_balanced


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 objectness (A per cell) and 1x1 deltas (4A per cell), shared by all levels."""

    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.deltas = nn.Conv2d(channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """features: per level (N, C, h, w) -> objectness (N, sum h*w*A), deltas (N, sum h*w*A, 4)."""
        scores, deltas = [], []
        for x in features:
            t = torch.relu(self.conv(x))
            n, a = x.shape[0], self.objectness.out_channels
            scores.append(self.objectness(t).permute(0, 2, 3, 1).reshape(n, -1))
            d = self.deltas(t).reshape(n, a, 4, x.shape[2], x.shape[3]).permute(0, 3, 4, 1, 2)
            deltas.append(d.reshape(n, -1, 4))
        return torch.cat(scores, 1), torch.cat(deltas, 1)


class RegionProposalNetwork(nn.Module):
    """Proposals per image (P, 4) xyxy from pyramid features; in training also the RPN losses.

    Per level keep the ``pre_nms_top_n`` best anchors, decode and clip them, NMS within each level at
    ``nms_threshold``, then keep the ``post_nms_top_n`` best overall.
    """

    def __init__(self, channels: int, anchors: AnchorGenerator, pre_nms_top_n=(300, 200), post_nms_top_n=(200, 50),
                 nms_threshold: float = 0.7, fg_iou: float = 0.7, bg_iou: float = 0.3, batch_size: int = 128,
                 positive_fraction: float = 0.5):
        super().__init__()
        self.anchors = anchors
        self.head = RPNHead(channels, anchors.num_anchors(0))
        self.pre_nms_top_n, self.post_nms_top_n = pre_nms_top_n, post_nms_top_n
        self.nms_threshold, self.fg_iou, self.bg_iou = nms_threshold, fg_iou, bg_iou
        self.batch_size, self.positive_fraction = batch_size, positive_fraction

    def forward(self, features: list[Tensor], image_size: tuple[int, int], targets=None):
        objectness, deltas = self.head(features)
        anchors_per_level = self.anchors([f.shape[-2:] for f in features], features[0].device, features[0].dtype)
        anchors = torch.cat(anchors_per_level, 0)
        counts = [a.shape[0] for a in anchors_per_level]
        proposals = [self._propose(objectness[i].detach(), deltas[i].detach(), anchors, counts, image_size)
                     for i in range(objectness.shape[0])]
        losses = {}
        if self.training and targets is not None:
            losses = self._losses(objectness, deltas, anchors, targets)
        return proposals, losses

    def _propose(self, scores: Tensor, deltas: Tensor, anchors: Tensor, counts: list[int], image_size) -> Tensor:
        pre_n = self.pre_nms_top_n[0 if self.training else 1]
        post_n = self.post_nms_top_n[0 if self.training else 1]
        picked, levels, start = [], [], 0
        for level, count in enumerate(counts):
            k = min(pre_n, count)
            top = torch.topk(scores[start:start + count], k).indices + start
            picked.append(top)
            levels.append(torch.full((k,), level, dtype=torch.long, device=scores.device))
            start += count
        index, level = torch.cat(picked), torch.cat(levels)
        boxes = clip_boxes(decode_boxes(deltas[index], anchors[index]), *image_size)
        keep = batched_nms(boxes, scores[index], level, self.nms_threshold)[:post_n]
        return boxes[keep]

    def _losses(self, objectness: Tensor, deltas: Tensor, anchors: Tensor, targets) -> dict[str, Tensor]:
        labels, box_targets, sampled_pos, sampled_neg = [], [], [], []
        for i, target in enumerate(targets):
            matched = match_boxes(box_iou(target["boxes"], anchors), self.fg_iou, self.bg_iou,
                                  allow_low_quality=True)
            pos, neg = sample_balanced(matched, self.batch_size, self.positive_fraction)
            sampled_pos.append(pos + i * anchors.shape[0])
            sampled_neg.append(neg + i * anchors.shape[0])
            gt = target["boxes"][matched[pos]]
            box_targets.append(encode_boxes(gt, anchors[pos]))
            labels.append(torch.ones_like(pos, dtype=objectness.dtype))
        pos, neg = torch.cat(sampled_pos), torch.cat(sampled_neg)
        return rpn_losses(objectness.reshape(-1), deltas.reshape(-1, 4), pos, neg, torch.cat(box_targets))
