"""Modulated deformable convolution (DCNv2) on the GPU: the CUDA kernels in ``deform_conv.cu`` launched
through CuPy. Same signature and semantics as ``torchvision.ops.deform_conv2d``.

>>> import cupy as cp                                                    # doctest: +SKIP
>>> from edgeseg.plugins.deform_conv import deform_conv2d                # doctest: +SKIP
>>> x = cp.random.rand(1, 8, 32, 32, dtype=cp.float32)                   # doctest: +SKIP
>>> w = cp.random.rand(16, 8, 3, 3, dtype=cp.float32)                    # doctest: +SKIP
>>> off = cp.zeros((1, 18, 32, 32), cp.float32)                          # doctest: +SKIP
>>> deform_conv2d(x, off, w, padding=1).shape                            # doctest: +SKIP
(1, 16, 32, 32)
"""

from __future__ import annotations

import functools
from pathlib import Path

from edgeseg.errors import InputError

KERNEL_SOURCE = Path(__file__).with_name("deform_conv.cu")
HOST_SOURCE = Path(__file__).with_name("deform_conv_host.cpp")
_BLOCK = 256
_SUFFIX = {"float32": "f32", "float16": "f16"}


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise InputError(f"{name}: got {value!r}, expected an int or a pair of ints")
    return pair  # type: ignore[return-value]


def output_size(in_hw, kernel_hw, stride, padding, dilation) -> tuple[int, int]:
    """Spatial output size (HO, WO) of a convolution, as in torch.nn.functional.conv2d."""
    return tuple(
        (size + 2 * pad - dil * (k - 1) - 1) // st + 1
        for size, k, st, pad, dil in zip(in_hw, kernel_hw, stride, padding, dilation)
    )  # type: ignore[return-value]


def check_shapes(input_shape, offset_shape, weight_shape, mask_shape, bias_shape, stride, padding, dilation):
    """Validate torchvision deform_conv2d shapes; return the 17 kernel shape ints
    (N, C, H, W, CO, HO, WO, KH, KW, SH, SW, PH, PW, DH, DW, G, OG)."""
    if len(input_shape) != 4:
        raise InputError(f"input: got shape {tuple(input_shape)}, expected (N, C, H, W)")
    n, c, h, w = input_shape
    if len(weight_shape) != 4:
        raise InputError(f"weight: got shape {tuple(weight_shape)}, expected (C_out, C_in/groups, KH, KW)")
    co, cin_g, kh, kw = weight_shape
    if cin_g <= 0 or c % cin_g:
        raise InputError(f"weight: got {cin_g} input channels per group, expected a divisor of C={c}")
    groups = c // cin_g
    if co % groups:
        raise InputError(f"weight: got C_out={co}, expected a multiple of groups={groups}")
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    ho, wo = output_size((h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw))
    if ho <= 0 or wo <= 0:
        raise InputError(f"input: spatial size {(h, w)} gives output {(ho, wo)}, expected a positive size")
    k = kh * kw
    if len(offset_shape) != 4 or offset_shape[0] != n or offset_shape[1] % (2 * k) or tuple(offset_shape[2:]) != (ho, wo):
        raise InputError(f"offset: got shape {tuple(offset_shape)}, expected ({n}, 2*offset_groups*{k}, {ho}, {wo})")
    og = offset_shape[1] // (2 * k)
    if og <= 0 or c % og:
        raise InputError(f"offset: got {og} offset groups, expected a divisor of C={c}")
    if mask_shape is not None and tuple(mask_shape) != (n, og * k, ho, wo):
        raise InputError(f"mask: got shape {tuple(mask_shape)}, expected {(n, og * k, ho, wo)}")
    if bias_shape is not None and tuple(bias_shape) != (co,):
        raise InputError(f"bias: got shape {tuple(bias_shape)}, expected ({co},)")
    return (n, c, h, w, co, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, groups, og)


@functools.cache
def _module():
    from edgeseg.plugins.common.build import load_raw_module

    return load_raw_module(KERNEL_SOURCE)


def _suffix(array, name: str) -> str:
    dtype = str(array.dtype)
    if dtype not in _SUFFIX:
        raise InputError(f"{name}.dtype: got {dtype}, expected float32 or float16")
    return _SUFFIX[dtype]


def deform_conv2d(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None, method="im2col"):
    """DCNv2 over CuPy arrays: ``input`` (N, C, H, W), ``offset`` (N, 2*OG*KH*KW, HO, WO),
    ``weight`` (C_out, C/groups, KH, KW), ``bias`` (C_out) or None, ``mask`` (N, OG*KH*KW, HO, WO) or None
    -> (N, C_out, HO, WO) in the input's dtype (float32 or float16; FP32 arithmetic inside).

    ``method="im2col"`` samples into a column matrix and multiplies it with cuBLAS (fast, needs
    C*KH*KW*N*HO*WO scratch elements); ``"direct"`` computes each output element in one thread.
    """
    from edgeseg._deps import require

    cp = require("cupy", "the deformable convolution kernel")
    dims = check_shapes(input.shape, offset.shape, weight.shape, None if mask is None else mask.shape,
                        None if bias is None else bias.shape, stride, padding, dilation)
    suffix = _suffix(input, "input")
    dtype = input.dtype
    for name, arr in (("offset", offset), ("weight", weight), ("mask", mask), ("bias", bias)):
        if arr is not None and arr.dtype != dtype:
            raise InputError(f"{name}.dtype: got {arr.dtype}, expected {dtype} like input")
    x, off, wt = (cp.ascontiguousarray(a) for a in (input, offset, weight))
    msk = None if mask is None else cp.ascontiguousarray(mask)
    n, c, _, _, co, ho, wo, kh, kw, *_rest = dims
    groups = dims[15]
    args = [cp.int32(d) for d in dims]  # kernel takes C ints; a Python int would go as int64
    if method == "direct":
        out = cp.empty((n, co, ho, wo), dtype)
        total = out.size
        kernel = _module().get_function(f"deform_conv_direct_{suffix}")
        b = None if bias is None else cp.ascontiguousarray(bias)
        kernel((min((total + _BLOCK - 1) // _BLOCK, 65535),), (_BLOCK,), (x, off, msk, wt, b, out, *args))
        return out
    if method != "im2col":
        raise InputError(f"method: got {method!r}, expected 'im2col' or 'direct'")
    cols = cp.empty((c * kh * kw, n * ho * wo), dtype)
    total = c * n * ho * wo
    kernel = _module().get_function(f"deform_im2col_{suffix}")
    kernel((min((total + _BLOCK - 1) // _BLOCK, 65535),), (_BLOCK,), (x, off, msk, cols, *args))
    w_g = wt.reshape(groups, co // groups, -1)
    col_g = cols.reshape(groups, -1, n * ho * wo)
    out = cp.matmul(w_g, col_g).reshape(co, n, ho, wo).transpose(1, 0, 2, 3)
    if bias is not None:
        out = out + bias.reshape(1, co, 1, 1)
    return cp.ascontiguousarray(out.astype(dtype, copy=False))
