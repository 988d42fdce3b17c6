"""Deformable convolution (DCNv1 / DCNv2), literally: ``torchvision.ops.deform_conv2d`` semantics.

For output pixel (n, co, oy, ox) of group g (output channel co belongs to weight group g):

    out = bias[co] + sum over ci in group g, kernel point (i, j):
          weight[co, ci, i, j] * mask[n, m, oy, ox] * sample(input[n, c], y, x)

    c  = g * C_in_per_group + ci            (the input channel)
    og = c // (C // offset_groups)          (its offset group)
    k  = i * kw + j                         (the kernel point)
    y  = oy * stride_h - pad_h + i * dil_h + offset[n, og * 2K + 2k,     oy, ox]   (dy first)
    x  = ox * stride_w - pad_w + j * dil_w + offset[n, og * 2K + 2k + 1, oy, ox]   (then dx)
    m  = og * K + k                         (mask is 1 without a mask: DCNv1)

``sample`` is bilinear interpolation where pixels outside the image read as zero.
"""

from __future__ import annotations

import math

import numpy as np


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def bilinear_zero_padded(plane: np.ndarray, y: float, x: float) -> float:
    """Bilinear sample of a (H, W) plane at (y, x); pixels outside the plane read as 0."""
    h, w = plane.shape
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return 0.0
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0

    def pixel(r: int, c: int) -> float:
        return float(plane[r, c]) if 0 <= r < h and 0 <= c < w else 0.0

    return ((1 - ly) * (1 - lx) * pixel(y0, x0) + (1 - ly) * lx * pixel(y0, x0 + 1)
            + ly * (1 - lx) * pixel(y0 + 1, x0) + ly * lx * pixel(y0 + 1, x0 + 1))


def deform_conv2d(input, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                  mask=None) -> np.ndarray:
    """Reference deformable convolution; arrays as in ``torchvision.ops.deform_conv2d``. Returns float64.

    input (N, C, H, W), offset (N, 2*offset_groups*kh*kw, Ho, Wo), weight (C_out, C/groups, kh, kw),
    bias (C_out,) or None, mask (N, offset_groups*kh*kw, Ho, Wo) or None -> (N, C_out, Ho, Wo).
    """
    x = np.asarray(input, np.float64)
    offset = np.asarray(offset, np.float64)
    weight = np.asarray(weight, np.float64)
    n_batch, channels, height, width = x.shape
    out_channels, channels_per_group, kh, kw = weight.shape
    groups = channels // channels_per_group
    kernel_points = kh * kw
    offset_groups = offset.shape[1] // (2 * kernel_points)
    channels_per_offset_group = channels // offset_groups
    out_per_group = out_channels // groups
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    out = np.zeros((n_batch, out_channels, out_h, out_w))
    for n in range(n_batch):
        for co in range(out_channels):
            g = co // out_per_group
            for oy in range(out_h):
                for ox in range(out_w):
                    total = 0.0 if bias is None else float(bias[co])
                    for ci in range(channels_per_group):
                        c = g * channels_per_group + ci
                        og = c // channels_per_offset_group
                        for i in range(kh):
                            for j in range(kw):
                                k = i * kw + j
                                dy = offset[n, og * 2 * kernel_points + 2 * k, oy, ox]
                                dx = offset[n, og * 2 * kernel_points + 2 * k + 1, oy, ox]
                                m = 1.0 if mask is None else float(mask[n, og * kernel_points + k, oy, ox])
                                y = oy * sh - ph + i * dh + dy
                                xx = ox * sw - pw + j * dw + dx
                                total += weight[co, ci, i, j] * m * bilinear_zero_padded(x[n, c], y, xx)
                    out[n, co, oy, ox] = total
    return out
