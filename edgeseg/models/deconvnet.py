"""DeconvNet (Noh, Hong & Han 2015): a VGG-16-style encoder whose max-pooling switches drive a mirrored
decoder of unpooling + deconvolution layers.

Each 2x2 max pool stores the argmax position of every window; the decoder's unpooling puts each value
back at exactly that position (zeros elsewhere), recovering the sparse, spatially precise layout that
the pooled encoder threw away, and stacked 3x3 deconvolutions (transposed convs) densify it.
In PyTorch, unpooling scatters into a zero map at the pooling indices; the export (every route) rebuilds
the switches from standard ops instead (:func:`switch_unpool`; no TensorRT parses ``MaxPool`` with an
indices output), choosing the first maximal position of each window as ``max_pool2d`` does, ties
included. Two implementations can still disagree where a window holds values that are equal but for
the last bit of rounding (flat image regions): the switch is a discontinuous choice, so such a window
moves a decoder value (measured: 1 window in 4 HC18 frames at 160x224, 2e-3 in the logits).
The paper's 7x7 fc6/fc7 bottleneck only fits 224x224
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


def _upsample2(t: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, 2h, 2w), each value repeated over its 2x2 window (Expand + Reshape in ONNX)."""
    n, c, h, w = t.shape
    return t[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


def switch_unpool(x: torch.Tensor, before: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """:func:`max_unpool` in standard ops: ``x`` (N, C, h, w) at the max of each 2x2 window of ``before``.

    ``pooled`` is ``before``'s 2x2/2 max pool. A window's positions rank 4, 3, 2, 1 in row-major order;
    ``rank * (before == upsampled max)`` peaks at the first maximal position, which a second max pool
    finds: PyTorch's choice (``max_pool2d`` keeps the first of equal values). An odd last row/column is
    never a switch and stays 0. Standard ops only (Slice, Expand, Equal, Mul, MaxPool, Where, Pad), which
    every TensorRT parses.
    """
    n, c, height, width = before.shape
    h, w = pooled.shape[-2], pooled.shape[-1]
    window = before[:, :, : 2 * h, : 2 * w]
    rank = torch.tensor([[4.0, 3.0], [2.0, 1.0]], dtype=before.dtype, device=before.device)
    rank = rank.view(1, 1, 1, 2, 1, 2).expand(1, 1, h, 2, w, 2).reshape(1, 1, 2 * h, 2 * w)
    score = (window == _upsample2(pooled)).to(before.dtype) * rank
    first = score == _upsample2(F.max_pool2d(score, 2, 2))
    out = torch.where(first, _upsample2(x), torch.zeros((), dtype=x.dtype, device=x.device))
    return F.pad(out, (0, width - 2 * w, 0, height - 2 * h))


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
        exporting = torch.compiler.is_exporting()
        switches = []
        for block in self.down:
            before = block(x)
            x, indices = (F.max_pool2d(before, 2, 2), None) if exporting else max_pool_with_indices(before)
            switches.append((before, x, indices))
        for block, (before, pooled, indices) in zip(self.up, reversed(switches)):
            x = block(switch_unpool(x, before, pooled) if exporting else max_unpool(x, indices, before))
        return self.classifier(x)


@register_model("deconvnet")
def deconvnet(num_classes: int, in_channels: int = 3, width: int = 32) -> DeconvNet:
    """DeconvNet: VGG-16-style encoder, mirrored unpooling (stored switches) + deconvolution decoder."""
    return DeconvNet(num_classes, in_channels, width)
