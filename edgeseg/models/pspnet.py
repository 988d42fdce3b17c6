"""PSPNet (Zhao et al. 2017): a dilated encoder (output stride 8) + the pyramid pooling module.

The pyramid pooling module average-pools the last feature map into b x b bins for each pyramid level,
reduces each with a 1x1 conv, upsamples them back and concatenates them with the features, so every
pixel sees global and sub-region context. A 3x3 conv and a 1x1 classifier follow; logits are
bilinearly upsampled to the input size.

Export-safe bins: adaptive pooling with bins that do not divide the feature map exports awkwardly
(ragged windows; a pooling kernel bakes the traced size into the graph). Here each level averages
equal cells through reshape + mean, which keeps height and width dynamic in ONNX, so the feature size
must be a multiple of every bin:
the input side must be a multiple of ``model.input_multiple`` = output_stride x lcm(bins) (64 with
the defaults: output stride 8, bins 1, 2, 4, 8 instead of the paper's 1, 2, 3, 6, so that 256 and 512
inputs work). Other sizes raise :class:`edgeseg.errors.InputError`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from .encoders import create_encoder, encoder_options
from .layers import ConvBNAct, init_weights, resize_to
from .registry import register_model


def bin_pool(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Average (N, C, h, w) over a bins x bins grid of equal cells -> (N, C, bins, bins); bins divides h, w.

    Equal to ``adaptive_avg_pool2d(x, bins)`` then, but written as reshape + mean so that the ONNX graph
    keeps h and w symbolic (a pooling kernel would bake the traced size into the graph).
    """
    n, c, h, w = x.shape
    return x.reshape(n, c, bins, h // bins, bins, w // bins).mean(dim=(3, 5))


class PyramidPooling(nn.Module):
    """(N, C, h, w) -> (N, 2C, h, w): features + one C/len(bins)-channel map per pyramid level."""

    def __init__(self, in_ch: int, bins: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        reduced = in_ch // len(self.bins)
        # No BatchNorm: a 1x1 pooled map would break BatchNorm for batch size 1 in training.
        self.reduce = nn.ModuleList(nn.Sequential(nn.Conv2d(in_ch, reduced, 1), nn.ReLU()) for _ in self.bins)
        self.out_channels = in_ch + reduced * len(self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        levels = [x]
        for b, reduce in zip(self.bins, self.reduce):
            if h % b or w % b:
                raise InputError(f"pspnet feature size: got {h}x{w}, expected multiples of every bin {self.bins}; "
                                 "feed inputs whose sides are multiples of model.input_multiple")
            pooled = bin_pool(x, b)
            levels.append(resize_to(reduce(pooled), x))
        return torch.cat(levels, dim=1)


class PSPNet(nn.Module):
    """``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)``; H, W multiples of ``input_multiple``."""

    def __init__(self, num_classes: int, in_channels: int = 3, encoder: str = "resnet18", output_stride: int = 8,
                 bins: tuple[int, ...] = (1, 2, 4, 8), head_channels: int = 256, dropout: float = 0.1,
                 **encoder_kwargs):
        super().__init__()
        self.encoder = create_encoder(encoder, in_channels, output_stride=output_stride, **encoder_kwargs)
        self.ppm = PyramidPooling(self.encoder.out_channels[-1], bins)
        self.input_multiple = output_stride * math.lcm(*self.ppm.bins)
        self.head = nn.Sequential(ConvBNAct(self.ppm.out_channels, head_channels, 3), nn.Dropout(dropout),
                                  nn.Conv2d(head_channels, num_classes, 1))
        init_weights(self.ppm, mode="fan_in")
        init_weights(self.head, mode="fan_in")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m = self.input_multiple
        if h % m or w % m:
            raise InputError(f"pspnet input size: got {h}x{w}, expected multiples of model.input_multiple={m} "
                             f"(output stride x lcm of bins {self.ppm.bins}), e.g. {-(-h // m) * m}x{-(-w // m) * m}")
        return resize_to(self.head(self.ppm(self.encoder(x)[-1])), x)


@register_model("pspnet")
def pspnet(num_classes: int, in_channels: int = 3, encoder: str = "resnet18", output_stride: int = 8,
           bins: tuple[int, ...] | list[int] = (1, 2, 4, 8), width: float | None = None) -> PSPNet:
    """PSPNet: dilated ResNet-18 (output stride 8) + pyramid pooling (bins 1, 2, 4, 8)."""
    return PSPNet(num_classes, in_channels, encoder, output_stride, tuple(bins), **encoder_options(width))
