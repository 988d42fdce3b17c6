"""RoIAlign (Mask R-CNN) as a trainable PyTorch op with ``torchvision.ops.roi_align`` semantics.

Half-pixel convention: with ``aligned=True`` a box coordinate ``x`` maps to the continuous feature-map
coordinate ``x * spatial_scale - 0.5``, so a box from 0 to W covers the pixel centres exactly; with
``aligned=False`` (the legacy Detectron behaviour) there is no shift and RoIs smaller than one pixel are
stretched to 1x1. Each output bin averages a ``grid_h x grid_w`` grid of bilinear samples, where
``sampling_ratio <= 0`` picks ``ceil(roi size / output size)`` per RoI. The math, literally:
:mod:`edgeseg.ops.reference.roi_align`.

Implementation: RoIAlign is linear in the input, ``out = S @ X`` with ``X`` the input as an
(N*H*W, C) matrix and ``S`` a sparse (K*ph*pw, N*H*W) matrix holding, for every output bin, the bilinear
weights of all its samples divided by the sample count. ``S`` is built in one vectorized pass: the
samples of all RoIs are enumerated with ``repeat_interleave`` (each RoI gets exactly its own
grid_h*grid_w samples per bin, so differing adaptive sampling ratios need no padding and no loop), and
its rows come out sorted, so it is assembled directly as CSR. The input gradient is ``S^T @ grad``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..errors import InputError
from ._checks import check_rank, pair
from .routes import decomposed_exporting

__all__ = ["RoIAlign", "roi_align", "roi_align_grid_sample", "roi_align_op"]


def _sample_grid(rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float, sampling_ratio: int,
                 aligned: bool):
    """Every sample of every bin of every RoI, flattened: (bin row, batch index, y, x, 1/count), each (S,)."""
    shift = 0.5 if aligned else 0.0
    start_x = rois[:, 1] * spatial_scale - shift
    start_y = rois[:, 2] * spatial_scale - shift
    roi_w = rois[:, 3] * spatial_scale - shift - start_x
    roi_h = rois[:, 4] * spatial_scale - shift - start_y
    if not aligned:  # legacy: force malformed RoIs to 1x1
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
    if sampling_ratio > 0:
        grid_h = torch.full_like(roi_h, sampling_ratio, dtype=torch.long)
        grid_w = grid_h
    else:  # a negative size (aligned, flipped box) gives an empty grid and a zero output, as torchvision
        grid_h = torch.ceil(roi_h / pooled_h).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / pooled_w).long().clamp(min=0)
    per_bin = grid_h * grid_w
    per_roi = per_bin * (pooled_h * pooled_w)
    roi = torch.repeat_interleave(torch.arange(rois.shape[0], device=rois.device), per_roi)
    local = torch.arange(roi.shape[0], device=rois.device) - (torch.cumsum(per_roi, 0) - per_roi)[roi]
    bin_index, sample = local // per_bin[roi], local % per_bin[roi]
    i, j = bin_index // pooled_w, bin_index % pooled_w
    iy, ix = sample // grid_w[roi], sample % grid_w[roi]
    dtype = rois.dtype
    gh, gw = grid_h[roi].to(dtype), grid_w[roi].to(dtype)
    # the same operation order as torchvision, so float32 results agree to rounding
    y = start_y[roi] + i.to(dtype) * bin_h[roi] + (iy.to(dtype) + 0.5) * bin_h[roi] / gh
    x = start_x[roi] + j.to(dtype) * bin_w[roi] + (ix.to(dtype) + 0.5) * bin_w[roi] / gw
    scale = 1.0 / per_bin[roi].clamp(min=1).to(dtype)
    return roi * (pooled_h * pooled_w) + bin_index, rois[roi, 0].long(), y, x, scale


def _clamped_taps(coord: Tensor, size: int):
    """Border-clamped bilinear taps along one axis: (inside, low index, high index, low weight, high weight)."""
    inside = (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0.0)
    low = coord.long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    frac = torch.where(low >= size - 1, torch.zeros_like(coord), coord - low.to(coord.dtype))
    return inside, low, high, 1 - frac, frac


def _sampling_matrix(rois: Tensor, n: int, height: int, width: int, pooled_h: int, pooled_w: int,
                     spatial_scale: float, sampling_ratio: int, aligned: bool, transpose: bool = False) -> Tensor:
    """Sparse CSR S (K*ph*pw, N*H*W) with ``roi_align(input) = S @ input-as-(N*H*W, C)``; or S^T."""
    row, batch, y, x, scale = _sample_grid(rois, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned)
    inside_y, y0, y1, wy0, wy1 = _clamped_taps(y, height)
    inside_x, x0, x1, wx0, wx1 = _clamped_taps(x, width)
    scale = scale * (inside_y & inside_x).to(scale.dtype)
    base = batch * (height * width)
    cols = torch.stack([base + y0 * width + x0, base + y0 * width + x1,
                        base + y1 * width + x0, base + y1 * width + x1], 1).reshape(-1)
    vals = torch.stack([wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1], 1).mul_(scale.unsqueeze(1)).reshape(-1)
    rows = row.repeat_interleave(4)
    shape = (rois.shape[0] * pooled_h * pooled_w, n * height * width)
    if transpose:
        order = torch.argsort(cols, stable=True)
        rows, cols, vals, shape = cols[order], rows[order], vals[order], shape[::-1]
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=rois.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta" is not news to the caller
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, vals, shape, check_invariants=False)


# ------------------------------------------------------------------------------------------- the op
@torch.library.custom_op("edgeseg::roi_align", mutates_args=())
def _roi_align_op(input: Tensor, rois: Tensor, spatial_scale: float, pooled_h: int, pooled_w: int,
                  sampling_ratio: int, aligned: bool) -> Tensor:
    """input (N, C, H, W), rois (K, 5) -> (K, C, pooled_h, pooled_w); validated by :func:`roi_align`."""
    n, c, h, w = input.shape
    k = rois.shape[0]
    if k == 0:
        return input.new_zeros((0, c, pooled_h, pooled_w))
    matrix = _sampling_matrix(rois, n, h, w, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned)
    flat = input.permute(0, 2, 3, 1).reshape(n * h * w, c)
    return (matrix @ flat).reshape(k, pooled_h, pooled_w, c).permute(0, 3, 1, 2).contiguous()


@_roi_align_op.register_fake
def _(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned):
    return input.new_empty((rois.shape[0], input.shape[1], pooled_h, pooled_w))


@torch.library.custom_op("edgeseg::roi_align_backward", mutates_args=())
def _roi_align_backward_op(grad: Tensor, rois: Tensor, n: int, c: int, h: int, w: int, spatial_scale: float,
                           pooled_h: int, pooled_w: int, sampling_ratio: int, aligned: bool) -> Tensor:
    """Input gradient (N, C, H, W) of ``edgeseg::roi_align`` for output gradient ``grad`` (K, C, ph, pw)."""
    if rois.shape[0] == 0:
        return grad.new_zeros((n, c, h, w))
    matrix_t = _sampling_matrix(rois, n, h, w, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned,
                                transpose=True)
    flat = grad.permute(0, 2, 3, 1).reshape(-1, c)
    return (matrix_t @ flat).reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()


@_roi_align_backward_op.register_fake
def _(grad, rois, n, c, h, w, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned):
    return grad.new_empty((n, c, h, w))


def _setup_context(ctx, inputs, output):
    input, rois, *params = inputs
    ctx.save_for_backward(rois)
    ctx.input_shape = tuple(input.shape)
    ctx.params = params


def _backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    grad_input = torch.ops.edgeseg.roi_align_backward(grad.contiguous(), rois, *ctx.input_shape, *ctx.params)
    return (grad_input, None) + (None,) * len(ctx.params)


_roi_align_op.register_autograd(_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------------------ public API
def _rois_from_boxes(boxes: Tensor | list | tuple, input: Tensor) -> Tensor:
    """Tensor[K, 5] as is, or a list of Tensor[L, 4] per image -> Tensor[K, 5] (first column: image index)."""
    if isinstance(boxes, (list, tuple)):
        for index, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise InputError(f"boxes[{index}]: got {shape}, expected a Tensor[L, 4] (x1, y1, x2, y2) per image")
        if len(boxes) > input.shape[0]:
            raise InputError(f"boxes: got a list of {len(boxes)} box tensors, expected at most one per image "
                             f"(input has N={input.shape[0]})")
        parts = [torch.cat([torch.full_like(b[:, :1], index, dtype=input.dtype), b.to(input.dtype)], 1)
                 for index, b in enumerate(boxes)]
        return torch.cat(parts, 0) if parts else input.new_zeros((0, 5))
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 5:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise InputError(f"boxes: got {shape}, expected a Tensor[K, 5] (batch index, x1, y1, x2, y2) "
                         "or a list of Tensor[L, 4]")
    return boxes.to(input.dtype)


def roi_align(input: Tensor, boxes: Tensor | list[Tensor], output_size, spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign with ``torchvision.ops.roi_align`` semantics (average of bilinear samples per bin).

    Args:
        input: (N, C, H, W) feature map.
        boxes: Tensor[K, 5] rows ``(batch index, x1, y1, x2, y2)``, or a list of N Tensor[L, 4] in image
            coordinates; cast to the input's dtype.
        output_size: int or (ph, pw).
        spatial_scale: feature-map size / image size (e.g. 1/16).
        sampling_ratio: samples per bin along each axis; <= 0 means ``ceil(roi size / output size)`` per RoI.
        aligned: shift boxes by -0.5 pixel (pixel-centre convention, Detectron2's ``ROIAlignV2``).

    Returns:
        (K, C, ph, pw); K = 0 gives an empty (0, C, ph, pw) tensor.

    Example:
        >>> import torch
        >>> from edgeseg.ops import roi_align
        >>> x = torch.randn(2, 8, 32, 32)
        >>> boxes = torch.tensor([[0, 4.0, 4.0, 20.0, 28.0], [1, 0.0, 0.0, 31.0, 31.0]])
        >>> roi_align(x, boxes, output_size=7, aligned=True).shape
        torch.Size([2, 8, 7, 7])
    """
    check_rank("input", input, 4, "(N, C, H, W)")
    if not input.dtype.is_floating_point:
        raise InputError(f"input: got dtype {input.dtype}, expected a floating-point tensor")
    if min(input.shape[2:]) < 1:
        raise InputError(f"input: got shape {tuple(input.shape)}, expected H and W >= 1")
    pooled_h, pooled_w = pair("output_size", output_size)
    if pooled_h < 1 or pooled_w < 1:
        raise InputError(f"output_size: got {output_size!r}, expected positive sizes (ph, pw)")
    if not spatial_scale > 0:
        raise InputError(f"spatial_scale: got {spatial_scale!r}, expected a positive number (feature / image size)")
    rois = _rois_from_boxes(boxes, input)
    if not torch.compiler.is_compiling() and rois.shape[0]:  # data-dependent: eager only (RoI count may be too)
        batch = rois[:, 0]
        if not bool(((batch >= 0) & (batch < input.shape[0]) & (batch == batch.round())).all()):
            raise InputError(f"boxes[:, 0]: got batch indices {batch.unique().tolist()[:8]}, expected integers "
                             f"in [0, {input.shape[0] - 1}]")
    return roi_align_op(input, rois, float(spatial_scale), pooled_h, pooled_w, int(sampling_ratio), bool(aligned))


