"""Anchors on a feature pyramid, and the box <-> delta encoding of Faster R-CNN.

Anchor order matches the RPN head's flattened outputs: for each level, rows ``(y, x, a)`` with ``a`` fastest,
so ``head_output.permute(0, 2, 3, 1).reshape(N, -1)`` lines up with ``anchors[level]``. Anchor centres sit
at pixel-cell centres ``((x + 0.5) * stride, (y + 0.5) * stride)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import InputError

#: deltas dw, dh are clamped to this before exp (Detectron's log(1000 / 16)) so a bad delta cannot overflow
BBOX_CLAMP = math.log(1000.0 / 16)


class AnchorGenerator:
    """Per-level anchors: ``sizes[level]`` (pixels, sqrt of the area) x ``ratios`` (height / width).

    >>> gen = AnchorGenerator(sizes=((32,), (64, 128)), ratios=(0.5, 1.0, 2.0), strides=(8, 16))
    >>> [a.shape for a in gen([(4, 4), (2, 2)])]
    [torch.Size([48, 4]), torch.Size([24, 4])]
    """

    def __init__(self, sizes=((32,), (64,), (128, 256)), ratios=(0.5, 1.0, 2.0), strides=(8, 16, 32)):
        if len(sizes) != len(strides):
            raise InputError(f"anchor sizes: got {len(sizes)} levels, expected one per stride ({len(strides)})")
        self.sizes = tuple(tuple(float(s) for s in level) for level in sizes)
        self.ratios = tuple(float(r) for r in ratios)
        self.strides = tuple(int(s) for s in strides)

    def num_anchors(self, level: int) -> int:
        """Anchors per feature-map cell at ``level``."""
        return len(self.sizes[level]) * len(self.ratios)

    def cell_anchors(self, level: int) -> Tensor:
        """(A, 4) anchors centred on 0, xyxy."""
        rows = []
        for size in self.sizes[level]:
            for ratio in self.ratios:
                w, h = size / math.sqrt(ratio), size * math.sqrt(ratio)
                rows.append([-w / 2, -h / 2, w / 2, h / 2])
        return torch.tensor(rows, dtype=torch.float32)

    def __call__(self, shapes, device=None, dtype=torch.float32) -> list[Tensor]:
        """shapes: (h, w) per level -> list of (h * w * A, 4) anchors per level, xyxy image pixels."""
        out = []
        for level, (h, w) in enumerate(shapes):
            stride = self.strides[level]
            ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * stride
            xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * stride
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            centres = torch.stack([cx, cy, cx, cy], -1).reshape(-1, 1, 4)
            out.append((centres + self.cell_anchors(level).to(device=device, dtype=dtype)).reshape(-1, 4))
        return out


def encode_boxes(boxes: Tensor, anchors: Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Deltas (K, 4) = (dx, dy, dw, dh) that turn ``anchors`` (K, 4) into ``boxes`` (K, 4), both xyxy."""
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    bx, by = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
    return torch.stack([wx * (bx - ax) / aw, wy * (by - ay) / ah,
                        ww * torch.log(bw / aw), wh * torch.log(bh / ah)], 1)


def decode_boxes(deltas: Tensor, anchors: Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Inverse of :func:`encode_boxes`: deltas (K, 4) applied to anchors (K, 4) -> boxes (K, 4) xyxy."""
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw = (deltas[:, 2] / ww).clamp(max=BBOX_CLAMP)
    dh = (deltas[:, 3] / wh).clamp(max=BBOX_CLAMP)
    cx, cy = dx * aw + ax, dy * ah + ay
    w, h = torch.exp(dw) * aw, torch.exp(dh) * ah
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 1)


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """Clamp xyxy boxes (K, 4) to the image ``[0, width] x [0, height]``."""
    x = boxes[:, 0::2].clamp(min=0, max=width)
    y = boxes[:, 1::2].clamp(min=0, max=height)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1)
