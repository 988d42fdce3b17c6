"""The light feature pyramid and the RoI heads (box: 7x7 RoIAlign -> 2 FC; mask: 14x14 -> 4 conv -> 28x28).

Every RoI pools from one pyramid level, the finest (stride 8), which already holds the top-down context:
one RoIAlign per head, no per-level routing, so the exported graph holds exactly two ``RoiAlign`` nodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.ops.roi import roi_align_op


class FPN(nn.Module):
    """Feature pyramid: 1x1 laterals on the encoder stages, top-down nearest upsample + add, 3x3 smoothing.

    ``forward(stages: list (N, C_i, H/s_i, W/s_i)) -> list (N, channels, H/s_i, W/s_i)``, same order, plus one
    extra stride-2 max-pooled level on top when ``extra_level``.
    """

    def __init__(self, in_channels: list[int], channels: int, extra_level: bool = False):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        self.extra_level = extra_level

    def forward(self, stages: list[Tensor]) -> list[Tensor]:
        x = self.lateral[-1](stages[-1])
        outs = [self.smooth[-1](x)]
        for i in range(len(stages) - 2, -1, -1):
            x = self.lateral[i](stages[i]) + F.interpolate(x, size=stages[i].shape[-2:], mode="nearest")
            outs.insert(0, self.smooth[i](x))
        if self.extra_level:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs


def _pool(feature: Tensor, rois: Tensor, size: int, scale: float) -> Tensor:
    """Aligned RoIAlign, 2x2 samples per bin: feature (N, C, h, w), rois (R, 5) -> (R, C, size, size).

    Calls the registered op directly: the public ``roi_align`` wrapper's eager-only batch-index check
    evaluates ``rois.shape[0]`` first, which torch.export cannot guard on when R is data-dependent (after NMS).
    """
    return roi_align_op(feature, rois.to(feature.dtype), float(scale), size, size, 2, True)


def _rois(boxes: list[Tensor]) -> Tensor:
    """Per-image boxes list of (K_i, 4) -> (sum K_i, 5) rows (image index, x1, y1, x2, y2)."""
    return torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(boxes)], 0)


class BoxHead(nn.Module):
    """RoIAlign 7x7 -> FC -> FC -> class logits (R, num_classes) and per-class deltas (R, num_classes * 4)."""

    def __init__(self, channels: int, num_classes: int, stride: int, hidden: int = 256, pool: int = 7):
        super().__init__()
        self.pool, self.scale = pool, 1.0 / stride
        self.fc1 = nn.Linear(channels * pool * pool, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.cls_score = nn.Linear(hidden, num_classes)
        self.bbox_pred = nn.Linear(hidden, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, feature: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
        """feature (N, C, h, w), rois (R, 5) in image pixels -> (R, num_classes), (R, num_classes * 4)."""
        x = _pool(feature, rois, self.pool, self.scale).flatten(1)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        return self.cls_score(x), self.bbox_pred(x)


class MaskHead(nn.Module):
    """RoIAlign 14x14 -> 4 x (3x3 conv, ReLU) -> 2x2 deconv (28x28), ReLU -> 1x1 conv: (R, num_classes, 28, 28)."""

    def __init__(self, channels: int, num_classes: int, stride: int, hidden: int = 64, pool: int = 14):
        super().__init__()
        self.pool, self.scale = pool, 1.0 / stride
        layers, c = [], channels
        for _ in range(4):
            layers += [nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(inplace=True)]
            c = hidden
        self.convs = nn.Sequential(*layers)
        self.upsample = nn.ConvTranspose2d(hidden, hidden, 2, stride=2)
        self.logits = nn.Conv2d(hidden, num_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, feature: Tensor, rois: Tensor) -> Tensor:
        """feature (N, C, h, w), rois (R, 5) -> mask logits (R, num_classes, 2*pool, 2*pool)."""
        x = _pool(feature, rois, self.pool, self.scale)
        return self.logits(F.relu(self.upsample(self.convs(x))))
