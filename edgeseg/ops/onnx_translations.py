"""The ONNX side of edgeseg's custom ops, in one place: the translations the dynamo exporter takes
(``custom_translation_table``) and the custom ``edgeseg`` nodes of the TensorRT plugins (their contract,
ONNX schemas and a node builder).

===============================  ==========================================  ======================================
torch op                         ``native`` route                            ``plugin`` route
===============================  ==========================================  ======================================
``edgeseg::deform_conv2d``       ONNX ``DeformConv`` (opset 19+)             ``edgeseg.DeformConv2d`` (5 inputs)
``edgeseg::roi_align``           ONNX ``RoiAlign`` (opset 16+)               ``edgeseg.RoIAlign`` (rois (K, 5))
``edgeseg::nms``                 ONNX ``NonMaxSuppression`` (opset 10+)      the same
``edgeseg::crf_as_rnn``          ``Softmax -> edgeseg.DenseCRF -> Log``      the same
===============================  ==========================================  ======================================

The ``decomposed`` route never reaches these translations: the ops emit standard GridSample graphs themselves
and a CRF model's graph stops before the CRF (:mod:`edgeseg.ops.routes`). Export with an opset of at least 19:

    >>> import torch
    >>> from edgeseg.ops.onnx_translations import MIN_OPSET, translation_table
    >>> program = torch.onnx.export(model, (x,), dynamo=True, opset_version=MIN_OPSET,  # doctest: +SKIP
    ...                             custom_translation_table=translation_table())

Opsets 19, 20 and 21 are tested with ONNX Runtime 1.32; at opset 22 the exporter emits ``RoiAlign-22``
(which only adds bfloat16), and ONNX Runtime 1.32 has no CPU kernel for it, so stay at 19-21 for now.

Each translation receives the op's arguments as the exporter traces them (tensors as symbolic values,
``None`` for absent optional tensors, Python numbers for the int/float/bool attributes) and builds the ONNX
nodes through onnxscript. Semantics line up exactly: ONNX ``DeformConv`` lays offsets out ``(dy, dx)`` per
kernel point per offset group and samples bilinearly with zeros outside the image, as torchvision does.
``RoiAlign`` with ``coordinate_transformation_mode="half_pixel"`` is ``aligned=True``, ``"output_half_pixel"``
is the legacy ``aligned=False``; ``sampling_ratio=0`` is the adaptive ``ceil(roi size / output size)``;
``mode="avg"``; its boxes are (K, 4) with separate int64 ``batch_indices``.

Importing this module needs neither torch nor onnx: the plugin contract (:data:`PLUGIN_OPS`,
:func:`plugin_node`, :func:`register_onnx_schemas`) needs only ``onnx``, the translations ``onnxscript``, and
:func:`translation_table` (keyed by the torch ops) ``torch``, each imported on first use.
"""

from __future__ import annotations

from typing import Any

from edgeseg.errors import InputError

__all__ = ["DOMAIN", "FLOAT_TYPES", "MAX_ORT_OPSET", "MIN_OPSET", "PLUGIN_OPS", "crf_as_rnn_to_onnx",
           "deform_conv2d_to_onnx", "deform_conv2d_to_plugin", "nms_to_onnx", "plugin_node", "register_onnx_schemas",
           "roi_align_to_onnx", "roi_align_to_plugin", "translation_table"]

#: the lowest ONNX opset the translations are valid in (DeformConv was added in opset 19)
MIN_OPSET = 19
#: the highest opset whose RoiAlign ONNX Runtime 1.32 runs on CPU (it lacks a RoiAlign-22 kernel)
MAX_ORT_OPSET = 21

# --------------------------------------------------------------------------- the edgeseg plugin nodes
DOMAIN = "edgeseg"
FLOAT_TYPES = ("tensor(float)", "tensor(float16)")
# op -> (input names, {attribute: Python type}); the tensorrt.plugin definitions take exactly these.
PLUGIN_OPS: dict[str, tuple[tuple[str, ...], dict[str, type]]] = {
    "DeformConv2d": (("input", "offset", "mask", "weight", "bias"),
                     {"stride_h": int, "stride_w": int, "pad_h": int, "pad_w": int, "dilation_h": int,
                      "dilation_w": int, "groups": int, "offset_groups": int}),
    "RoIAlign": (("input", "rois"),
                 {"pooled_h": int, "pooled_w": int, "spatial_scale": float, "sampling_ratio": int, "aligned": int}),
    # probs (N, C, H, W), image (N, H, W, K) 0..255; params: JSON of edgeseg.ops.dense_crf keyword arguments
    "DenseCRF": (("probs", "image"), {"params": str}),
}
# attributes a node may omit: the ONNX Runtime DenseCRF op then uses dense_crf's defaults (plugin_node still
# writes every attribute)
_OPTIONAL_ATTRS = {("DenseCRF", "params")}
_INT64 = 7  # onnx.TensorProto.INT64


