"""DeepLabv3 (Chen et al. 2017): a dilated encoder (output stride 16 or 8) + ASPP with image pooling.

ASPP runs parallel branches on the last feature map: a 1x1 conv, three 3x3 atrous convs (rates 6, 12,
18 at output stride 16; doubled at 8) and image-level pooling (global mean -> 1x1 conv, broadcast back),
concatenated and projected; a 3x3 conv and a 1x1 classifier follow, and logits are bilinearly upsampled
to the input size. ``deeplabv3_dcn`` swaps deformable convolutions (Dai et al. 2017) into the last
encoder stage(s).
"""

from __future__ import annotations

import torch
from torch import nn

from .encoders import create_encoder, encoder_options
from .layers import ConvBNAct, init_weights, resize_to
from .registry import register_model


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: (N, in_ch, h, w) -> (N, out_ch, h, w)."""

    def __init__(self, in_ch: int, out_ch: int = 256, rates: tuple[int, ...] = (6, 12, 18), dropout: float = 0.1):
        super().__init__()
        self.branches = nn.ModuleList([ConvBNAct(in_ch, out_ch, 1)] +
                                      [ConvBNAct(in_ch, out_ch, 3, dilation=r) for r in rates])
        # Image pooling. No BatchNorm on the 1x1 pooled map: it would fail for batch size 1 in training.
        self.image_pool = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.ReLU())
        self.project = nn.Sequential(ConvBNAct(out_ch * (len(rates) + 2), out_ch, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3(nn.Module):
    """``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)``.

    ``features(x)`` returns the decoder features ``(N, 256, H/os, W/os)`` and low-resolution logits,
    which :mod:`edgeseg.models.deeplab_attention` reuses across scales.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, encoder: str = "resnet18", output_stride: int = 16,
                 aspp_channels: int = 256, **encoder_kwargs):
        super().__init__()
        self.encoder = create_encoder(encoder, in_channels, output_stride=output_stride, **encoder_kwargs)
        rates = tuple(r * 16 // output_stride for r in (6, 12, 18))
        self.aspp = ASPP(self.encoder.out_channels[-1], aspp_channels, rates)
        self.head = ConvBNAct(aspp_channels, aspp_channels, 3)
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)
        init_weights(self.aspp, mode="fan_in")
        init_weights(self.head, mode="fan_in")

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.head(self.aspp(self.encoder(x)[-1]))
        return feat, self.classifier(feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(self.features(x)[1], x)


@register_model("deeplabv3")
def deeplabv3(num_classes: int, in_channels: int = 3, encoder: str = "resnet18", output_stride: int = 16,
              width: float | None = None, aspp_channels: int = 256) -> DeepLabV3:
    """DeepLabv3: dilated ResNet-18 (output stride 16) + ASPP with image pooling."""
    return DeepLabV3(num_classes, in_channels, encoder, output_stride, aspp_channels, **encoder_options(width))


@register_model("deeplabv3_dcn")
def deeplabv3_dcn(num_classes: int, in_channels: int = 3, encoder: str = "resnet18", output_stride: int = 16,
                  width: float | None = None, aspp_channels: int = 256,
                  deformable_stages: tuple[int, ...] | list[int] = (4,)) -> DeepLabV3:
    """DeepLabv3 whose last ResNet stage uses deformable 3x3 convolutions (edgeseg.ops.DeformConv2d)."""
    options = encoder_options(width, deformable_stages=tuple(deformable_stages))
    return DeepLabV3(num_classes, in_channels, encoder, output_stride, aspp_channels, **options)
