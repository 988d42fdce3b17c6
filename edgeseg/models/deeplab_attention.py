"""DeepLab with attention to scale (Chen, Yang, Wang, Xu & Yuille 2016, "Attention to Scale").

One shared DeepLab network (the same weights) runs on the input resized to each scale (default 1,
0.75, 0.5). Its features and scores are resized to the scale-1 feature grid; a small attention model
(3x3 conv -> ReLU -> 1x1 conv) reads the concatenated features and gives S per-pixel weights, softmaxed
across scales, so each pixel chooses its own mix of scales. The fused score is the attention-weighted
sum of the per-scale scores, upsampled to the input size.

:meth:`DeepLabAttention.forward_all` also returns each scale's logits, for the paper's extra per-scale
supervision during training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .deeplabv3 import DeepLabV3
from .encoders import encoder_options
from .layers import init_weights, resize_to
from .registry import register_model


class ScaleAttention(nn.Module):
    """(N, S * C, h, w) concatenated per-scale features -> (N, S, h, w) weights summing to 1 over S."""

    def __init__(self, in_ch: int, num_scales: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_ch, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, num_scales, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


class DeepLabAttention(nn.Module):
    """``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)`` fused over ``scales``."""

    def __init__(self, num_classes: int, in_channels: int = 3, scales: tuple[float, ...] = (1.0, 0.75, 0.5),
                 encoder: str = "resnet18", output_stride: int = 16, aspp_channels: int = 256, **encoder_kwargs):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        if len(self.scales) < 2 or self.scales[0] != 1.0 or any(not 0 < s <= 1 for s in self.scales):
            raise InputError(f"deeplab_attention scales: got {list(scales)!r}, expected 1.0 first, then at least "
                             "one more scale in (0, 1]")
        self.shared = DeepLabV3(num_classes, in_channels, encoder, output_stride, aspp_channels, **encoder_kwargs)
        self.attention = ScaleAttention(aspp_channels * len(self.scales), len(self.scales))
        init_weights(self.attention, mode="fan_in")

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Fused logits (N, C, H, W) and each scale's logits (N, C, H, W), scale 1 first."""
        feats, scores = [], []
        for s in self.scales:
            xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
            f, score = self.shared.features(xs)
            feats.append(f)
            scores.append(score)
        ref = feats[0]
        feats = [ref] + [resize_to(f, ref) for f in feats[1:]]
        scores = [scores[0]] + [resize_to(sc, ref) for sc in scores[1:]]
        weights = self.attention(torch.cat(feats, dim=1))  # (N, S, h, w)
        fused = sum(weights[:, i : i + 1] * sc for i, sc in enumerate(scores))
        return resize_to(fused, x), [resize_to(sc, x) for sc in scores]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]


@register_model("deeplab_attention")
def deeplab_attention(num_classes: int, in_channels: int = 3, scales: tuple[float, ...] | list[float] = (1.0, 0.75, 0.5),
                      encoder: str = "resnet18", output_stride: int = 16, width: float | None = None,
                      aspp_channels: int = 256) -> DeepLabAttention:
    """One shared DeepLabv3 at scales 1, 0.75, 0.5 fused by learned per-pixel softmax attention over scales."""
    return DeepLabAttention(num_classes, in_channels, tuple(scales), encoder, output_stride, aspp_channels,
                            **encoder_options(width))
