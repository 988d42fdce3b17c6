"""DeconvNet (Noh, Hong & Han 2015): a VGG-16-style encoder whose max-pooling switches drive a mirrored
decoder of unpooling + deconvolution layers.

Each 2x2 max pool stores the argmax position of every window; the decoder's unpooling puts each value
back at exactly that position (zeros elsewhere), recovering the sparse, spatially precise layout that
the pooled encoder threw away, and stacked 3x3 deconvolutions (transposed convs) densify it.
Unpooling is written as a scatter into a zero map of the pre-pooling size, so it exports to plain
ONNX (ScatterElements) and works for odd sizes. The paper's 7x7 fc6/fc7 bottleneck only fits 224x224
inputs and is left out so that any input size works; ``width`` halves VGG's widths by default (32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNAct, init_weights
from .registry import register_model

# VGG-16: convs per block; channels are width * (1, 2, 4, 8, 8).
_VGG16 = (2, 2, 3, 3, 3)
_MULTIPLIERS = (1, 2, 4, 8, 8)


def max_pool_with_indices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2/2 max pool of (N, C, H, W) -> values (N, C, H//2, W//2) and flat argmax indices into H*W."""
    return F.max_pool2d(x, 2, 2, return_indices=True)


def max_unpool(x: torch.Tensor, indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`max_pool_with_indices`: (N, C, h, w) -> (N, C, H, W) of ``like``, zeros elsewhere."""
    n, c = x.shape[0], x.shape[1]
    out = x.new_zeros(n, c, like.shape[-2] * like.shape[-1])
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(n, c, like.shape[-2], like.shape[-1])


class Deconv(nn.Sequential):
    """3x3 "deconvolution" (transposed conv, stride 1) -> BatchNorm -> ReLU, as in the paper's decoder."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.ConvTranspose2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU())


class DeconvNet(nn.Module):
    """``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)`` (any H, W >= 32)."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32):
        super().__init__()
        chans = [width * m for m in _MULTIPLIERS]
        self.down = nn.ModuleList()
        in_ch = in_channels
        for convs, ch in zip(_VGG16, chans):
            self.down.append(nn.Sequential(*[ConvBNAct(in_ch if i == 0 else ch, ch, 3) for i in range(convs)]))
            in_ch = ch
        self.up = nn.ModuleList()
        outs = chans[-2::-1] + [chans[0]]  # mirror: each decoder block ends at the previous block's width
        for convs, ch, out_ch in zip(_VGG16[::-1], chans[::-1], outs):
            self.up.append(nn.Sequential(*[Deconv(ch, ch if i < convs - 1 else out_ch) for i in range(convs)]))
        self.classifier = nn.Conv2d(chans[0], num_classes, 1)
        init_weights(self)
        init_weights(self.classifier, mode="fan_in")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        switches = []
        for block in self.down:
            x = block(x)
            pooled, indices = max_pool_with_indices(x)
            switches.append((indices, x))
            x = pooled
        for block, (indices, before) in zip(self.up, reversed(switches)):
            x = block(max_unpool(x, indices, before))
        return self.classifier(x)


@register_model("deconvnet")
def deconvnet(num_classes: int, in_channels: int = 3, width: int = 32) -> DeconvNet:
    """DeconvNet: VGG-16-style encoder, mirrored unpooling (stored switches) + deconvolution decoder."""
    return DeconvNet(num_classes, in_channels, width)
