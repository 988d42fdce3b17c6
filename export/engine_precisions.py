"""Did a TensorRT network or engine keep the layer precisions the ONNX sidecar asks for?

The sidecar of a quantized file lists, in ``extra.quantization.layer_precisions``, every ONNX node whose
precision differs from the file's nominal one (``{"/dec/conv/Conv": "fp32"}``). A built engine reports
what it runs through its engine inspector (``ProfilingVerbosity.DETAILED``, ``LayerInformationFormat.JSON``):
each engine layer has a ``Name`` made of the fused ONNX node names (``"a + b"``), often ``Metadata`` with
``[ONNX Layer: name]``, and a ``Format/Datatype`` per input/output (``"Row major linear FP32"``, ``"Int8"``,
``"Half"``) and, for convolutions, ``Weights.Type``.

Two checks. :func:`network_precision_mismatches` needs no GPU: a strongly typed network (TensorRT-RTX builds
one on any CPU; standard TensorRT 10.x+) computes each layer in the type of its tensors, and a layer that reads
a DequantizeLinear output runs in that quantized type once TensorRT fuses the pair. :func:`precision_mismatches`
reads a built engine's inspector (needs a device to deserialize the engine).

>>> network_precision_mismatches("m.int8.onnx", flavour="rtx")                     # doctest: +SKIP
(<Flavour rtx>, {}, [])
>>> info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)        # doctest: +SKIP
>>> precision_mismatches(info, Artifact.load("m.int8.onnx").extra["quantization"]["layer_precisions"])  # doctest: +SKIP
{}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeseg.artifact import Artifact
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


# TensorRT DataType name -> precision; integer/bool types are not a compute precision of a float layer.
_TRT_TYPES = {"FLOAT": "fp32", "HALF": "fp16", "BF16": "bf16", "INT8": "int8", "FP8": "fp8", "INT4": "int4",
              "FP4": "fp4"}
_NO_COMPUTE = ("CONSTANT", "SHAPE", "IDENTITY")  # hold, measure or pass a tensor on: no arithmetic of their own


def _nodes_of_layer(layer) -> set[str]:
    """The ONNX node names a parsed layer came from: ``[ONNX Layer: name]`` in its metadata (TensorRT 10+), else
    its name (the ONNX parser names a node's main layer after the node)."""
    found = set(_ONNX_LAYER.findall(str(getattr(layer, "metadata", "") or "")))
    return found or {layer.name}


def network_layer_precisions(network) -> dict[str, list[str]]:
    """``{onnx node: [precisions]}`` of a parsed strongly typed ``INetworkDefinition``: each non-constant layer of
    the node computes in its float tensors' type, or in the quantized type when an input comes straight from a
    DequantizeLinear (TensorRT fuses that pair into a quantized layer). Nodes with no float tensors (shape
    arithmetic) list nothing."""
    producers = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            producers[layer.get_output(j).name] = layer
    out: dict[str, set[str]] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = layer.type.name
        if kind in _NO_COMPUTE:
            continue
        found = set()
        tensors = [layer.get_input(j) for j in range(layer.num_inputs)]
        tensors = [t for t in tensors if t is not None]
        for tensor in tensors:
            producer = producers.get(tensor.name)
            if producer is not None and producer.type.name == "DEQUANTIZE" and kind not in ("QUANTIZE", "DEQUANTIZE"):
                quantized = producer.get_input(0)
                found.add(_TRT_TYPES.get(quantized.dtype.name, quantized.dtype.name.lower()))
        if not found or kind in ("QUANTIZE", "DEQUANTIZE"):
            outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
            found |= {_TRT_TYPES[t.dtype.name] for t in tensors + outputs
                      if t.dtype.name in _TRT_TYPES and t.dtype.name not in ("INT8", "INT4")}
        for node in _nodes_of_layer(layer):
            out.setdefault(node, set()).update(found)
    return {node: sorted(found) for node, found in out.items()}


def network_precision_mismatches(onnx: str | Path | Artifact, layer_precisions: Mapping[str, str] | None = None, *,
                                 flavour: str = "auto", plugins: str | None = None):
    """Parse ``onnx`` into a strongly typed network (no build, no GPU with TensorRT-RTX) and compare its layers
    with ``layer_precisions`` (default: the sidecar's ``extra.quantization.layer_precisions``).

    Returns ``(flavour, mismatches, absent)``: ``mismatches`` is ``{node: {"expected": p, "network": [found]}}``
    for each node computing in any other precision; ``absent`` lists nodes the parser folded away (they
    compute nothing in the engine)."""
    from .trt_build import _network_flags, _parse, capturing_logger, load_flavour, register_plugins

    source = onnx if isinstance(onnx, Artifact) else Artifact.load(onnx)
    if layer_precisions is None:
        layer_precisions = (source.extra.get("quantization") or {}).get("layer_precisions") or {}
    lib = load_flavour(flavour)
    trt = lib.trt
    logger = capturing_logger(trt, echo_severity=0)
    mark = logger.mark()
    register_plugins(lib, plugins or source.extra.get("plugins", "native"))
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, True, False))
    parser = _parse(trt, network, logger, source.path, mark)
    found = network_layer_precisions(network)
    del parser, network, builder
    mismatches, absent = {}, []
    for node, expected in layer_precisions.items():
        if node not in found:
            absent.append(node)
        elif any(p != expected for p in found[node]):
            mismatches[node] = {"expected": expected, "network": found[node]}
    return lib, mismatches, absent


def engine_precision_mismatches(engine: str | Path, layer_precisions: Mapping[str, str], *, flavour: str = "tensorrt",
                                plugins: str = "native") -> dict[str, dict]:
    """Deserialize a built engine (needs its GPU; built with ``detailed_profile=True``) and compare its inspector's
    layers with ``layer_precisions``: ``{node: {"expected": p, "engine": [found]}}`` for each node an engine layer
    names that runs in another precision. Nodes no engine layer names (fused into a generated kernel) or whose
    layers show no data type are not judged here; the network check covers them."""
    from edgeseg.runtime.tensorrt_env import capturing_logger, load_flavour, log_text
    from edgeseg.runtime.tensorrt_plugins import register_plugins

    lib = load_flavour(flavour)
    trt = lib.trt
    logger = capturing_logger(trt, echo_severity=0)
    mark = logger.mark()
    register_plugins(lib, plugins)
    runtime = trt.Runtime(logger)
    built = runtime.deserialize_cuda_engine(Path(engine).read_bytes())
    if built is None:
        raise InputError(f"engine: {engine} does not deserialize in {lib.label} {lib.version}: "
                         + log_text(logger, worst=1, since=mark))
    info = built.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    return {node: found for node, found in precision_mismatches(info, layer_precisions).items()
            if found["engine"]}