def plugin_node(op: str, inputs: list[str], outputs: list[str], name: str | None = None, **attrs: Any):
    """A NodeProto for plugin ``op`` (``domain="edgeseg"``, ``plugin_namespace="edgeseg"``), checking
    the number of inputs and every attribute's name and type against :data:`PLUGIN_OPS`.

    >>> plugin_node("RoIAlign", ["feats", "rois"], ["pooled"], pooled_h=7, pooled_w=7, spatial_scale=0.25,
    ...             sampling_ratio=0, aligned=1).op_type                                   # doctest: +SKIP
    'RoIAlign'
    """
    from onnx import helper

    if op not in PLUGIN_OPS:
        raise InputError(f"op: got {op!r}, expected one of {sorted(PLUGIN_OPS)}")
    names, types = PLUGIN_OPS[op]
    if len(inputs) != len(names) or len(outputs) != 1:
        raise InputError(f"{op}: got {len(inputs)} inputs and {len(outputs)} outputs, expected inputs {list(names)} "
                         "and one output")
    if set(attrs) != set(types):
        raise InputError(f"{op} attributes: got {sorted(attrs)}, expected exactly {sorted(types)}")
    for key, want in types.items():
        value = attrs[key]
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise InputError(f"{op}.{key}: got {value!r}, expected {want.__name__}")
        attrs[key] = value
    return helper.make_node(op, inputs, outputs, name=name, domain=DOMAIN, plugin_namespace=DOMAIN, **attrs)


def register_onnx_schemas() -> None:
    """Register ONNX schemas (domain ``edgeseg``, version 1) for the plugin ops, so ``onnx.checker`` accepts
    the nodes; idempotent."""
    from onnx import defs

    attr_types = {int: defs.OpSchema.AttrType.INT, float: defs.OpSchema.AttrType.FLOAT,
                  str: defs.OpSchema.AttrType.STRING}
    for op, (inputs, attrs) in PLUGIN_OPS.items():
        if defs.has(op, DOMAIN):
            continue
        attributes = [defs.OpSchema.Attribute(k, attr_types[t], f"{op} attribute {k}",
                                              required=(op, k) not in _OPTIONAL_ATTRS) for k, t in attrs.items()]
        attributes.append(defs.OpSchema.Attribute("plugin_namespace", defs.OpSchema.AttrType.STRING,
                                                  "TensorRT plugin namespace (edgeseg)", required=False))
        schema = defs.OpSchema(
            op, DOMAIN, 1, doc=f"edgeseg::{op} TensorRT plugin (see edgeseg.plugins.tensorrt)",
            inputs=[defs.OpSchema.FormalParameter(name, "T") for name in inputs],
            outputs=[defs.OpSchema.FormalParameter("output", "T")],
            type_constraints=[("T", list(FLOAT_TYPES), "float32 or float16")],
            attributes=attributes,
        )
        defs.register_schema(schema)


# --------------------------------------------------------------------------- translations to standard ONNX
def deform_conv2d_to_onnx(input, weight, offset, bias, mask, stride_h: int, stride_w: int, pad_h: int,
                          pad_w: int, dil_h: int, dil_w: int, groups: int, offset_groups: int):
    """``edgeseg::deform_conv2d`` -> ONNX ``DeformConv(X, W, offset, B, mask)``; kernel_shape comes from W."""
    from onnxscript import opset19 as op

    inputs = [input, weight, offset, bias, mask]
    while inputs[-1] is None:  # trailing optional inputs are omitted
        inputs.pop()
    return op.DeformConv(*inputs, dilations=[dil_h, dil_w], group=groups, offset_group=offset_groups,
                         pads=[pad_h, pad_w, pad_h, pad_w], strides=[stride_h, stride_w])


def roi_align_to_onnx(input, rois, spatial_scale: float, pooled_h: int, pooled_w: int, sampling_ratio: int,
                      aligned: bool):
    """``edgeseg::roi_align`` (rois (K, 5) = batch index, x1, y1, x2, y2) -> ONNX ``RoiAlign(X, rois, batch_indices)``."""
    from onnxscript import opset19 as op

    batch_indices = op.Cast(op.Gather(rois, op.Constant(value_int=0), axis=1), to=_INT64)
    boxes = op.Slice(rois, op.Constant(value_ints=[1]), op.Constant(value_ints=[5]), op.Constant(value_ints=[1]))
    return op.RoiAlign(input, boxes, batch_indices,
                       coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
                       mode="avg", output_height=pooled_h, output_width=pooled_w,
                       sampling_ratio=max(int(sampling_ratio), 0), spatial_scale=float(spatial_scale))


