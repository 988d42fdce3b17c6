"""Encoders shared by the decoders: ResNet-18/34-style and MobileNetV2/V3-style, no pretrained weights.

An encoder maps ``(N, in_channels, H, W)`` to a list of feature maps, one per stage, finest first, and
declares ``out_channels[i]`` and ``strides[i]`` for stage ``i`` so that decoders size themselves. With
``output_stride`` 16 or 8 the last stages keep their resolution and use dilated (atrous) convolutions
instead (DeepLab), so ``strides`` then ends in repeated values, e.g. ``[2, 4, 8, 8, 8]``.

>>> enc = create_encoder("resnet18", in_channels=1, output_stride=8)   # doctest: +SKIP
>>> enc.out_channels, enc.strides                                     # doctest: +SKIP
([64, 64, 128, 256, 512], [2, 4, 8, 8, 8])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..errors import InputError
from .layers import (
    ConvBNAct,
    DeformableConv3x3,
    InvertedResidual,
    init_weights,
    make_divisible,
)

OUTPUT_STRIDES = (8, 16, 32)


class Encoder(nn.Module):
    """Base: ``forward(x) -> list[Tensor]`` with ``out_channels`` and ``strides`` per stage."""

    out_channels: list[int]
    strides: list[int]

    def stage_index(self, stride: int) -> int:
        """Index of the first stage whose output has ``stride`` (e.g. 8 for LR-ASPP's low-level skip)."""
        if stride not in self.strides:
            raise InputError(f"encoder stride: got {stride}, expected one of {sorted(set(self.strides))}")
        return self.strides.index(stride)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class _Dilator:
    """Tracks stride and dilation while stacking stride-2 units; past ``output_stride`` it dilates."""

    def __init__(self, output_stride: int):
        if output_stride not in OUTPUT_STRIDES:
            raise InputError(f"output_stride: got {output_stride!r}, expected one of {OUTPUT_STRIDES}")
        self.output_stride = output_stride
        self.stride = 1
        self.dilation = 1

    def step(self, stride: int) -> tuple[int, int]:
        """Return (stride, dilation) for a unit that asks for ``stride``."""
        if stride == 2 and self.stride >= self.output_stride:
            self.dilation *= 2
            return 1, self.dilation
        self.stride *= stride
        return stride, self.dilation


# --------------------------------------------------------------------------------------------------
# ResNet-18/34 (He et al. 2016), basic blocks.


class BasicBlock(nn.Module):
    """Two 3x3 convs with identity (or 1x1 projection) shortcut; the second conv may be deformable."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1, deformable: bool = False):
        super().__init__()
        self.conv1 = ConvBNAct(in_ch, out_ch, 3, stride, dilation)
        if deformable:
            self.conv2 = nn.Sequential(DeformableConv3x3(out_ch, out_ch, 1, dilation), nn.BatchNorm2d(out_ch))
        else:
            self.conv2 = ConvBNAct(out_ch, out_ch, 3, 1, dilation, act="none")
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetEncoder(Encoder):
    """ResNet-18/34 encoder: stem (7x7/2) at stride 2, then 4 stages at strides 4, 8, 16, 32.

    Args:
        depth: 18 or 34.
        width: channels of the first stage (64 in the paper); later stages double it.
        output_stride: 32, 16 or 8; stages past it are dilated instead of strided.
        deformable_stages: stage numbers 1-4 whose blocks use a deformable second 3x3 conv.
    """

    LAYOUTS: ClassVar[dict[int, tuple[int, ...]]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

    def __init__(self, in_channels: int = 3, depth: int = 18, width: int = 64, output_stride: int = 32,
                 deformable_stages: tuple[int, ...] = ()):
        super().__init__()
        if depth not in self.LAYOUTS:
            raise InputError(f"resnet depth: got {depth!r}, expected one of {sorted(self.LAYOUTS)}")
        bad = [s for s in deformable_stages if s not in (1, 2, 3, 4)]
        if bad:
            raise InputError(f"deformable_stages: got {list(deformable_stages)!r}, expected stage numbers in 1..4")
        dil = _Dilator(output_stride)
        dil.step(2)
        stem = ConvBNAct(in_channels, width, 7, 2)
        self.out_channels, self.strides = [width], [dil.stride]
        stages: list[nn.Module] = [stem]
        in_ch = width
        for i, blocks in enumerate(self.LAYOUTS[depth], start=1):
            out_ch = width * 2 ** (i - 1)
            layers: list[nn.Module] = []
            if i == 1:
                dil.step(2)
                layers.append(nn.MaxPool2d(3, 2, 1))
                stride, dilation = 1, 1
            else:
                stride, dilation = dil.step(2)
            for b in range(blocks):
                layers.append(BasicBlock(in_ch, out_ch, stride if b == 0 else 1, dilation, i in deformable_stages))
                in_ch = out_ch
            stages.append(nn.Sequential(*layers))
            self.out_channels.append(out_ch)
            self.strides.append(dil.stride)
        self.stages = nn.ModuleList(stages)
        init_weights(self)


# --------------------------------------------------------------------------------------------------
# MobileNetV2 (Sandler et al. 2018) and MobileNetV3 (Howard et al. 2019).

# MobileNetV2 rows: expansion t, channels c, repeats n, stride s.
_MOBILENETV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]
# MobileNetV3 rows: kernel, expansion channels, out channels, squeeze-excite, activation, stride.
_MOBILENETV3 = {
    "small": [(3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
              (5, 96, 40, True, "hardswish", 2), (5, 240, 40, True, "hardswish", 1),
              (5, 240, 40, True, "hardswish", 1), (5, 120, 48, True, "hardswish", 1),
              (5, 144, 48, True, "hardswish", 1), (5, 288, 96, True, "hardswish", 2),
              (5, 576, 96, True, "hardswish", 1), (5, 576, 96, True, "hardswish", 1)],
    "large": [(3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
              (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
              (3, 240, 80, False, "hardswish", 2), (3, 200, 80, False, "hardswish", 1),
              (3, 184, 80, False, "hardswish", 1), (3, 184, 80, False, "hardswish", 1),
              (3, 480, 112, True, "hardswish", 1), (3, 672, 112, True, "hardswish", 1),
              (5, 672, 160, True, "hardswish", 2), (5, 960, 160, True, "hardswish", 1),
              (5, 960, 160, True, "hardswish", 1)],
}


class _StagedEncoder(Encoder):
    """Groups a flat list of units into stages: a new stage starts at every unit that downsamples."""

    def _build(self, units: list[tuple[nn.Module, int, int, int]]) -> None:
        """``units``: (module, requested stride, applied stride, out channels); the stem comes first.
        A unit that asked for stride 2 starts a stage even when dilation replaced its stride."""
        stages: list[list[nn.Module]] = []
        self.out_channels, self.strides = [], []
        stride = 1
        for module, requested, applied, out_ch in units:
            stride *= applied
            if requested == 2 or not stages:
                stages.append([])
                self.out_channels.append(out_ch)
                self.strides.append(stride)
            stages[-1].append(module)
            self.out_channels[-1] = out_ch
        self.stages = nn.ModuleList(nn.Sequential(*s) for s in stages)
        init_weights(self)


class MobileNetV2Encoder(_StagedEncoder):
    """MobileNetV2 encoder: inverted residuals with linear bottlenecks; stages at strides 2..32.

    ``width`` multiplies every channel count (1.0 in the paper).
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0, output_stride: int = 32):
        super().__init__()
        dil = _Dilator(output_stride)
        stem_ch = make_divisible(32 * width)
        stride, _ = dil.step(2)
        units = [(ConvBNAct(in_channels, stem_ch, 3, stride), 2, stride, stem_ch)]
        in_ch = stem_ch
        for t, c, n, s in _MOBILENETV2:
            out_ch = make_divisible(c * width)
            for i in range(n):
                requested = s if i == 0 else 1
                stride, dilation = dil.step(requested)
                block = InvertedResidual(in_ch, out_ch, in_ch * t, 3, stride, dilation)
                units.append((block, requested, stride, out_ch))
                in_ch = out_ch
        self._build(units)


