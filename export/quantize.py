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


def quantize_fp16(onnx: str | Path | Artifact, out_path: str | Path | None = None,
                  keep_fp32: Sequence[str] = FP32_OPS) -> Artifact:
    """FP32 ONNX -> FP16 ONNX (float32 inputs/outputs, ``keep_fp32`` ops in FP32) with its sidecar.

    Returns the new :class:`Artifact` (``precision="fp16"``).
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
    taken = {n.name for n in model.graph.node}
    for index, node in enumerate(model.graph.node):  # the converter names its Casts after the node
        if not node.name:
            node.name = f"{node.op_type.lower()}_{index}"
            while node.name in taken:
                node.name += "_"
            taken.add(node.name)
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32))
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    # The converter retypes value_info of tensors that its inserted Casts keep in FP32 (a known
    # onnxconverter-common bug: ORT then refuses the model); intermediate value_info is optional.
    del converted.graph.value_info[:]
    _restore_float32_outputs(onnx_lib, model_outputs, converted)
    onnx_lib.checker.check_model(converted)
    onnx_lib.save(converted, str(out))
    kept = sorted({n.op_type for n in converted.graph.node if n.op_type in set(keep_fp32)})
    return _save_sidecar(source, out, "fp16", {"method": "onnxconverter_common.float16", "fp32_ops": kept,
                                               "io_dtype": "float32"})


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
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)
            self.count = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            self.count += int(batch.shape[0])
            return {input_name: batch}

    return Reader()


def quantize_int8(onnx: str | Path | Artifact, out_path: str | Path | None = None, *,
                  calibration: Sequence[str | Path] | Iterable[np.ndarray],
                  method: str = "percentile", per_channel: bool = True,
                  op_types: Sequence[str] = INT8_OPS) -> Artifact:
    """FP32 ONNX -> INT8 Q/DQ ONNX (symmetric, per-channel weights) calibrated on real data.

    Args:
        calibration: image files (read and preprocessed as the sidecar says) or ready input arrays
            ``(N, C, H, W)`` float32; 32..500 images of the deployment domain are typical.
        method: activation range estimate: ``"minmax"``, ``"entropy"`` or ``"percentile"`` (99.999%).
        op_types: ops whose inputs get Q/DQ (default: convolutions and matrix products, what TensorRT
            fuses; the rest stays FP32 between them).

    Returns the new :class:`Artifact` (``precision="int8"``).
    """
    q = require("onnxruntime.quantization", "INT8 quantization")
    if method not in CALIBRATION_METHODS:
        raise InputError(f"method: got {method!r}, expected one of {CALIBRATION_METHODS}")
    source = _load_source(onnx)
    out = Path(out_path) if out_path is not None else default_output(source, "int8")
    items = list(calibration)
    if not items:
        raise InputError("calibration: got no images, expected real images of the deployment domain (32+)")
    batches = image_batches(source, items) if isinstance(items[0], (str, Path)) else items
    input_name = source.inputs[0].name if source.inputs else "input"
    reader = _calibration_reader(input_name, batches)
    pre = out.with_name(out.stem + ".pre.onnx")
    q.quant_pre_process(str(source.path), str(pre), skip_symbolic_shape=True)
    try:
        q.quantize_static(
            str(pre), str(out), reader, quant_format=q.QuantFormat.QDQ, op_types_to_quantize=list(op_types),
            per_channel=per_channel, activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
            calibrate_method={"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                              "percentile": q.CalibrationMethod.Percentile}[method],
            # symmetric INT8 with zero point 0 and FP32 bias: the Q/DQ form TensorRT's explicit
            # quantization takes (an INT32 bias DequantizeLinear is not part of it)
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
    finally:
        pre.unlink(missing_ok=True)
    if reader.count == 0:
        raise InputError("calibration: produced no input batches")
    info: dict[str, Any] = {"method": f"onnxruntime.quantization.quantize_static QDQ ({method})",
                            "calibration_samples": reader.count, "per_channel": per_channel,
                            "symmetric": True, "op_types": list(op_types)}
    if isinstance(items[0], (str, Path)):
        info["calibration_source"] = str(Path(items[0]).parent)
    return _save_sidecar(source, out, "int8", info)


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