def nms_to_onnx(boxes, scores, iou_threshold: float):
    """``edgeseg::nms`` -> ONNX ``NonMaxSuppression`` (one batch, one class); returns its box-index column."""
    from onnxscript import opset19 as op

    boxes3 = op.Unsqueeze(boxes, op.Constant(value_ints=[0]))                 # (1, K, 4)
    scores3 = op.Unsqueeze(scores, op.Constant(value_ints=[0, 1]))            # (1, 1, K)
    max_out = op.Constant(value_ints=[2**31 - 1])
    iou = op.Constant(value_floats=[float(iou_threshold)])
    selected = op.NonMaxSuppression(boxes3, scores3, max_out, iou, center_point_box=0)   # (M, 3)
    return op.Reshape(op.Gather(selected, op.Constant(value_ints=[2]), axis=1), op.Constant(value_ints=[-1]))


# --------------------------------------------------------------------------- translations to plugin nodes
def _plugins():
    from onnxscript.values import Opset

    return Opset(DOMAIN, 1)


def deform_conv2d_to_plugin(input, weight, offset, bias, mask, stride_h: int, stride_w: int, pad_h: int,
                            pad_w: int, dil_h: int, dil_w: int, groups: int, offset_groups: int):
    """``edgeseg::deform_conv2d`` -> ``edgeseg.DeformConv2d(input, offset, mask, weight, bias)`` (all five
    inputs: a mask of ones and a zero bias where the model has none)."""
    from onnxscript import opset19 as op

    if mask is None:  # (N, offset channels / 2, Ho, Wo) of ones
        half = op.Div(op.Shape(offset, start=1, end=2), op.Constant(value_ints=[2]))
        shape = op.Concat(op.Shape(offset, start=0, end=1), half, op.Shape(offset, start=2), axis=0)
        mask = op.Expand(op.CastLike(op.Constant(value_float=1.0), offset), shape)
    if bias is None:
        bias = op.Expand(op.CastLike(op.Constant(value_float=0.0), weight), op.Shape(weight, start=0, end=1))
    return _plugins().DeformConv2d(input, offset, mask, weight, bias, stride_h=stride_h, stride_w=stride_w,
                                   pad_h=pad_h, pad_w=pad_w, dilation_h=dil_h, dilation_w=dil_w, groups=groups,
                                   offset_groups=offset_groups, plugin_namespace=DOMAIN)


def roi_align_to_plugin(input, rois, spatial_scale: float, pooled_h: int, pooled_w: int, sampling_ratio: int,
                        aligned: bool):
    """``edgeseg::roi_align`` -> ``edgeseg.RoIAlign(input, rois (K, 5))``, every attribute explicit."""
    return _plugins().RoIAlign(input, rois, pooled_h=pooled_h, pooled_w=pooled_w, spatial_scale=float(spatial_scale),
                               sampling_ratio=int(sampling_ratio), aligned=int(bool(aligned)), plugin_namespace=DOMAIN)


def crf_as_rnn_to_onnx(logits, image, params: str):
    """``edgeseg::crf_as_rnn`` (:class:`edgeseg.ops.crf_rnn.CRFasRNN` with frozen ``params``) ->
    ``Softmax -> edgeseg.DenseCRF(probs, image NHWC, params) -> Log`` on every route that reaches it."""
    from onnxscript import opset18 as op

    probs = op.Softmax(logits, axis=1)
    image_nhwc = op.Transpose(image, perm=[0, 2, 3, 1])
    refined = _plugins().DenseCRF(probs, image_nhwc, params=params, plugin_namespace=DOMAIN)
    return op.Log(refined)


# --------------------------------------------------------------------------- the tables
def _ops():
    """``torch.ops.edgeseg``, with every op that has a translation here registered."""
    import torch

    import edgeseg.ops.crf_rnn
    import edgeseg.ops.deform_conv
    import edgeseg.ops.boxes
    import edgeseg.ops.roi  # noqa: F401 - each registers its torch.ops.edgeseg op

    return torch.ops.edgeseg


def translation_table(route: str | None = None) -> dict:
    """Every translation for ``route`` (default: the current :func:`edgeseg.ops.routes.current_route`):
    DeformConv and RoIAlign as standard ONNX or, on the ``plugin`` route, as plugin nodes; NMS; the CRF node.
    Registers the plugin nodes' ONNX schemas when the table emits any, so ``onnx.checker`` accepts them."""
    from edgeseg.ops.routes import check_route, current_route

    plugin = check_route(route or current_route()) == "plugin"
    ops = _ops()
    register_onnx_schemas()  # the DenseCRF node is custom on every route
    return {
        ops.deform_conv2d.default: deform_conv2d_to_plugin if plugin else deform_conv2d_to_onnx,
        ops.roi_align.default: roi_align_to_plugin if plugin else roi_align_to_onnx,
        ops.nms.default: nms_to_onnx,
        ops.crf_as_rnn.default: crf_as_rnn_to_onnx,
    }
