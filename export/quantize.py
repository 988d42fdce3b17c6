"""Precision as a property of the ONNX artifact: FP32 -> FP16 ONNX, FP32 -> INT8 Q/DQ ONNX.

TensorRT 11 removed the FP16/INT8 builder flags and the INT8 calibrators, and JetPack 6 ships
TensorRT 10.3; a precision baked into the ONNX file serves both through one strongly typed build,
and its accuracy is measurable on any CPU with ONNX Runtime.

* FP16: every float tensor becomes float16 except the inputs and outputs (kept float32, so callers
  and sidecars do not change) and the ops in :data:`FP32_OPS` (softmax, resize, reductions,
  exp/log/pow, custom ops), which run in FP32 between Cast nodes.
  Converter: ``onnxconverter_common.float16`` (``pip install onnxconverter-common``).
* INT8: ONNX Runtime's static quantization in Q/DQ format, symmetric (zero point 0, what TensorRT
  requires), FP32 bias, per-channel weights, activation ranges calibrated on real images fed through the
  sidecar's own preprocessing.

>>> from edgeseg.export.quantize import quantize                                  # doctest: +SKIP
>>> quantize("hc18_fastseg.onnx", "fp16")                                         # doctest: +SKIP
>>> quantize("hc18_fastseg.onnx", "int8", calibration=sorted(Path("imgs").glob("*.png"))[:64])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg._deps import require
from edgeseg.artifact import Artifact
from edgeseg.errors import InputError, MissingDependencyError

PRECISIONS = ("fp16", "int8")
# Ops kept in FP32 in an FP16 model: numerically sensitive (softmax/normalisation/exp/log/pow/
# reductions), interpolation and index/ROI ops, and ops ONNX Runtime's CPU provider has no FP16
# kernel for (so the FP16 file stays measurable on a CPU).
FP32_OPS = (
    "Softmax", "LogSoftmax", "Resize", "Upsample", "ReduceMean", "ReduceSum", "ReduceL2", "ReduceLogSumExp",
    "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Erf", "InstanceNormalization", "LayerNormalization",
    "RoiAlign", "DeformConv", "NonMaxSuppression", "TopK", "Range", "CumSum", "GridSample",
)
INT8_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def default_output(source: Artifact, precision: str) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx`` / ``model.int8.onnx``."""
    return source.path.with_name(f"{source.path.stem}.{precision}.onnx")


def _load_source(onnx: str | Path | Artifact) -> Artifact:
    source = onnx if isinstance(onnx, Artifact) else Artifact.load(onnx)
    if source.format != "onnx":
        raise InputError(f"model: got {source.path.name} ({source.format}), expected an .onnx artifact")
    if source.precision != "fp32":
        raise InputError(f"model: {source.path.name} is already {source.precision}; quantize the FP32 ONNX file")
    return source


def name_nodes(model) -> None:
    """Give every unnamed node a unique name (``conv_3``): layers are chosen and reported by name."""
    taken = {n.name for n in model.graph.node}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type.lower()}_{index}"
            while node.name in taken:
                node.name += "_"
            taken.add(node.name)


def fp16_block_ops(keep_fp32: Sequence[str] = FP32_OPS) -> list[str]:
    """Op types an FP16 file keeps in FP32: ``keep_fp32`` and the converter's own block list."""
    from onnxconverter_common import float16

    return sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32))


