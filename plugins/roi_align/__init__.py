"""RoIAlign (average) on the GPU: the CUDA kernel in ``roi_align.cu`` launched through CuPy. Same
signature and semantics as ``torchvision.ops.roi_align``.

>>> import cupy as cp                                                    # doctest: +SKIP
>>> from edgeseg.plugins.roi_align import roi_align                      # doctest: +SKIP
>>> feats = cp.random.rand(2, 8, 64, 64, dtype=cp.float32)               # doctest: +SKIP
>>> boxes = cp.asarray([[0, 4.0, 4.0, 40.0, 30.0]], cp.float32)          # doctest: +SKIP
>>> roi_align(feats, boxes, (7, 7), aligned=True).shape                  # doctest: +SKIP
(1, 8, 7, 7)
"""

from __future__ import annotations

import functools
from pathlib import Path

from edgeseg.errors import InputError

KERNEL_SOURCE = Path(__file__).with_name("roi_align.cu")
HOST_SOURCE = Path(__file__).with_name("roi_align_host.cpp")
_BLOCK = 256
_SUFFIX = {"float32": "f32", "float16": "f16"}


def check_shapes(input_shape, rois_shape, output_size) -> tuple[int, int]:
    """Validate shapes; return the pooled size (PH, PW)."""
    if len(input_shape) != 4:
        raise InputError(f"input: got shape {tuple(input_shape)}, expected (N, C, H, W)")
    if len(rois_shape) != 2 or rois_shape[1] != 5:
        raise InputError(f"boxes: got shape {tuple(rois_shape)}, expected (K, 5) rows [batch, x1, y1, x2, y2]")
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise InputError(f"output_size: got {output_size!r}, expected a positive int or (height, width)")
    return size  # type: ignore[return-value]


@functools.cache
def _module():
    from edgeseg.plugins.common.build import load_raw_module

    return load_raw_module(KERNEL_SOURCE)


def _as_rois(cp, boxes, dtype):
    """(K, 5) array, or a list of per-image (Ki, 4) arrays (torchvision's two forms) -> (K, 5)."""
    if isinstance(boxes, (list, tuple)):
        rows = []
        for b, box in enumerate(boxes):
            box = cp.asarray(box, dtype)
            if box.ndim != 2 or box.shape[1] != 4:
                raise InputError(f"boxes[{b}]: got shape {tuple(box.shape)}, expected (K, 4) [x1, y1, x2, y2]")
            rows.append(cp.concatenate([cp.full((box.shape[0], 1), b, dtype), box], axis=1))
        return cp.concatenate(rows, axis=0) if rows else cp.zeros((0, 5), dtype)
    return cp.ascontiguousarray(cp.asarray(boxes, dtype))


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign over CuPy arrays: ``input`` (N, C, H, W) float32/float16, ``boxes`` (K, 5) rows
    [batch_index, x1, y1, x2, y2] or a list of (Ki, 4) per image -> (K, C, PH, PW) in input's dtype.
    ``sampling_ratio <= 0`` samples ceil(roi_size / output_size) points per bin (adaptive).
    """
    from edgeseg._deps import require

    cp = require("cupy", "the RoIAlign kernel")
    dtype = str(input.dtype)
    if dtype not in _SUFFIX:
        raise InputError(f"input.dtype: got {dtype}, expected float32 or float16")
    rois = _as_rois(cp, boxes, input.dtype)
    ph, pw = check_shapes(input.shape, rois.shape, output_size)
    x = cp.ascontiguousarray(input)
    n, c, h, w = x.shape
    out = cp.empty((rois.shape[0], c, ph, pw), input.dtype)
    if out.size == 0:
        return out
    kernel = _module().get_function(f"roi_align_{_SUFFIX[dtype]}")
    grid = (min((out.size + _BLOCK - 1) // _BLOCK, 65535),)
    ints = [cp.int32(v) for v in (n, c, h, w, rois.shape[0], ph, pw)]  # C ints, not int64
    kernel(grid, (_BLOCK,), (x, rois, out, *ints, cp.float32(spatial_scale), cp.int32(sampling_ratio),
                             cp.int32(bool(aligned))))
    return out
