"""``edgeseg::RoIAlign``: average RoIAlign (torchvision semantics) as a TensorRT plugin.
Inputs: input (N, C, H, W), rois (R, 5) rows [batch_index, x1, y1, x2, y2], FP32 or FP16 (same type).
Attributes: pooled_h, pooled_w (int), spatial_scale (float), sampling_ratio (int, <= 0 adaptive),
aligned (int, 1 = half-pixel). Output (R, C, pooled_h, pooled_w).
JIT: CuPy launcher. AOT (10.9+, nvcc present): roi_align_aot_* of roi_align.cu, one kernel.
"""

# No `from __future__ import annotations` here: tensorrt.plugin reads these annotations at run time
# (issubclass(annotation, TensorDesc), typing.get_origin(...) is tuple); strings would break it.

from typing import List, Tuple, Union  # noqa: UP035 - see above

import tensorrt as trt
import tensorrt.plugin as trtp

from edgeseg.plugins.roi_align import KERNEL_SOURCE, roi_align

from . import _common

REQUIRES_TENSORRT = (10, 6)
OP = "edgeseg::RoIAlign"


@trtp.register(OP)
def roi_align_desc(input: trtp.TensorDesc, rois: trtp.TensorDesc, pooled_h: int, pooled_w: int,
                   spatial_scale: float, sampling_ratio: int, aligned: int) -> trtp.TensorDesc:
    out = input.like()
    out.shape_expr = trtp.ShapeExprs.from_tuple((rois.shape_expr[0], input.shape_expr[1], pooled_h, pooled_w))
    return out


@trtp.autotune(OP)
def roi_align_autotune(input: trtp.TensorDesc, rois: trtp.TensorDesc,
                       outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
    return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16, FP32|FP16", "LINEAR")]


@trtp.impl(OP)
def roi_align_impl(input: trtp.Tensor, rois: trtp.Tensor, pooled_h: int, pooled_w: int, spatial_scale: float,
                   sampling_ratio: int, aligned: int, outputs: Tuple[trtp.Tensor], stream: int) -> None:
    view = _common.cupy_view
    with _common.external_stream(stream):
        view(outputs[0])[...] = roi_align(view(input), view(rois), (pooled_h, pooled_w), spatial_scale,
                                          sampling_ratio, bool(aligned))


if _common.plugin_implementation() == "aot":  # decided once per process (see _common)

    @trtp.aot_impl(OP)
    def roi_align_aot(input: trtp.TensorDesc, rois: trtp.TensorDesc, pooled_h: int, pooled_w: int,
                      spatial_scale: float, sampling_ratio: int, aligned: int, outputs: Tuple[trtp.TensorDesc],
                      tactic: int,
                      ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
        suffix = "f16" if input.dtype == trt.float16 else "f32"
        i, r = input.shape_expr, rois.shape_expr
        launch = trtp.KernelLaunchParams()
        launch.grid_x = trtp.cdiv(outputs[0].shape_expr.numel(), _common.BLOCK)
        launch.block_x = _common.BLOCK
        launch.grid_y = launch.grid_z = launch.block_y = launch.block_z = 1
        launch.shared_mem = 0
        scalars = (i[0], i[1], i[2], i[3], r[0], pooled_h, pooled_w, _common.float_bits(spatial_scale),
                   sampling_ratio, aligned)
        extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(v) for v in scalars])
        return f"roi_align_aot_{suffix}", _common.ptx_for(KERNEL_SOURCE, "roi_align_aot"), launch, extra
