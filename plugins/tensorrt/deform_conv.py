"""``edgeseg::DeformConv2d``: modulated deformable convolution (DCNv2, torchvision semantics) as a
TensorRT plugin. Inputs: input (N, C, H, W), offset (N, 2*OG*KH*KW, HO, WO), mask (N, OG*KH*KW, HO, WO),
weight (CO, C/groups, KH, KW), bias (CO); FP32 or FP16, all the same type. Attributes: stride_h,
stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, offset_groups (int).
JIT: CuPy im2col + cuBLAS GEMM. AOT (10.9+, nvcc present): the direct kernel of deform_conv.cu.
"""

# No `from __future__ import annotations` here: tensorrt.plugin reads these annotations at run time
# (issubclass(annotation, TensorDesc), typing.get_origin(...) is tuple); strings would break it.

from typing import List, Tuple, Union  # noqa: UP035 - see above

import tensorrt as trt
import tensorrt.plugin as trtp

from edgeseg.plugins.deform_conv import KERNEL_SOURCE, deform_conv2d

from . import _common

REQUIRES_TENSORRT = (10, 6)
OP = "edgeseg::DeformConv2d"


@trtp.register(OP)
def deform_conv2d_desc(
    input: trtp.TensorDesc, offset: trtp.TensorDesc, mask: trtp.TensorDesc, weight: trtp.TensorDesc,
    bias: trtp.TensorDesc, stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int,
    dilation_w: int, groups: int, offset_groups: int,
) -> trtp.TensorDesc:
    n, h, w = input.shape_expr[0], input.shape_expr[2], input.shape_expr[3]
    co, kh, kw = weight.shape_expr[0], weight.shape_expr[2], weight.shape_expr[3]
    ho = (h + (2 * pad_h - 1) - (kh - 1) * dilation_h) // stride_h + 1
    wo = (w + (2 * pad_w - 1) - (kw - 1) * dilation_w) // stride_w + 1
    out = input.like()
    out.shape_expr = trtp.ShapeExprs.from_tuple((n, co, ho, wo))
    return out


@trtp.autotune(OP)
def deform_conv2d_autotune(
    input: trtp.TensorDesc, offset: trtp.TensorDesc, mask: trtp.TensorDesc, weight: trtp.TensorDesc,
    bias: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc],
) -> List[trtp.AutoTuneCombination]:
    return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16", "LINEAR")]


@trtp.impl(OP)
def deform_conv2d_impl(
    input: trtp.Tensor, offset: trtp.Tensor, mask: trtp.Tensor, weight: trtp.Tensor, bias: trtp.Tensor,
    stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, groups: int,
    offset_groups: int, outputs: Tuple[trtp.Tensor], stream: int,
) -> None:
    view = _common.cupy_view
    with _common.external_stream(stream):
        result = deform_conv2d(view(input), view(offset), view(weight), view(bias), (stride_h, stride_w),
                               (pad_h, pad_w), (dilation_h, dilation_w), view(mask))
        view(outputs[0])[...] = result


if _common.plugin_implementation() == "aot":  # decided once per process (see _common)

    @trtp.aot_impl(OP)
    def deform_conv2d_aot(
        input: trtp.TensorDesc, offset: trtp.TensorDesc, mask: trtp.TensorDesc, weight: trtp.TensorDesc,
        bias: trtp.TensorDesc, stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int,
        dilation_w: int, groups: int, offset_groups: int, outputs: Tuple[trtp.TensorDesc], tactic: int,
    ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
        suffix = "f16" if input.dtype == trt.float16 else "f32"
        name = f"deform_conv_aot_{suffix}"
        i, wt, o, off = input.shape_expr, weight.shape_expr, outputs[0].shape_expr, offset.shape_expr
        launch = trtp.KernelLaunchParams()
        launch.grid_x = trtp.cdiv(o.numel(), _common.BLOCK)
        launch.block_x = _common.BLOCK
        launch.grid_y = launch.grid_z = launch.block_y = launch.block_z = 1
        launch.shared_mem = 0
        k = wt[2] * wt[3]
        scalars = (i[0], i[1], i[2], i[3], wt[0], o[2], o[3], wt[2], wt[3], stride_h, stride_w, pad_h, pad_w,
                   dilation_h, dilation_w, i[1] // wt[1], off[1] // (k * 2))
        extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(v) for v in scalars])
        return name, _common.ptx_for(KERNEL_SOURCE, "deform_conv_aot"), launch, extra
