"""Did a TensorRT engine keep the layer precisions the ONNX sidecar asks for?

The sidecar of a quantized file lists, in ``extra.quantization.layer_precisions``, every ONNX node whose
precision differs from the file's nominal one (``{"/dec/conv/Conv": "fp32"}``). A built engine reports
what it runs through its engine inspector (``ProfilingVerbosity.DETAILED``, ``LayerInformationFormat.JSON``):
each engine layer has a ``Name`` made of the fused ONNX node names (``"a + b"``), often ``Metadata`` with
``[ONNX Layer: name]``, and a ``Format/Datatype`` per input/output (``"Row major linear FP32"``, ``"Int8"``,
``"Half"``) and, for convolutions, ``Weights.Type``.

>>> info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)        # doctest: +SKIP
>>> precision_mismatches(info, Artifact.load("m.int8.onnx").extra["quantization"]["layer_precisions"])  # doctest: +SKIP
{}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from edgeseg.errors import InputError

_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def datatype(text: str) -> str | None:
    """An inspector ``Format/Datatype`` or weight type -> ``"fp32"``, ``"fp16"``, ``"bf16"``, ``"int8"``,
    ``"fp8"`` or None (unknown, e.g. "N/A due to dynamic shapes")."""
    low = str(text).lower()
    for needle, name in (("int8", "int8"), ("fp8", "fp8"), ("bf16", "bf16"), ("half", "fp16"), ("fp16", "fp16"),
                         ("float", "fp32"), ("fp32", "fp32")):
        if needle in low:
            return name
    return None


def layer_precision(layer: Mapping[str, Any]) -> str | None:
    """What an engine layer computes in: its weights' type when it has weights, else its first input's."""
    weights = layer.get("Weights")
    if isinstance(weights, Mapping) and datatype(weights.get("Type", "")):
        return datatype(weights["Type"])
    for tensor in layer.get("Inputs", []):
        found = datatype(tensor.get("Format/Datatype", "")) if isinstance(tensor, Mapping) else None
        if found:
            return found
    return None


def onnx_nodes(layer: Mapping[str, Any]) -> set[str]:
    """The ONNX node names an engine layer was built from (its fused name and its metadata)."""
    names = {part.strip() for part in str(layer.get("Name", "")).split(" + ")}
    names |= set(_ONNX_LAYER.findall(str(layer.get("Metadata", ""))))
    return {n for n in names if n}


def precision_mismatches(engine_info: str | Mapping[str, Any], layer_precisions: Mapping[str, str]) -> dict[str, dict]:
    """``{onnx node: {"expected": p, "engine": [precisions] or None}}`` for each node of ``layer_precisions``
    that the engine runs in another precision (``engine`` lists what it found) or that no engine layer
    names (``engine`` None: fused away or renamed, so unchecked). Empty when all kept their precision."""
    info = json.loads(engine_info) if isinstance(engine_info, str) else engine_info
    layers = info.get("Layers") if isinstance(info, Mapping) else None
    if not isinstance(layers, list) or any(not isinstance(layer, Mapping) for layer in layers):
        raise InputError("engine_info: expected the engine inspector's JSON with detailed layers (build with "
                         "ProfilingVerbosity.DETAILED, read with LayerInformationFormat.JSON)")
    by_node: dict[str, list[str | None]] = {}
    for layer in layers:
        if layer.get("LayerType") == "Reformat":
            continue
        for node in onnx_nodes(layer):
            by_node.setdefault(node, []).append(layer_precision(layer))
    out = {}
    for node, expected in layer_precisions.items():
        found = by_node.get(node)
        seen = sorted({p for p in found or [] if p})
        if found is None or seen != [expected]:
            out[node] = {"expected": expected, "engine": seen if found is not None else None}
    return out