def quantize_fp16(onnx: str | Path | Artifact, out_path: str | Path | None = None,
                  keep_fp32: Sequence[str] = FP32_OPS, keep_nodes: Sequence[str] = (),
                  info: dict[str, Any] | None = None) -> Artifact:
    """FP32 ONNX -> FP16 ONNX (float32 inputs/outputs, ``keep_fp32`` ops and ``keep_nodes`` (node names)
    in FP32) with its sidecar; ``info`` adds to the sidecar's ``extra.quantization``.

    Returns the new :class:`Artifact` (``precision="fp16"``); ``extra.quantization.layer_precisions``
    names every node that runs in FP32.
    """
    onnx_lib = require("onnx", "FP16 conversion")
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise MissingDependencyError(
            f"onnxconverter_common is needed for FP16 conversion but cannot be imported ({exc}). "
            "Install it with: pip install onnxconverter-common (in 'edgeseg[workstation]')"
        ) from exc
    source = _load_source(onnx)
    out = Path(out_path) if out_path is not None else default_output(source, "fp16")
    model = onnx_lib.load(str(source.path))
    model_outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    name_nodes(model)  # the converter names its Casts after the node
    block = fp16_block_ops(keep_fp32)
    names = {n.name for n in model.graph.node}
    unknown = sorted(set(keep_nodes) - names)
    if unknown:
        raise InputError(f"keep_nodes: {unknown[:5]} are not nodes of {source.path.name}")
    # sampling-grid coordinates of a decomposed export (onnx_export.sampling_grid_nodes) stay FP32
    keep = set(keep_nodes) | (set((source.extra.get("export") or {}).get("fp32_nodes", [])) & names)
    fp32_layers = {n.name: "fp32" for n in model.graph.node if n.op_type in block or n.name in keep}
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block,
                                                 node_block_list=sorted(keep))
    # The converter retypes value_info of tensors that its inserted Casts keep in FP32 (a known
    # onnxconverter-common bug: ORT then refuses the model); intermediate value_info is optional.
    del converted.graph.value_info[:]
    _restore_float32_outputs(onnx_lib, model_outputs, converted)
    _drop_cast_round_trips(converted)
    onnx_lib.checker.check_model(converted)
    onnx_lib.save(converted, str(out))
    kept = sorted({n.op_type for n in converted.graph.node if n.op_type in set(keep_fp32)})
    return _save_sidecar(source, out, "fp16", {"method": "onnxconverter_common.float16", "fp32_ops": kept,
                                               "io_dtype": "float32", **(info or {}),
                                               "layer_precisions": fp32_layers})


def _restore_float32_outputs(onnx_lib, original: dict[str, int], model) -> None:
    """Make every output that was float32 float32 again. The converter ignores ``keep_io_types`` for an
    output produced by a blocked (FP32) op: it appends a Cast to float16 there."""
    float32, float16 = onnx_lib.TensorProto.FLOAT, onnx_lib.TensorProto.FLOAT16
    producers = {out: node for node in model.graph.node for out in node.output}
    for output in model.graph.output:
        if original.get(output.name) != float32 or output.type.tensor_type.elem_type != float16:
            continue
        node = producers.get(output.name)
        if node is not None and node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = float32  # its input is the blocked op's FP32 result: the cast becomes identity
        else:
            inner = output.name + "_fp16"
            for n in model.graph.node:
                n.output[:] = [inner if o == output.name else o for o in n.output]
            model.graph.node.append(onnx_lib.helper.make_node("Cast", [inner], [output.name], to=float32))
        output.type.tensor_type.elem_type = float32


def _drop_cast_round_trips(model) -> int:
    """Remove FP32 -> FP16 -> FP32 Cast pairs the converter puts between two FP32 nodes; returns the count.

    Beside the lost precision, TensorRT refuses one on a shape value (ShapeHostToDeviceCopy: FP16 output).
    """
    def target(node):
        return next((a.i for a in node.attribute if a.name == "to"), None)

    float16, float32 = 10, 1  # onnx.TensorProto.FLOAT16, FLOAT
    nodes = model.graph.node
    graph_outputs = {o.name for o in model.graph.output}
    removed = 0
    for node in list(nodes):
        if node.op_type != "Cast" or target(node) != float16 or node.output[0] in graph_outputs:
            continue
        users = [u for u in nodes if node.output[0] in u.input]
        if not users or not all(u.op_type == "Cast" and target(u) == float32 and u.output[0] not in graph_outputs
                                for u in users):
            continue
        for user in users:
            for other in nodes:
                other.input[:] = [node.input[0] if name == user.output[0] else name for name in other.input]
            nodes.remove(user)
        nodes.remove(node)
        removed += 1
    return removed


def image_batches(source: Artifact, images: Iterable[str | Path], batch: int = 1) -> Iterable[np.ndarray]:
    """Real images -> model inputs ``(batch, C, H, W)`` float32 with the sidecar's preprocessing."""
    from edgeseg.data.dataset import load_image, preprocess_image

    pending = []
    for path in images:
        pending.append(preprocess_image(load_image(path), source.preprocess))
        if len(pending) == batch:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack(pending)


