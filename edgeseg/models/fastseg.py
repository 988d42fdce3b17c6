"""fastseg: the real-time model. MobileNetV3 encoder + Lite R-ASPP decoder (Howard et al. 2019).

LR-ASPP: the stride-16 features (last stage dilated instead of strided) pass a 1x1 conv and are gated
by a squeeze-excite-like branch (global mean -> 1x1 conv -> sigmoid); the gated map is upsampled to
the stride-8 features, and a 1x1 classifier on each is summed. Logits are bilinearly upsampled to the
input size. About 0.2-1 M parameters and a few hundred MFLOPs at 256x256 depending on ``width``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .encoders import MobileNetV3Encoder
from .layers import ConvBNAct, init_weights, resize_to
from .registry import register_model


class LRASPPHead(nn.Module):
    """Lite R-ASPP: (low (N, C_low, H/s, W/s), high (N, C_high, H/16, W/16)) -> (N, classes, H/s, W/s), s = 8
    (or 4, the skip stride)."""

    def __init__(self, low_ch: int, high_ch: int, num_classes: int, head_ch: int = 128):
        super().__init__()
        self.project = ConvBNAct(high_ch, head_ch, 1)
        self.gate = nn.Sequential(nn.Conv2d(high_ch, head_ch, 1), nn.Sigmoid())
        self.classify_high = nn.Conv2d(head_ch, num_classes, 1)
        self.classify_low = nn.Conv2d(low_ch, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        gated = self.project(high) * self.gate(high.mean(dim=(2, 3), keepdim=True))
        return self.classify_low(low) + self.classify_high(resize_to(gated, low))


class FastSeg(nn.Module):
    """MobileNetV3 (output stride 16) + LR-ASPP: ``(N, in_channels, H, W)`` -> logits ``(N, C, H, W)``."""

    def __init__(self, num_classes: int, in_channels: int = 3, variant: str = "small", width: float = 1.0,
                 head_channels: int = 128, skip_stride: int = 8):
        super().__init__()
        if skip_stride not in (4, 8):
            raise InputError(f"fastseg skip_stride: got {skip_stride!r}, expected 8 (the paper's) or 4 (finer edges)")
        self.encoder = MobileNetV3Encoder(in_channels, variant, width, output_stride=16)
        self.low_index = self.encoder.stage_index(skip_stride)
        self.head = LRASPPHead(self.encoder.out_channels[self.low_index], self.encoder.out_channels[-1],
                               num_classes, head_channels)
        init_weights(self.head, mode="fan_in")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        return resize_to(self.head(features[self.low_index], features[-1]), x)


@register_model("fastseg")
def fastseg(num_classes: int, in_channels: int = 3, width: float = 0.75, head_channels: int = 96,
            variant: str = "small", skip_stride: int = 8) -> FastSeg:
    """Real-time MobileNetV3-small + LR-ASPP (~0.6 M params); ``width`` scales the encoder.

    ``skip_stride=4`` takes the low-level skip from stride 4 instead of 8: sharper mask edges for a
    little more compute (useful when a contour is measured, as for head circumference).
    """
    return FastSeg(num_classes, in_channels, variant, width, head_channels, skip_stride)


@register_model("fastseg_small")
def fastseg_small(num_classes: int, in_channels: int = 3, width: float = 0.5, head_channels: int = 64) -> FastSeg:
    """Smallest real-time model: MobileNetV3-small at width 0.5 + LR-ASPP."""
    return FastSeg(num_classes, in_channels, "small", width, head_channels)


@register_model("fastseg_large")
def fastseg_large(num_classes: int, in_channels: int = 3, width: float = 1.0, head_channels: int = 128) -> FastSeg:
    """MobileNetV3-large + LR-ASPP, the paper's accurate real-time configuration (~3 M params)."""
    return FastSeg(num_classes, in_channels, "large", width, head_channels)
