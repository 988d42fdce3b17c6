"""Deformable convolution (DCNv1, and DCNv2 with a modulation mask) as a trainable PyTorch op.

Same signature and semantics as ``torchvision.ops.deform_conv2d`` (torchvision is not a dependency):
offsets are laid out ``(dy, dx)`` per kernel point, per offset group; bilinear sampling reads zero outside
the image; weight groups and offset groups are inferred from the tensor shapes. The math is spelled out
literally in :mod:`edgeseg.ops.reference.deform_conv`.

Implementation (im2col, channels last): the input becomes a row matrix (N*(H*W+1), C) with one zero row
per image that every out-of-image corner points to. For every offset group, output pixel and kernel point
the four bilinear corners are whole rows picked with ``index_select`` (contiguous copies of C values),
weighted (bilinear weight times mask) and summed into the (N*Ho*Wo, K*C) column matrix, which one
grouped matmul with the weight turns into the output. The backward pass is hand-written with the same
gathers plus ``index_add_`` of rows (the transpose of the gather). Output pixels are processed in chunks
of about 2^20 column elements so the gathered rows stay in cache; Python loops run over those chunks,
the offset groups and the four corners only, never over pixels.

Both are registered as ``torch.library.custom_op`` (``edgeseg::deform_conv2d`` and its backward), so
``torch.compile`` and the ONNX exporter see one opaque op (``edgeseg.ops.onnx_translations`` maps it to ONNX
``DeformConv``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import InputError
from ._checks import check_rank, pair
from .routes import decomposed_exporting

__all__ = ["DeformConv2d", "deform_conv2d", "deform_conv2d_grid_sample"]


# --------------------------------------------------------------------------------------------- sampling
_CHUNK_ELEMENTS = 1 << 20  # column-matrix elements per chunk of output pixels: keeps the gathers in cache


def _sampling_corners(offset: Tensor, mask: Tensor | None, height: int, width: int, kh: int, kw: int,
                      offset_groups: int, stride: tuple[int, int], padding: tuple[int, int],
                      dilation: tuple[int, int]):
    """Bilinear corners of every sampling point, ordered (N*Ho*Wo, G, K = kh*kw).

    Returns (index, weight, ly, lx, modulation): ``index`` 4 int64 tensors of row indices into the
    channels-last input with a zero row per image (N*(H*W+1) rows; out-of-image corners point to the zero
    row); ``weight`` the 4 bilinear weights times the modulation; ``ly``/``lx`` the fractional parts; corners
    ordered (y0,x0), (y0,x1), (y1,x0), (y1,x1).
    """
    n, _, out_h, out_w = offset.shape
    k = kh * kw
    off = offset.reshape(n, offset_groups, k, 2, out_h, out_w)
    opts = {"device": offset.device, "dtype": offset.dtype}
    ky = (torch.arange(kh, **opts) * dilation[0]).repeat_interleave(kw).view(k, 1, 1)
    kx = (torch.arange(kw, **opts) * dilation[1]).repeat(kh).view(k, 1, 1)
    oy = (torch.arange(out_h, **opts) * stride[0] - padding[0]).view(1, out_h, 1)
    ox = (torch.arange(out_w, **opts) * stride[1] - padding[1]).view(1, 1, out_w)

    def rows_first(t: Tensor) -> Tensor:  # (N, G, K, Ho, Wo) -> (N*Ho*Wo, G, K)
        return t.reshape(n, offset_groups, k, -1).permute(0, 3, 1, 2).reshape(-1, offset_groups, k)

    # the same sum order as torchvision ((base + kernel tap) + offset), so float32 rounds alike
    y = rows_first((oy + ky) + off[:, :, :, 0])
    x = rows_first((ox + kx) + off[:, :, :, 1])
    modulation = None if mask is None else rows_first(mask)
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0
    y0, x0 = y0.long(), x0.long()
    image = torch.arange(n, device=offset.device).repeat_interleave(out_h * out_w).view(-1, 1, 1)
    first_row = image * (height * width + 1)
    zero_row = first_row + height * width
    index, weight = [], []
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            index.append(torch.where(inside, first_row + yy * width + xx, zero_row))
            weight.append(wy * wx if modulation is None else wy * wx * modulation)
    return index, weight, ly, lx, modulation


def _channels_last_groups(input: Tensor, offset_groups: int) -> list[Tensor]:
    """input (N, C, H, W) -> per offset group a (N*(H*W+1), C/G) row matrix, one zero row per image."""
    n, c, h, w = input.shape
    rows = torch.nn.functional.pad(input.reshape(n, c, h * w), (0, 1)).transpose(1, 2)  # (N, HW+1, C)
    rows = rows.reshape(n * (h * w + 1), offset_groups, c // offset_groups)
    return [rows[:, g].contiguous() for g in range(offset_groups)]


def _corner_values(rows: list[Tensor], index: list[Tensor], chunk: slice) -> list[list[Tensor]]:
    """Per offset group, the 4 corner rows of the chunk's sampling points: (R*K, C/G) each, rows (r, k)."""
    return [[rows[g].index_select(0, idx[chunk, g].reshape(-1)) for idx in index] for g in range(len(rows))]


