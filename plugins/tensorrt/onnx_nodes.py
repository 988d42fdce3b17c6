"""ONNX side of edgeseg's TensorRT plugins: the node contract (inputs, attribute names and types) in one
place, ONNX schemas for domain ``edgeseg`` so ``onnx.checker`` accepts these nodes, and a node builder
for exporters (``--plugins edgeseg``). Needs only ``onnx``; no TensorRT.

>>> from edgeseg.plugins.tensorrt.onnx_nodes import plugin_node, register_onnx_schemas   # doctest: +SKIP
>>> register_onnx_schemas()                                                            # doctest: +SKIP
>>> plugin_node("RoIAlign", ["feats", "rois"], ["pooled"], pooled_h=7, pooled_w=7, spatial_scale=0.25,
...             sampling_ratio=0, aligned=1)                                           # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from edgeseg.errors import InputError

DOMAIN = "edgeseg"
FLOAT_TYPES = ("tensor(float)", "tensor(float16)")
# op -> (input names, {attribute: Python type}); the tensorrt.plugin definitions take exactly these.
PLUGIN_OPS: dict[str, tuple[tuple[str, ...], dict[str, type]]] = {
    "DeformConv2d": (("input", "offset", "mask", "weight", "bias"),
                     {"stride_h": int, "stride_w": int, "pad_h": int, "pad_w": int, "dilation_h": int,
                      "dilation_w": int, "groups": int, "offset_groups": int}),
    "RoIAlign": (("input", "rois"),
                 {"pooled_h": int, "pooled_w": int, "spatial_scale": float, "sampling_ratio": int, "aligned": int}),
    "DenseCRF": (("probs", "image"), {"params": str}),
}


def plugin_node(op: str, inputs: list[str], outputs: list[str], name: str | None = None, **attrs: Any):
    """A NodeProto for plugin ``op`` (``domain="edgeseg"``, ``plugin_namespace="edgeseg"``), checking
    the number of inputs and every attribute's name and type against :data:`PLUGIN_OPS`."""
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
    """Register ONNX schemas (domain ``edgeseg``, version 1) for the plugin ops; idempotent."""
    from onnx import defs

    attr_types = {int: defs.OpSchema.AttrType.INT, float: defs.OpSchema.AttrType.FLOAT,
                  str: defs.OpSchema.AttrType.STRING}
    for op, (inputs, attrs) in PLUGIN_OPS.items():
        if defs.has(op, DOMAIN):
            continue
        attributes = [defs.OpSchema.Attribute(k, attr_types[t], f"{op} attribute {k}") for k, t in attrs.items()]
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
