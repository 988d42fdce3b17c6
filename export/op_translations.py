"""ONNX translations of edgeseg's torch custom ops for the dynamo exporter (``custom_translation_table``).

``edgeseg::deform_conv2d`` becomes the standard ONNX ``DeformConv`` (opset 19+) and ``edgeseg::roi_align``
the standard ``RoiAlign`` (opset 16+), which ONNX Runtime runs on CPU and TensorRT 10.1+ parses natively.
Export with an opset of at least 19:

    >>> import torch
    >>> from edgeseg.export.op_translations import CUSTOM_TRANSLATION_TABLE, MIN_OPSET
    >>> program = torch.onnx.export(model, (x,), dynamo=True, opset_version=MIN_OPSET,  # doctest: +SKIP
    ...                             custom_translation_table=CUSTOM_TRANSLATION_TABLE)

Opsets 19, 20 and 21 are tested with ONNX Runtime 1.32; at opset 22 the exporter emits ``RoiAlign-22``
(which only adds bfloat16), and ONNX Runtime 1.32 has no CPU kernel for it, so stay at 19-21 for now.

Each function receives the op's arguments as the exporter traces them (tensors as symbolic values,
``None`` for absent optional tensors, Python numbers for the int/float/bool attributes) and builds the ONNX
nodes through onnxscript.

Semantics line up exactly: ONNX ``DeformConv`` lays offsets out ``(dy, dx)`` per kernel point per offset
group and samples bilinearly with zeros outside the image, as torchvision does. ``RoiAlign`` with
``coordinate_transformation_mode="half_pixel"`` is ``aligned=True``, ``"output_half_pixel"`` is the
legacy ``aligned=False``; ``sampling_ratio=0`` is the adaptive ``ceil(roi size / output size)``;
``mode="avg"``; its boxes are (K, 4) with separate int64 ``batch_indices``.

The ``plugin`` route (:mod:`edgeseg.ops.routes`) maps them to edgeseg's TensorRT plugin nodes instead
(``edgeseg.DeformConv2d``, ``edgeseg.RoIAlign``: the contract in ``edgeseg.plugins.tensorrt.onnx_nodes``);
the ``decomposed`` route never reaches these translations (the ops emit GridSample graphs themselves).
"""

from __future__ import annotations

import torch
from onnxscript import opset19 as op
from onnxscript.values import Opset

import edgeseg.ops.deform_conv
import edgeseg.ops.roi_align  # noqa: F401 - registers torch.ops.edgeseg.roi_align

__all__ = ["CUSTOM_TRANSLATION_TABLE", "MAX_ORT_OPSET", "MIN_OPSET", "PLUGIN_TRANSLATION_TABLE",
           "deform_conv2d_to_onnx", "deform_conv2d_to_plugin", "roi_align_to_onnx", "roi_align_to_plugin",
           "translation_table"]

#: the lowest ONNX opset the translations are valid in (DeformConv was added in opset 19)
MIN_OPSET = 19
#: the highest opset whose RoiAlign ONNX Runtime 1.32 runs on CPU (it lacks a RoiAlign-22 kernel)
MAX_ORT_OPSET = 21

_INT64 = 7  # onnx.TensorProto.INT64


def deform_conv2d_to_onnx(input, weight, offset, bias, mask, stride_h: int, stride_w: int, pad_h: int,
                          pad_w: int, dil_h: int, dil_w: int, groups: int, offset_groups: int):
    """``edgeseg::deform_conv2d`` -> ONNX ``DeformConv(X, W, offset, B, mask)``; kernel_shape comes from W."""
    inputs = [input, weight, offset, bias, mask]
    while inputs[-1] is None:  # trailing optional inputs are omitted
        inputs.pop()
    return op.DeformConv(*inputs, dilations=[dil_h, dil_w], group=groups, offset_group=offset_groups,
                         pads=[pad_h, pad_w, pad_h, pad_w], strides=[stride_h, stride_w])


