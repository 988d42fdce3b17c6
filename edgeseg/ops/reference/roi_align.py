"""RoIAlign, literally: ``torchvision.ops.roi_align`` semantics (average pooling of bilinear samples).

For RoI r = (b, x1, y1, x2, y2) and output bin (i, j) of an (ph, pw) grid:

    shift       = 0.5 if aligned else 0          (aligned: pixel centres sit at integer + 0.5)
    start_y     = y1 * spatial_scale - shift,   roi_h = y2 * spatial_scale - shift - start_y
    roi_h       = max(roi_h, 1) when not aligned (legacy: malformed RoIs become 1x1)
    bin_h       = roi_h / ph
    grid_h      = sampling_ratio if sampling_ratio > 0 else ceil(roi_h / ph)     (adaptive, per RoI)
    y(i, iy)    = start_y + i * bin_h + (iy + 0.5) * bin_h / grid_h,   iy = 0 .. grid_h - 1
    (the same along x)
    out[r, c, i, j] = sum of sample(input[b, c], y, x) over the grid / max(grid_h * grid_w, 1)

``sample`` is bilinear interpolation that reads 0 when y < -1, y > H, x < -1 or x > W, and otherwise
clamps the coordinate into the image (the border pixel is repeated).
"""

from __future__ import annotations

import math

import numpy as np


def bilinear_border_clamped(plane: np.ndarray, y: float, x: float) -> float:
    """Bilinear sample of a (H, W) plane at (y, x) with RoIAlign's border rule (see module docstring)."""
    h, w = plane.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * plane[y0, x0] + (1 - ly) * lx * plane[y0, x1]
            + ly * (1 - lx) * plane[y1, x0] + ly * lx * plane[y1, x1])


def boxes_to_rois(boxes) -> np.ndarray:
    """A list of per-image (L, 4) box arrays -> (K, 5) rois whose first column is the image index."""
    if isinstance(boxes, (list, tuple)):
        parts = [np.concatenate([np.full((len(b), 1), n, np.float64), np.asarray(b, np.float64).reshape(-1, 4)], 1)
                 for n, b in enumerate(boxes)]
        return np.concatenate(parts, 0) if parts else np.zeros((0, 5))
    return np.asarray(boxes, np.float64)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False) -> np.ndarray:
    """Reference RoIAlign. input (N, C, H, W); boxes (K, 5) [b, x1, y1, x2, y2] or a list of (L, 4)
    -> (K, C, ph, pw) float64."""
    x = np.asarray(input, np.float64)
    rois = boxes_to_rois(boxes)
    ph, pw = (output_size, output_size) if np.isscalar(output_size) else output_size
    out = np.zeros((rois.shape[0], x.shape[1], ph, pw))
    shift = 0.5 if aligned else 0.0
    for r, (b, x1, y1, x2, y2) in enumerate(rois):
        start_x, start_y = x1 * spatial_scale - shift, y1 * spatial_scale - shift
        roi_w = x2 * spatial_scale - shift - start_x
        roi_h = y2 * spatial_scale - shift - start_y
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / ph, roi_w / pw
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw)
        count = max(grid_h * grid_w, 1)
        for c in range(x.shape[1]):
            for i in range(ph):
                for j in range(pw):
                    total = 0.0
                    for iy in range(grid_h):
                        y = start_y + i * bin_h + (iy + 0.5) * bin_h / grid_h
                        for ix in range(grid_w):
                            xx = start_x + j * bin_w + (ix + 0.5) * bin_w / grid_w
                            total += bilinear_border_clamped(x[int(b), c], y, xx)
                    out[r, c, i, j] = total / count
    return out