def _calibration_reader(input_name: str, batches: Iterable[np.ndarray]):
    """A reader over single images that ORT's strided calibration reads chunk by chunk (``set_range``)."""
    from onnxruntime.quantization import CalibrationDataReader

    images = [image for batch in batches for image in np.asarray(batch, np.float32)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.count = len(images)
            self.set_range(0, len(images))

        def __len__(self) -> int:
            return len(images)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._items = iter(images[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._items, None)
            return None if image is None else {input_name: image[None]}

    return Reader()


def _chunk(count: int, most: int = 16) -> int:
    """The largest divisor of ``count`` up to ``most``: images whose activations are held at once."""
    return max(d for d in range(1, min(count, most) + 1) if count % d == 0)


def quantize_int8(onnx: str | Path | Artifact, out_path: str | Path | None = None, *,
                  calibration: Sequence[str | Path] | Iterable[np.ndarray] | None = None,
                  method: str = "percentile", per_channel: bool = True,
                  op_types: Sequence[str] = INT8_OPS, exclude: Sequence[str] = (),
                  calibration_cache: str | Path | None = None, info: dict[str, Any] | None = None) -> Artifact:
    """FP32 ONNX -> INT8 Q/DQ ONNX (symmetric, per-channel weights) calibrated on real data.

    Args:
        calibration: image files (read and preprocessed as the sidecar says) or ready input arrays
            ``(N, C, H, W)`` float32; 32..500 images of the deployment domain are typical.
        method: activation range estimate: ``"minmax"``, ``"entropy"`` or ``"percentile"`` (99.999%).
        op_types: ops whose inputs get Q/DQ (default: convolutions and matrix products, what TensorRT
            fuses; the rest stays FP32 between them).
        exclude: node names (of :func:`int8_layers`) kept in FP32.
        calibration_cache: a JSON file of activation ranges: read when it exists (then ``calibration``
            may be None), written otherwise, so several files share one calibration.
        info: added to the sidecar's ``extra.quantization``.

    Returns the new :class:`Artifact` (``precision="int8"``); ``extra.quantization.layer_precisions``
    names every ``op_types`` node left in FP32.
    """
    if method not in CALIBRATION_METHODS:
        raise InputError(f"method: got {method!r}, expected one of {CALIBRATION_METHODS}")
    source = _load_source(onnx)
    out = Path(out_path) if out_path is not None else default_output(source, "int8")
    cache = Path(calibration_cache) if calibration_cache is not None else None
    items = list(calibration) if calibration is not None else []
    if not items and not (cache and cache.is_file()):
        raise InputError("calibration: got no images, expected real images of the deployment domain (32+)")
    pre = out.with_name(out.stem + ".pre.onnx")
    preprocess_for_int8(source.path, pre)
    try:
        count = qdq_from_preprocessed(pre, out, source, items, method=method, per_channel=per_channel,
                                      op_types=op_types, exclude=exclude, calibration_cache=cache)
    finally:
        pre.unlink(missing_ok=True)
    files = items if items and isinstance(items[0], (str, Path)) else []
    return _save_sidecar(source, out, "int8", int8_details(out, method, per_channel, op_types, count, files, info))


def int8_details(path: Path, method: str, per_channel: bool, op_types: Sequence[str], samples: int,
                 files: Sequence[str | Path], info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar's ``extra.quantization`` of the Q/DQ file ``path``: ``samples`` calibration images (0: not
    recorded), ``files`` the calibration image paths (empty: arrays), ``info`` added before the layer list."""
    details: dict[str, Any] = {"method": f"onnxruntime.quantization.quantize_static QDQ ({method})",
                               "calibration_method": method, "per_channel": per_channel, "symmetric": True,
                               "op_types": list(op_types)}
    if samples:
        details["calibration_samples"] = samples
    if files:
        details["calibration_source"] = str(Path(files[0]).parent)
    details.update(info or {})
    details["layer_precisions"] = int8_layer_precisions(path, op_types)
    return details


def preprocess_for_int8(fp32_path: str | Path, out: str | Path) -> Path:
    """ORT's quantization pre-processing (shape inference, graph cleanup) with every node named."""
    onnx_lib = require("onnx", "INT8 quantization")
    q = require("onnxruntime.quantization", "INT8 quantization")
    q.quant_pre_process(str(fp32_path), str(out), skip_symbolic_shape=True)
    model = onnx_lib.load(str(out))
    name_nodes(model)
    onnx_lib.save(model, str(out))
    return Path(out)


def int8_layers(pre_path: str | Path, op_types: Sequence[str] = INT8_OPS) -> list[str]:
    """Names of the nodes INT8 quantizes (in graph order) in a :func:`preprocess_for_int8` model."""
    onnx_lib = require("onnx", "INT8 quantization")
    return [n.name for n in onnx_lib.load(str(pre_path)).graph.node if n.op_type in set(op_types)]


def qdq_from_preprocessed(pre: Path, out: Path, source: Artifact, calibration: Sequence[Any], *,
                          method: str, per_channel: bool, op_types: Sequence[str], exclude: Sequence[str] = (),
                          calibration_cache: Path | None = None) -> int:
    """Write the Q/DQ file ``out`` from a pre-processed model; returns the number of calibration images
    read (0 when the ranges came from ``calibration_cache``)."""
    q = require("onnxruntime.quantization", "INT8 quantization")
    reader = None
    if calibration and not (calibration_cache and calibration_cache.is_file()):
        items = list(calibration)
        batches = image_batches(source, items) if isinstance(items[0], (str, Path)) else items
        reader = _calibration_reader(source.inputs[0].name if source.inputs else "input", batches)
    q.quantize_static(
        str(pre), str(out), reader, quant_format=q.QuantFormat.QDQ, op_types_to_quantize=list(op_types),
        per_channel=per_channel, activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
        nodes_to_exclude=list(exclude),
        calibrate_method={"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                          "percentile": q.CalibrationMethod.Percentile}[method],
        calibration_cache_path=str(calibration_cache) if calibration_cache else None,
        # symmetric INT8 with zero point 0 and FP32 bias: the Q/DQ form TensorRT's explicit
        # quantization takes (an INT32 bias DequantizeLinear is not part of it). Calibration reads the
        # images in chunks (ORT's "strided" collection, for every method): the histogram methods
        # otherwise hold every intermediate tensor of every image at once. Q/DQ sit on the inputs of
        # quantized ops only (TensorRT's placement): a quantized op's output is not re-quantized, so a
        # node kept in FP32 really reads FP32 and the model's outputs stay FP32.
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                       "OpTypesToExcludeOutputQuantization": list(op_types),
                       **({"CalibStridedMinMax": _chunk(len(reader))} if reader is not None else {})},
    )
    if reader is not None and reader.count == 0:
        raise InputError("calibration: produced no input batches")
    return reader.count if reader is not None else 0


def int8_layer_precisions(path: str | Path, op_types: Sequence[str] = INT8_OPS) -> dict[str, str]:
    """``{node name: "fp32"}`` for every ``op_types`` node of a Q/DQ file whose data input is not dequantized."""
    onnx_lib = require("onnx", "INT8 quantization")
    model = onnx_lib.load(str(path))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return {n.name: "fp32" for n in model.graph.node
            if n.op_type in set(op_types) and producers.get(n.input[0]) != "DequantizeLinear"}


def quantize(onnx: str | Path | Artifact, precision: str, out_path: str | Path | None = None,
             **options: Any) -> Artifact:
    """``quantize(model, "fp16")`` or ``quantize(model, "int8", calibration=images)``; see the two functions."""
    if precision == "fp16":
        return quantize_fp16(onnx, out_path, **options)
    if precision == "int8":
        return quantize_int8(onnx, out_path, **options)
    raise InputError(f"precision: got {precision!r}, expected one of {PRECISIONS}")


def _save_sidecar(source: Artifact, out: Path, precision: str, info: dict[str, Any]) -> Artifact:
    extra = {**source.extra, "quantization": {**info, "source": source.path.name}}
    artifact = source.with_path(out, precision=precision, extra=extra)
    artifact.save()
    return artifact