class MobileNetV3Encoder(_StagedEncoder):
    """MobileNetV3 encoder (``variant`` "small" or "large"): inverted residuals with squeeze-excite and
    hard-swish, ending in a 1x1 conv to 6x the last block's channels (576 for small at width 1)."""

    def __init__(self, in_channels: int = 3, variant: str = "small", width: float = 1.0, output_stride: int = 32):
        super().__init__()
        if variant not in _MOBILENETV3:
            raise InputError(f"mobilenetv3 variant: got {variant!r}, expected one of {sorted(_MOBILENETV3)}")
        dil = _Dilator(output_stride)
        stem_ch = make_divisible(16 * width)
        stride, _ = dil.step(2)
        units = [(ConvBNAct(in_channels, stem_ch, 3, stride, act="hardswish"), 2, stride, stem_ch)]
        in_ch = stem_ch
        for k, exp, c, se, act, s in _MOBILENETV3[variant]:
            out_ch, exp_ch = make_divisible(c * width), make_divisible(exp * width)
            stride, dilation = dil.step(s)
            units.append((InvertedResidual(in_ch, out_ch, exp_ch, k, stride, dilation, se, act), s, stride, out_ch))
            in_ch = out_ch
        last_ch = 6 * in_ch
        units.append((ConvBNAct(in_ch, last_ch, 1, act="hardswish"), 1, 1, last_ch))
        self._build(units)


ENCODERS = {
    "resnet18": lambda in_channels, **kw: ResNetEncoder(in_channels, depth=18, **kw),
    "resnet34": lambda in_channels, **kw: ResNetEncoder(in_channels, depth=34, **kw),
    "mobilenetv2": lambda in_channels, **kw: MobileNetV2Encoder(in_channels, **kw),
    "mobilenetv3_small": lambda in_channels, **kw: MobileNetV3Encoder(in_channels, "small", **kw),
    "mobilenetv3_large": lambda in_channels, **kw: MobileNetV3Encoder(in_channels, "large", **kw),
}


def create_encoder(name: str, in_channels: int = 3, **kwargs) -> Encoder:
    """Build encoder ``name`` (one of ``ENCODERS``) with options such as ``output_stride``, ``width``."""
    if name not in ENCODERS:
        raise InputError(f"encoder: got {name!r}, expected one of {sorted(ENCODERS)}")
    return ENCODERS[name](in_channels, **kwargs)


def encoder_options(width: float | None = None, **options) -> dict:
    """Encoder keyword arguments from a model factory's options, leaving out the ones left at None."""
    return {k: v for k, v in {"width": width, **options}.items() if v is not None}