def _columns(values: list[list[Tensor]], weight: list[Tensor], chunk: slice) -> Tensor:
    """Modulated bilinear samples of a chunk of R output pixels as im2col rows (R, K*C), columns (k, c)."""
    per_group = []
    for g, corners in enumerate(values):
        cols = corners[0] * weight[0][chunk, g].reshape(-1, 1)
        for value, wgt in zip(corners[1:], weight[1:]):
            cols.addcmul_(value, wgt[chunk, g].reshape(-1, 1))
        per_group.append(cols)  # (R*K, C/G)
    cols = per_group[0] if len(per_group) == 1 else torch.stack(per_group, 1)
    return cols.reshape(weight[0][chunk].shape[0], -1)


def _grouped_weight(weight: Tensor, groups: int) -> Tensor:
    """(C_out, C_in/groups, kh, kw) -> (groups, K * C_in/groups, C_out/groups), rows ordered (k, c)."""
    out_channels, c_per_group, kh, kw = weight.shape
    w = weight.reshape(groups, out_channels // groups, c_per_group, kh * kw)
    return w.permute(0, 3, 2, 1).reshape(groups, kh * kw * c_per_group, out_channels // groups)


def _per_weight_group(cols: Tensor, groups: int, k: int) -> Tensor:
    """(R, K*C) -> (groups, R, K*C/groups)."""
    if groups == 1:
        return cols.unsqueeze(0)
    return cols.reshape(cols.shape[0], k, groups, -1).permute(2, 0, 1, 3).reshape(groups, cols.shape[0], -1)


def _chunks(rows: int, k: int, c: int):
    step = max(1, _CHUNK_ELEMENTS // (k * c))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


# ------------------------------------------------------------------------------------------- the op
@torch.library.custom_op("edgeseg::deform_conv2d", mutates_args=())
def _deform_conv2d_op(input: Tensor, weight: Tensor, offset: Tensor, bias: Tensor | None,
                      mask: Tensor | None, stride_h: int, stride_w: int, pad_h: int, pad_w: int,
                      dil_h: int, dil_w: int, groups: int, offset_groups: int) -> Tensor:
    """Arguments in ONNX ``DeformConv`` order (X, W, offset, B, mask); validated by :func:`deform_conv2d`."""
    n, c, h, w = input.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = offset.shape[2:]
    k = kh * kw
    index, wgt, _, _, _ = _sampling_corners(offset, mask, h, w, kh, kw, offset_groups, (stride_h, stride_w),
                                            (pad_h, pad_w), (dil_h, dil_w))
    rows = _channels_last_groups(input, offset_groups)
    weight_g = _grouped_weight(weight, groups)
    out = input.new_empty((n * out_h * out_w, out_channels))
    for chunk in _chunks(out.shape[0], k, c):
        cols = _columns(_corner_values(rows, index, chunk), wgt, chunk)
        part = torch.bmm(_per_weight_group(cols, groups, k), weight_g)  # (G, R, C_out/G)
        out[chunk] = part.permute(1, 0, 2).reshape(-1, out_channels)
    if bias is not None:
        out += bias
    return out.reshape(n, out_h, out_w, out_channels).permute(0, 3, 1, 2).contiguous()


@_deform_conv2d_op.register_fake
def _(input, weight, offset, bias, mask, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups):
    return input.new_empty((input.shape[0], weight.shape[0], offset.shape[2], offset.shape[3]))


@torch.library.custom_op("edgeseg::deform_conv2d_backward", mutates_args=())
def _deform_conv2d_backward_op(grad: Tensor, input: Tensor, weight: Tensor, offset: Tensor,
                               mask: Tensor | None, stride_h: int, stride_w: int, pad_h: int, pad_w: int,
                               dil_h: int, dil_w: int, groups: int,
                               offset_groups: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients (input, weight, offset, bias, mask) of ``edgeseg::deform_conv2d`` for output gradient ``grad``.

    Without a mask the mask gradient is that of an all-ones mask (the caller drops it).
    """
    n, c, h, w = input.shape
    out_channels, c_per_group, kh, kw = weight.shape
    out_h, out_w = offset.shape[2:]
    k, g_off = kh * kw, offset_groups
    index, wgt, ly, lx, modulation = _sampling_corners(offset, mask, h, w, kh, kw, g_off, (stride_h, stride_w),
                                                       (pad_h, pad_w), (dil_h, dil_w))
    rows = _channels_last_groups(input, g_off)
    weight_g = _grouped_weight(weight, groups)
    grad_rows = grad.permute(0, 2, 3, 1).reshape(-1, groups, out_channels // groups).transpose(0, 1)  # (G, NL, Co/G)
    grad_weight = torch.zeros_like(weight_g)
    grad_input = [torch.zeros_like(r) for r in rows]
    corner_sums = torch.empty((4,) + ly.shape, dtype=ly.dtype, device=ly.device)  # grad . corner value per point
    for chunk in _chunks(ly.shape[0], k, c):
        values = _corner_values(rows, index, chunk)
        cols = _per_weight_group(_columns(values, wgt, chunk), groups, k)  # (G, R, K*C/G)
        grad_weight += torch.bmm(cols.transpose(1, 2), grad_rows[:, chunk])
        # d loss / d (modulated sample): (G, R, K*C/G) -> rows (r, k), columns c -> per offset group
        grad_cols = torch.bmm(grad_rows[:, chunk], weight_g.transpose(1, 2))
        grad_cols = grad_cols.reshape(groups, -1, k, c_per_group).permute(1, 2, 0, 3).reshape(-1, g_off, c // g_off)
        for g in range(g_off):
            grad_g = grad_cols[:, g]
            for corner, (idx, value) in enumerate(zip(index, values[g])):
                corner_sums[corner, chunk, g] = (grad_g * value).sum(1).view(-1, k)
                grad_input[g].index_add_(0, idx[chunk, g].reshape(-1), grad_g * wgt[corner][chunk, g].reshape(-1, 1))
    s00, s01, s10, s11 = corner_sums.unbind(0)
    grad_mask = (1 - ly) * (1 - lx) * s00 + (1 - ly) * lx * s01 + ly * (1 - lx) * s10 + ly * lx * s11
    grad_dy = (1 - lx) * (s10 - s00) + lx * (s11 - s01)
    grad_dx = (1 - ly) * (s01 - s00) + ly * (s11 - s10)
    if modulation is not None:
        grad_dy, grad_dx = grad_dy * modulation, grad_dx * modulation
    # (N*L, G, K) -> (N, G, K, [2,] Ho, Wo)
    grad_offset = torch.stack([grad_dy, grad_dx], 3).reshape(n, out_h * out_w, g_off, k, 2)
    grad_offset = grad_offset.permute(0, 2, 3, 4, 1).reshape(offset.shape)
    grad_mask = grad_mask.reshape(n, out_h * out_w, g_off * k).transpose(1, 2).reshape(n, g_off * k, out_h, out_w)
    grad_input = torch.stack(grad_input, 1).reshape(n, h * w + 1, c)[:, : h * w]
    grad_input = grad_input.transpose(1, 2).reshape(input.shape)
    grad_weight = grad_weight.reshape(groups, k, c_per_group, -1).permute(0, 3, 2, 1).reshape(weight.shape)
    return grad_input, grad_weight, grad_offset, grad.sum((0, 2, 3)), grad_mask


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


def deform_conv2d(input: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None,
                  stride=(1, 1), padding=(0, 0), dilation=(1, 1), mask: Tensor | None = None) -> Tensor:
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
    if decomposed_exporting():  # standard ONNX ops for TensorRT-RTX / TensorRT 8.x (edgeseg.ops.routes)
        return deform_conv2d_grid_sample(input, weight, offset, bias, mask, stride, padding, dilation,
                                         groups, offset_groups)
    return torch.ops.edgeseg.deform_conv2d(input, weight, offset, bias, mask, *stride, *padding, *dilation,
                                           groups, offset_groups)


def deform_conv2d_grid_sample(input: Tensor, weight: Tensor, offset: Tensor, bias: Tensor | None,
                              mask: Tensor | None, stride: tuple[int, int], padding: tuple[int, int],
                              dilation: tuple[int, int], groups: int, offset_groups: int) -> Tensor:
    """The same deformable convolution in standard ops: one ``GridSample`` over every kernel tap, then a conv.

    The sampling grid of all taps is stacked along the height, (N*G, K*Ho, Wo, 2), so one bilinear
    ``GridSample`` (zeros padding, ``align_corners=False``: pixel ``x`` is ``(2x + 1) / W - 1``) reads
    every tap; a corner outside the image reads 0, exactly as deformable convolution. The samples, times
    the mask, become (N, C*K, Ho, Wo) columns, and a grouped 1x1 ``Conv`` with the weight reshaped to
    (C_out, C_in/groups * K) sums them. Arguments as :func:`deform_conv2d`, already validated.
    """
    n, c, h, w = input.shape
    out_channels, c_per_group, kh, kw = weight.shape
    out_h, out_w = offset.shape[2], offset.shape[3]
    k, g = kh * kw, offset_groups
    opts = {"device": input.device, "dtype": input.dtype}
    ky = torch.tensor([i * dilation[0] for i in range(kh) for _ in range(kw)], **opts).view(1, k, 1, 1)
    kx = torch.tensor([j * dilation[1] for _ in range(kh) for j in range(kw)], **opts).view(1, k, 1, 1)
    oy = (torch.arange(out_h, **opts) * stride[0] - padding[0]).view(1, 1, -1, 1)
    ox = (torch.arange(out_w, **opts) * stride[1] - padding[1]).view(1, 1, 1, -1)
    off = offset.reshape(n * g, k, 2, out_h, out_w)
    y = (oy + ky) + off[:, :, 0]  # (N*G, K, Ho, Wo), the sum order of deform_conv2d
    x = (ox + kx) + off[:, :, 1]
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], -1).reshape(n * g, k * out_h, out_w, 2)
    cols = torch.nn.functional.grid_sample(input.reshape(n * g, c // g, h, w), grid, mode="bilinear",
                                           padding_mode="zeros", align_corners=False)
    cols = cols.reshape(n * g, c // g, k, out_h, out_w)
    if mask is not None:
        cols = cols * mask.reshape(n * g, 1, k, out_h, out_w)
    cols = cols.reshape(n, c * k, out_h, out_w)  # channels (c, k): weight group i reads a contiguous block
    return torch.nn.functional.conv2d(cols, weight.reshape(out_channels, c_per_group * k, 1, 1), bias, groups=groups)


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

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        return deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")