def roi_align_op(input: Tensor, rois: Tensor, spatial_scale: float, pooled_h: int, pooled_w: int,
                 sampling_ratio: int, aligned: bool) -> Tensor:
    """``edgeseg::roi_align`` without the eager checks (export-safe), or its standard-op form while an export
    traces with the ``decomposed`` route (:mod:`edgeseg.ops.routes`)."""
    if decomposed_exporting():
        return roi_align_grid_sample(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)
    return torch.ops.edgeseg.roi_align(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)


def roi_align_grid_sample(input: Tensor, rois: Tensor, spatial_scale: float, pooled_h: int, pooled_w: int,
                          sampling_ratio: int, aligned: bool) -> Tensor:
    """RoIAlign in standard ops: ``GridSample`` over every box's sampling grid, then the average per bin.

    RoIAlign clamps a sample in [-1, 0] or [H-1, H] to the border row and reads 0 beyond: that is
    ``GridSample`` with ``padding_mode="border"`` times an inside mask. Needs a fixed ``sampling_ratio > 0``
    (an adaptive grid, ``ceil(roi size / output size)``, has a data-dependent size). With a batch of one
    image every box samples the same map in one ``GridSample``; otherwise each box gathers its image first.
    """
    if sampling_ratio <= 0:
        raise InputError(f"sampling_ratio: got {sampling_ratio}, expected > 0 for the decomposed RoIAlign route "
                         "(an adaptive grid has a data-dependent size); export with --route native or plugin")
    n, c, h, w = input.shape
    k, sr = rois.shape[0], sampling_ratio
    rois = rois.to(input.dtype)
    shift = 0.5 if aligned else 0.0
    start_x = rois[:, 1:2] * spatial_scale - shift
    start_y = rois[:, 2:3] * spatial_scale - shift
    roi_w = rois[:, 3:4] * spatial_scale - shift - start_x
    roi_h = rois[:, 4:5] * spatial_scale - shift - start_y
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
    opts = {"device": input.device, "dtype": input.dtype}
    # sample s of bin i along an axis: start + i * bin + (s + 0.5) * bin / sr (torchvision's order)
    iy = torch.tensor([float(i) for i in range(pooled_h) for _ in range(sr)], **opts)
    sy = torch.tensor([s + 0.5 for _ in range(pooled_h) for s in range(sr)], **opts)
    ix = torch.tensor([float(j) for j in range(pooled_w) for _ in range(sr)], **opts)
    sx = torch.tensor([s + 0.5 for _ in range(pooled_w) for s in range(sr)], **opts)
    y = (start_y + iy * bin_h + sy * bin_h / sr).unsqueeze(2)  # (K, ph*sr, 1)
    x = (start_x + ix * bin_w + sx * bin_w / sr).unsqueeze(1)  # (K, 1, pw*sr)
    inside = ((y >= -1.0) & (y <= h)) & ((x >= -1.0) & (x <= w))
    gy, gx = ((2 * y + 1) / h - 1).expand(-1, -1, x.shape[2]), ((2 * x + 1) / w - 1).expand(-1, y.shape[1], -1)
    grid = torch.stack([gx, gy], -1)  # (K, ph*sr, pw*sr, 2)
    sample = torch.nn.functional.grid_sample
    if n == 1:
        values = sample(input, grid.reshape(1, -1, pooled_w * sr, 2), mode="bilinear", padding_mode="border",
                        align_corners=False).reshape(c, k, pooled_h * sr, pooled_w * sr).transpose(0, 1)
    else:
        values = sample(input[rois[:, 0].long()], grid, mode="bilinear", padding_mode="border", align_corners=False)
    values = values * inside.unsqueeze(1).to(values.dtype)  # (K, C, ph*sr, pw*sr)
    return values.reshape(k, c, pooled_h, sr, pooled_w, sr).sum((3, 5)) / (sr * sr)


class RoIAlign(nn.Module):
    """RoIAlign layer; constructor as ``torchvision.ops.RoIAlign``.

    ``forward(input (N, C, H, W), rois Tensor[K, 5] or list of Tensor[L, 4]) -> (K, C, ph, pw)``.

    Example:
        >>> import torch
        >>> pool = RoIAlign(output_size=(7, 7), spatial_scale=1 / 4, sampling_ratio=2, aligned=True)
        >>> pool(torch.randn(1, 16, 64, 64), [torch.tensor([[10.0, 10.0, 120.0, 200.0]])]).shape
        torch.Size([1, 16, 7, 7])
    """

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False):
        super().__init__()
        self.output_size = pair("output_size", output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
