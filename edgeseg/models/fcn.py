"""FCN-8s (Long, Shelhamer & Darrell 2015): skip fusion of class scores from strides 32, 16 and 8; and
FCN-32s, the same net without skips (stride-32 scores upsampled x32), the paper's baseline for the skip net.

A 1x1 classifier scores each of the last three encoder stages. The stride-32 scores are upsampled x2
by a learned deconvolution initialised to bilinear, cropped to the stride-16 map and added to its
scores; the sum is upsampled and fused with the stride-8 scores the same way; a final fixed bilinear
x8 upsampling returns logits at the input size (the paper's layout with a ResNet encoder).
"""

from __future__ import annotations

import torch
from torch import nn

from .encoders import create_encoder, encoder_options
from .layers import BilinearDeconv, crop_to, init_weights, resize_to
from .registry import register_model


class FCN8s(nn.Module):
    """``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)``; encoder at output stride 32."""

    def __init__(self, num_classes: int, in_channels: int = 3, encoder: str = "resnet18", **encoder_kwargs):
        super().__init__()
        self.encoder = create_encoder(encoder, in_channels, output_stride=32, **encoder_kwargs)
        idx = [self.encoder.stage_index(s) for s in (8, 16, 32)]
        self.skip_indices = idx
        chans = self.encoder.out_channels
        self.score8, self.score16, self.score32 = (nn.Conv2d(chans[i], num_classes, 1) for i in idx)
        init_weights(nn.ModuleList([self.score8, self.score16, self.score32]), mode="fan_in")
        self.up32 = BilinearDeconv(num_classes)
        self.up16 = BilinearDeconv(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        f8, f16, f32 = (features[i] for i in self.skip_indices)
        s16 = self.score16(f16) + crop_to(self.up32(self.score32(f32)), f16)
        s8 = self.score8(f8) + crop_to(self.up16(s16), f8)
        return resize_to(s8, x)


@register_model("fcn")
def fcn(num_classes: int, in_channels: int = 3, encoder: str = "resnet18", width: float | None = None) -> FCN8s:
    """FCN-8s: scores from strides 32/16/8 fused by learned x2 deconvolutions (ResNet-18 encoder).

    ``width``: the encoder's width (ResNet: first-stage channels, 64; MobileNet: multiplier, 1.0).
    """
    return FCN8s(num_classes, in_channels, encoder, **encoder_options(width))


class FCN32s(nn.Module):
    """``(N, in_channels, H, W)`` -> logits: a 1x1 classifier on the stride-32 features, bilinear x32 (no skips)."""

    def __init__(self, num_classes: int, in_channels: int = 3, encoder: str = "resnet18", **encoder_kwargs):
        super().__init__()
        self.encoder = create_encoder(encoder, in_channels, output_stride=32, **encoder_kwargs)
        self.score32 = nn.Conv2d(self.encoder.out_channels[-1], num_classes, 1)
        init_weights(self.score32, mode="fan_in")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(self.score32(self.encoder(x)[-1]), x)


@register_model("fcn32s")
def fcn32s(num_classes: int, in_channels: int = 3, encoder: str = "resnet18", width: float | None = None) -> FCN32s:
    """FCN-32s: stride-32 scores upsampled x32 bilinearly, no skips (FCN-8s's baseline; ResNet-18 encoder)."""
    return FCN32s(num_classes, in_channels, encoder, **encoder_options(width))
