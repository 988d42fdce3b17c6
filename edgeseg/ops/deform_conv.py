"""Deformable convolution (DCNv1, and DCNv2 with a modulation mask) as a trainable PyTorch op.

Same signature and semantics as ``torchvision.ops.deform_conv2d`` (torchvision is not a dependency):
offsets are laid out ``(dy, dx)`` per kernel point, per offset group; bilinear sampling reads zero outside
the image; weight groups and offset groups are inferred from the tensor shapes. The math is spelled out
literally in :mod:`edgeseg.ops.reference.deform_conv`.

Implementation (im2col): for every offset group, kernel point and output pixel, the four bilinear corners
are gathered from a flattened input with one extra zero slot (index H*W) that every out-of-image corner
points to; the weighted corners form the (C*K, Ho*Wo) column matrix, which one grouped matmul with the
weight turns into the output. The backward pass is hand-written with the same gathers plus scatter-adds.
Both are registered as ``torch.library.custom_op`` (``edgeseg::deform_conv2d`` and its backward), so
``torch.compile`` and the ONNX exporter see one opaque op (``export/op_translations.py`` maps it to ONNX
``DeformConv``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ..errors import InputError
from ._checks import check_rank, pair

__all__ = ["deform_conv2d", "DeformConv2d"]


# --------------------------------------------------------------------------------------------- sampling
def _sampling_corners(offset: Tensor, height: int, width: int, kh: int, kw: int, offset_groups: int,
                      stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]):
    """Bilinear corners of every sampling point.

    offset (N, 2*G*K, Ho, Wo) -> (index, weight, ly, lx): index is a list of 4 int64 (N, G, K*Ho*Wo) flat
    pixel indices into H*W+1 (H*W = the zero slot), weight the 4 matching bilinear weights, ly/lx the
    fractional parts (N, G, K*Ho*Wo), corners ordered (y0,x0), (y0,x1), (y1,x0), (y1,x1).
    """
    n, _, out_h, out_w = offset.shape
    k = kh * kw
    off = offset.reshape(n, offset_groups, k, 2, out_h, out_w)
    opts = dict(device=offset.device, dtype=offset.dtype)
    ky = (torch.arange(kh, **opts) * dilation[0]).repeat_interleave(kw).view(k, 1, 1)
    kx = (torch.arange(kw, **opts) * dilation[1]).repeat(kh).view(k, 1, 1)
    oy = (torch.arange(out_h, **opts) * stride[0] - padding[0]).view(1, out_h, 1)
    ox = (torch.arange(out_w, **opts) * stride[1] - padding[1]).view(1, 1, out_w)
    y = ((oy + ky) + off[:, :, :, 0]).reshape(n, offset_groups, -1)  # same sum order as torchvision
    x = ((ox + kx) + off[:, :, :, 1]).reshape(n, offset_groups, -1)
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0
    y0, x0 = y0.long(), x0.long()
    zero_slot = height * width
    index, weight = [], []
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            index.append(torch.where(inside, yy * width + xx, zero_slot))
            weight.append(wy * wx)
    return index, weight, ly, lx


def _gather_corners(input: Tensor, index: list[Tensor], offset_groups: int) -> list[Tensor]:
    """input (N, C, H, W) -> 4 corner values (N, G, C/G, K*Ho*Wo) (zero for out-of-image corners)."""
    n, c, h, w = input.shape
    flat = torch.nn.functional.pad(input.reshape(n, offset_groups, c // offset_groups, h * w), (0, 1))
    return [torch.gather(flat, 3, idx.unsqueeze(2).expand(-1, -1, c // offset_groups, -1)) for idx in index]


def _columns(input, offset, mask, kh, kw, offset_groups, stride, padding, dilation):
    """Modulated im2col columns (N, C, K*Ho*Wo) and what the backward pass reuses."""
    n, c, h, w = input.shape
    index, weight, ly, lx = _sampling_corners(offset, h, w, kh, kw, offset_groups, stride, padding, dilation)
    corners = _gather_corners(input, index, offset_groups)
    cols = corners[0] * weight[0].unsqueeze(2)
    for value, wgt in zip(corners[1:], weight[1:]):
        cols.addcmul_(value, wgt.unsqueeze(2))
    if mask is not None:
        cols.mul_(mask.reshape(n, offset_groups, 1, -1))
    return cols.reshape(n, c, -1), (index, weight, ly, lx, corners)


# ------------------------------------------------------------------------------------------- the op
@torch.library.custom_op("edgeseg::deform_conv2d", mutates_args=())
def _deform_conv2d_op(input: Tensor, weight: Tensor, offset: Tensor, bias: Optional[Tensor],
                      mask: Optional[Tensor], stride_h: int, stride_w: int, pad_h: int, pad_w: int,
                      dil_h: int, dil_w: int, groups: int, offset_groups: int) -> Tensor:
    """Arguments in ONNX ``DeformConv`` order (X, W, offset, B, mask); validated by :func:`deform_conv2d`."""
    n, c, _, _ = input.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = offset.shape[2:]
    cols, _ = _columns(input, offset, mask, kh, kw, offset_groups, (stride_h, stride_w), (pad_h, pad_w),
                       (dil_h, dil_w))
    cols = cols.reshape(n, groups, (c // groups) * kh * kw, out_h * out_w)
    out = torch.matmul(weight.reshape(1, groups, out_channels // groups, -1), cols)
    out = out.reshape(n, out_channels, out_h, out_w)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


@_deform_conv2d_op.register_fake
def _(input, weight, offset, bias, mask, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups):
    return input.new_empty((input.shape[0], weight.shape[0], offset.shape[2], offset.shape[3]))


@torch.library.custom_op("edgeseg::deform_conv2d_backward", mutates_args=())
def _deform_conv2d_backward_op(grad: Tensor, input: Tensor, weight: Tensor, offset: Tensor,
                               mask: Optional[Tensor], stride_h: int, stride_w: int, pad_h: int, pad_w: int,
                               dil_h: int, dil_w: int, groups: int,
                               offset_groups: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients (input, weight, offset, bias, mask) of ``edgeseg::deform_conv2d`` for output gradient ``grad``.

    Without a mask the mask gradient is that of an all-ones mask (the caller drops it).
    """
    n, c, h, w = input.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = offset.shape[2:]
    k, g_off = kh * kw, offset_groups
    cols, (index, wgt, ly, lx, corners) = _columns(input, offset, mask, kh, kw, g_off, (stride_h, stride_w),
                                                   (pad_h, pad_w), (dil_h, dil_w))
    grad = grad.reshape(n, groups, out_channels // groups, out_h * out_w)
    cols = cols.reshape(n, groups, (c // groups) * k, out_h * out_w)
    grad_weight = torch.matmul(grad, cols.transpose(-1, -2)).sum(0).reshape(weight.shape)
    grad_bias = grad.sum((0, 3)).reshape(out_channels)
    # d loss / d (unmodulated bilinear sample), per channel: (N, G, C/G, K*L)
    grad_cols = torch.matmul(weight.reshape(1, groups, out_channels // groups, -1).transpose(-1, -2), grad)
    grad_cols = grad_cols.reshape(n, g_off, c // g_off, -1)
    # per-corner sums over the channels of an offset group: (N, G, K*L) each
    s00, s01, s10, s11 = [(grad_cols * value).sum(2) for value in corners]
    grad_mask = wgt[0] * s00 + wgt[1] * s01 + wgt[2] * s10 + wgt[3] * s11
    grad_dy = (1 - lx) * (s10 - s00) + lx * (s11 - s01)
    grad_dx = (1 - ly) * (s01 - s00) + ly * (s11 - s10)
    modulation = torch.ones_like(ly) if mask is None else mask.reshape(n, g_off, -1)
    grad_offset = torch.stack([grad_dy * modulation, grad_dx * modulation], 2)  # (N, G, 2, K*L)
    grad_offset = grad_offset.reshape(n, g_off, 2, k, out_h * out_w).transpose(2, 3).reshape(offset.shape)
    grad_input = input.new_zeros((n, g_off, c // g_off, h * w + 1))
    for idx, corner_weight in zip(index, wgt):
        src = grad_cols * (corner_weight * modulation).unsqueeze(2)
        grad_input.scatter_add_(3, idx.unsqueeze(2).expand(-1, -1, c // g_off, -1), src)
    grad_input = grad_input[..., : h * w].reshape(input.shape)
    return grad_input, grad_weight, grad_offset, grad_bias, grad_mask.reshape(n, g_off * k, out_h, out_w)


@_deform_conv2d_backward_op.register_fake
def _(grad, input, weight, offset, mask, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups):
    kernel_points = weight.shape[2] * weight.shape[3]
    return (torch.empty_like(input), torch.empty_like(weight), torch.empty_like(offset),
            weight.new_empty((weight.shape[0],)),
            offset.new_empty((offset.shape[0], offset_groups * kernel_points, offset.shape[2], offset.shape[3])))


def _setup_context(ctx, inputs, output):
    input, weight, offset, bias, mask, *params = inputs
    ctx.save_for_backward(input, weight, offset, mask)
    ctx.has_bias = bias is not None
    ctx.params = params


def _backward(ctx, grad):
    input, weight, offset, mask = ctx.saved_tensors
    grads = torch.ops.edgeseg.deform_conv2d_backward(grad.contiguous(), input, weight, offset, mask, *ctx.params)
    grad_input, grad_weight, grad_offset, grad_bias, grad_mask = grads
    return (grad_input, grad_weight, grad_offset, grad_bias if ctx.has_bias else None,
            grad_mask if mask is not None else None) + (None,) * len(ctx.params)


_deform_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------------------ public API
def _check_arguments(input, offset, weight, bias, mask, stride, padding, dilation):
    """Validate shapes and return (groups, offset_groups, (out_h, out_w))."""
    check_rank("input", input, 4, "(N, C, H, W)")
    check_rank("weight", weight, 4, "(C_out, C_in / groups, kh, kw)")
    check_rank("offset", offset, 4, "(N, 2 * offset_groups * kh * kw, H_out, W_out)")
    for name, values, least in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1)):
        if min(values) < least:
            raise InputError(f"{name}: got {values}, expected integers >= {least}")
    n, c, h, w = input.shape
    out_channels, c_per_group, kh, kw = weight.shape
    if min(weight.shape) < 1:
        raise InputError(f"weight: got shape {tuple(weight.shape)}, expected positive sizes (C_out, C_in / groups, kh, kw)")
    if c % c_per_group:
        raise InputError(f"weight: got shape {tuple(weight.shape)}, expected weight.shape[1] to divide the "
                         f"{c} input channels (C_in / groups)")
    groups = c // c_per_group
    if out_channels % groups:
        raise InputError(f"weight: got {out_channels} output channels, expected a multiple of groups={groups}")
    k = kh * kw
    offset_groups = offset.shape[1] // (2 * k)
    if offset.shape[1] != 2 * k * offset_groups or offset_groups < 1 or c % offset_groups:
        raise InputError(f"offset: got {offset.shape[1]} channels, expected 2 * offset_groups * kh * kw = "
                         f"2 * G * {k} with offset_groups G dividing the {c} input channels")
    out_h = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise InputError(f"input: got spatial size {(h, w)}, expected at least the dilated kernel "
                         f"{(dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)} after padding {padding}")
    if tuple(offset.shape) != (n, 2 * k * offset_groups, out_h, out_w):
        raise InputError(f"offset: got shape {tuple(offset.shape)}, expected {(n, 2 * k * offset_groups, out_h, out_w)}"
                         " (N, 2 * offset_groups * kh * kw, H_out, W_out)")
    if mask is not None and tuple(mask.shape) != (n, k * offset_groups, out_h, out_w):
        raise InputError(f"mask: got shape {tuple(mask.shape)}, expected {(n, k * offset_groups, out_h, out_w)}"
                         " (N, offset_groups * kh * kw, H_out, W_out)")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise InputError(f"bias: got shape {tuple(bias.shape)}, expected ({out_channels},) (C_out,)")
    for name, t in (("offset", offset), ("weight", weight), ("bias", bias), ("mask", mask)):
        if t is not None and t.dtype != input.dtype:
            raise InputError(f"{name}: got dtype {t.dtype}, expected the input's dtype {input.dtype}")
    if not input.dtype.is_floating_point:
        raise InputError(f"input: got dtype {input.dtype}, expected a floating-point tensor")
    return groups, offset_groups, (out_h, out_w)


def deform_conv2d(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                  stride=(1, 1), padding=(0, 0), dilation=(1, 1), mask: Optional[Tensor] = None) -> Tensor:
    """Deformable convolution with ``torchvision.ops.deform_conv2d`` semantics (DCNv2 when ``mask`` is given).

    Args:
        input: (N, C_in, H, W).
        offset: (N, 2 * offset_groups * kh * kw, H_out, W_out), ``(dy, dx)`` per kernel point.
        weight: (C_out, C_in / groups, kh, kw); groups = C_in / weight.shape[1].
        bias: (C_out,) or None.
        stride, padding, dilation: int or (h, w).
        mask: (N, offset_groups * kh * kw, H_out, W_out) modulation, or None (DCNv1).

    Returns:
        (N, C_out, H_out, W_out).

    Example:
        >>> import torch
        >>> from edgeseg.ops import deform_conv2d
        >>> x, w = torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3)
        >>> offset = torch.zeros(1, 2 * 9, 8, 8)  # zero offsets: a plain 3x3 convolution
        >>> deform_conv2d(x, offset, w, padding=1).shape
        torch.Size([1, 6, 8, 8])
    """
    stride, padding, dilation = pair("stride", stride), pair("padding", padding), pair("dilation", dilation)
    groups, offset_groups, _ = _check_arguments(input, offset, weight, bias, mask, stride, padding, dilation)
    return torch.ops.edgeseg.deform_conv2d(input, weight, offset, bias, mask, *stride, *padding, *dilation,
                                           groups, offset_groups)


class DeformConv2d(nn.Module):
    """Deformable 2-D convolution layer; constructor as ``torchvision.ops.DeformConv2d``.

    ``forward(input (N, C_in, H, W), offset (N, 2*G*kh*kw, H_out, W_out), mask=None) -> (N, C_out, H_out, W_out)``;
    the offset (and mask) usually come from a plain convolution over the same input.

    Example:
        >>> import torch
        >>> layer = DeformConv2d(4, 8, kernel_size=3, padding=1)
        >>> layer(torch.randn(2, 4, 16, 16), torch.zeros(2, 18, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        if in_channels % groups or out_channels % groups or groups < 1:
            raise InputError(f"groups: got {groups}, expected a positive divisor of in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair("kernel_size", kernel_size)
        self.stride, self.padding = pair("stride", stride), pair("padding", padding)
        self.dilation, self.groups = pair("dilation", dilation), groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor, offset: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        return deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")