def roi_align_to_onnx(input, rois, spatial_scale: float, pooled_h: int, pooled_w: int, sampling_ratio: int,
                      aligned: bool):
    """``edgeseg::roi_align`` (rois (K, 5) = batch index, x1, y1, x2, y2) -> ONNX ``RoiAlign(X, rois, batch_indices)``."""
    batch_indices = op.Cast(op.Gather(rois, op.Constant(value_int=0), axis=1), to=_INT64)
    boxes = op.Slice(rois, op.Constant(value_ints=[1]), op.Constant(value_ints=[5]), op.Constant(value_ints=[1]))
    return op.RoiAlign(input, boxes, batch_indices,
                       coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
                       mode="avg", output_height=pooled_h, output_width=pooled_w,
                       sampling_ratio=max(int(sampling_ratio), 0), spatial_scale=float(spatial_scale))


_PLUGINS = Opset("edgeseg", 1)


def deform_conv2d_to_plugin(input, weight, offset, bias, mask, stride_h: int, stride_w: int, pad_h: int,
                            pad_w: int, dil_h: int, dil_w: int, groups: int, offset_groups: int):
    """``edgeseg::deform_conv2d`` -> ``edgeseg.DeformConv2d(input, offset, mask, weight, bias)`` (all five
    inputs: a mask of ones and a zero bias where the model has none)."""
    if mask is None:  # (N, offset channels / 2, Ho, Wo) of ones
        half = op.Div(op.Shape(offset, start=1, end=2), op.Constant(value_ints=[2]))
        shape = op.Concat(op.Shape(offset, start=0, end=1), half, op.Shape(offset, start=2), axis=0)
        mask = op.Expand(op.CastLike(op.Constant(value_float=1.0), offset), shape)
    if bias is None:
        bias = op.Expand(op.CastLike(op.Constant(value_float=0.0), weight), op.Shape(weight, start=0, end=1))
    return _PLUGINS.DeformConv2d(input, offset, mask, weight, bias, stride_h=stride_h, stride_w=stride_w,
                                 pad_h=pad_h, pad_w=pad_w, dilation_h=dil_h, dilation_w=dil_w, groups=groups,
                                 offset_groups=offset_groups, plugin_namespace="edgeseg")


def roi_align_to_plugin(input, rois, spatial_scale: float, pooled_h: int, pooled_w: int, sampling_ratio: int,
                        aligned: bool):
    """``edgeseg::roi_align`` -> ``edgeseg.RoIAlign(input, rois (K, 5))``, every attribute explicit."""
    return _PLUGINS.RoIAlign(input, rois, pooled_h=pooled_h, pooled_w=pooled_w, spatial_scale=float(spatial_scale),
                             sampling_ratio=int(sampling_ratio), aligned=int(bool(aligned)), plugin_namespace="edgeseg")


CUSTOM_TRANSLATION_TABLE = {
    torch.ops.edgeseg.deform_conv2d.default: deform_conv2d_to_onnx,
    torch.ops.edgeseg.roi_align.default: roi_align_to_onnx,
}
PLUGIN_TRANSLATION_TABLE = {
    torch.ops.edgeseg.deform_conv2d.default: deform_conv2d_to_plugin,
    torch.ops.edgeseg.roi_align.default: roi_align_to_plugin,
}


def translation_table(route: str | None = None) -> dict:
    """The table for ``route`` (default: the current :func:`edgeseg.ops.routes.current_route`); the plugin
    route also registers the plugin nodes' ONNX schemas so ``onnx.checker`` accepts them."""
    from edgeseg.ops.routes import check_route, current_route

    if check_route(route or current_route()) != "plugin":
        return dict(CUSTOM_TRANSLATION_TABLE)
    from edgeseg.plugins.tensorrt.onnx_nodes import register_onnx_schemas

    register_onnx_schemas()
    return dict(PLUGIN_TRANSLATION_TABLE)
