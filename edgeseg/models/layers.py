"""Small building blocks shared by the encoders and decoders (plain PyTorch, all export-safe)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "hardswish": nn.Hardswish, "none": nn.Identity}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never below 90 % of ``value`` (MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def resize_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear-resize ``x`` (N, C, h, w) to the spatial size of ``like`` (N, *, H, W)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def crop_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop ``x`` (N, C, h, w) to the top-left H x W of ``like`` (h >= H, w >= W), as FCN crops."""
    return x[:, :, : like.shape[-2], : like.shape[-1]]


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation; ``padding`` keeps size / stride."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 groups: int = 1, act: str = "relu"):
        padding = (kernel_size - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            _ACTIVATIONS[act](),
        )


class SqueezeExcite(nn.Module):
    """Channel attention: global mean -> 1x1 reduce -> ReLU -> 1x1 expand -> hard-sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = make_divisible(channels / reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expand -> k x k depthwise (stride or dilation) -> [SE] -> 1x1 project."""

    def __init__(self, in_ch: int, out_ch: int, expand_ch: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, se: bool = False, act: str = "relu"):
        super().__init__()
        layers: list[nn.Module] = []
        if expand_ch != in_ch:
            layers.append(ConvBNAct(in_ch, expand_ch, 1, act=act))
        layers.append(ConvBNAct(expand_ch, expand_ch, kernel_size, stride, dilation, groups=expand_ch, act=act))
        if se:
            layers.append(SqueezeExcite(expand_ch))
        layers.append(ConvBNAct(expand_ch, out_ch, 1, act="none"))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class DeformableConv3x3(nn.Module):
    """3x3 deformable convolution (Dai et al. 2017): a plain conv predicts per-pixel sampling offsets
    (2 x 9 channels, zero-initialised so training starts from a regular grid) for
    :class:`edgeseg.ops.DeformConv2d`. ``modulated=True`` adds the DCNv2 sigmoid mask (9 channels)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1, modulated: bool = False):
        super().__init__()
        from ..ops import (
            DeformConv2d,  # the ops engineer's op; only deformable models need it
        )

        self.modulated = modulated
        k = 3
        self.offset = nn.Conv2d(in_ch, (3 if modulated else 2) * k * k, k, stride, dilation, dilation=dilation)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(in_ch, out_ch, k, stride=stride, padding=dilation, dilation=dilation, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.offset(x)
        if self.modulated:
            offset, mask = offset[:, :18], torch.sigmoid(offset[:, 18:])
            return self.conv(x, offset, mask)
        return self.conv(x, offset)


def init_weights(module: nn.Module, mode: str = "fan_out") -> None:
    """Kaiming-normal convs (ReLU gain), unit BatchNorm. Encoders use ``fan_out`` (as ResNet does);
    heads use ``fan_in`` so that few-channel score convs start with O(1) logits instead of large ones."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and not getattr(m, "_keep_init", False):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def bilinear_upsample_weight(channels: int, kernel_size: int) -> torch.Tensor:
    """ConvTranspose2d weight (C, 1 or C, k, k) that performs bilinear upsampling per channel (FCN init)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt = 1 - (og - center).abs() / factor
    kernel = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = kernel
    return weight


class BilinearDeconv(nn.ConvTranspose2d):
    """Learned 2x upsampling initialised to bilinear interpolation (FCN, GCN). Output is 2h x 2w."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, kernel_size=4, stride=2, padding=1, bias=False)
        with torch.no_grad():
            self.weight.copy_(bilinear_upsample_weight(channels, 4))
        self._keep_init = True
