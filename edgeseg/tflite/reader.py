"""Read a ``.tflite`` flatbuffer into plain Python: tensors, constants and operators (NumPy only).

Uses the ``tflite`` package (the generated flatbuffer schema; no TensorFlow). Constant tensors come back
as NumPy arrays in TFLite's own layout (NHWC activations, OHWI conv weights); float16 constants that feed a
``DEQUANTIZE`` are folded to float32 here, so the converter never sees that op.

>>> model = read_tflite("selfie_segmentation.tflite")    # doctest: +SKIP
>>> [op.name for op in model.ops][:3]                      # doctest: +SKIP
['CONV_2D', 'HARD_SWISH', 'CONV_2D']
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import ArtifactError

# tflite.TensorType value -> NumPy dtype (the types a float model can contain).
_DTYPES = {
    0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
    9: np.int8, 10: np.float64,
}


@dataclass
class TensorInfo:
    """One tensor of the graph: ``shape`` in TFLite order (NHWC for images)."""

    index: int
    name: str
    shape: list[int]
    dtype: str
    quantized: bool = False


@dataclass
class TfliteOp:
    """One operator: ``name`` is the builtin name (``CONV_2D``) or the custom code for ``CUSTOM`` ops."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    custom: bool = False
    custom_options: bytes = b""


@dataclass
class TfliteModel:
    """A parsed single-subgraph TFLite model."""

    path: Path
    description: str
    tensors: dict[int, TensorInfo]
    constants: dict[int, np.ndarray]
    inputs: list[int]
    outputs: list[int]
    ops: list[TfliteOp]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.name] = counts.get(op.name, 0) + 1
        return counts


def read_tflite(path: str | Path) -> TfliteModel:
    """Parse ``path`` (a ``.tflite`` file). Raises :class:`ArtifactError` for a file that is not one."""
    tflite = require("tflite", "reading .tflite models")
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"TFLite model not found: {path}")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ArtifactError(f"{path}: not a TFLite flatbuffer (file identifier {buf[4:8]!r}, expected b'TFL3')")
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise ArtifactError(f"{path}: has {model.SubgraphsLength()} subgraphs, expected exactly 1")
    graph = model.Subgraphs(0)
    tensors = {i: _tensor_info(graph.Tensors(i), i) for i in range(graph.TensorsLength())}
    constants = {}
    for i in range(graph.TensorsLength()):
        value = _constant(model, graph.Tensors(i), buf, tensors[i])
        if value is not None:
            constants[i] = value
    ops = [_operator(tflite, model, graph.Operators(i), i) for i in range(graph.OperatorsLength())]
    ops = _fold_dequantize(ops, constants, tensors)
    description = (model.Description() or b"").decode("utf-8", "replace")
    return TfliteModel(
        path=path, description=description, tensors=tensors, constants=constants,
        inputs=[int(i) for i in graph.InputsAsNumpy()], outputs=[int(i) for i in graph.OutputsAsNumpy()], ops=ops,
    )


def _tensor_info(tensor, index: int) -> TensorInfo:
    dtype = _DTYPES.get(tensor.Type())
    quant = tensor.Quantization()
    quantized = bool(quant is not None and quant.ScaleLength() > 0)
    return TensorInfo(
        index=index, name=(tensor.Name() or b"").decode("utf-8", "replace"),
        shape=[int(s) for s in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else [],
        dtype=np.dtype(dtype).name if dtype is not None else f"tflite_type_{tensor.Type()}", quantized=quantized,
    )


def _constant(model, tensor, buf: bytes, info: TensorInfo) -> np.ndarray | None:
    buffer = model.Buffers(tensor.Buffer())
    if buffer is None:
        return None
    if buffer.DataLength() > 0:
        raw = buffer.DataAsNumpy().tobytes()
    elif buffer.Offset() > 1:  # large models keep weights after the flatbuffer
        raw = buf[buffer.Offset(): buffer.Offset() + buffer.Size()]
    else:
        return None
    if info.dtype.startswith("tflite_type_"):
        raise ArtifactError(f"constant tensor {info.name!r} has unsupported {info.dtype}")
    return np.frombuffer(raw, dtype=info.dtype).reshape(info.shape).copy()


def _operator(tflite, model, op, index: int) -> TfliteOp:
    from tflite.BuiltinOperator import BuiltinOperator

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = names.get(builtin, f"BUILTIN_{builtin}")
    custom = name == "CUSTOM"
    custom_options = b""
    if custom:
        name = (code.CustomCode() or b"").decode("utf-8", "replace")
        custom_options = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
    return TfliteOp(
        index=index, name=name, inputs=[int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else [],
        outputs=[int(i) for i in op.OutputsAsNumpy()], options=_builtin_options(tflite, op),
        custom=custom, custom_options=custom_options,
    )


def _builtin_options(tflite, op) -> dict[str, Any]:
    """The operator's options table as a dict of scalar fields (``{'StrideH': 2, 'Padding': 0, ...}``)."""
    from tflite.BuiltinOptions import BuiltinOptions

    kind = op.BuiltinOptionsType()
    if kind == 0:
        return {}
    class_names = {v: k for k, v in vars(BuiltinOptions).items() if not k.startswith("_")}
    cls = getattr(tflite, class_names[kind], None)
    if cls is None:
        return {}
    table = op.BuiltinOptions()
    options = cls()
    options.Init(table.Bytes, table.Pos)
    values = {}
    for attr in dir(options):
        if not attr[:1].isupper() or attr in ("Init",) or attr.startswith("GetRoot"):
            continue
        if attr.endswith(("BufferHasIdentifier", "IsNone", "Length")) or "AsNumpy" in attr:
            continue
        try:
            values[attr] = getattr(options, attr)()
        except TypeError:  # vector accessors take an index; none of the ops we convert needs them
            continue
    return values


def _fold_dequantize(ops: list[TfliteOp], constants: dict[int, np.ndarray], tensors) -> list[TfliteOp]:
    """Turn ``DEQUANTIZE(float16 constant)`` into a float32 constant and drop the op."""
    kept = []
    for op in ops:
        if op.name == "DEQUANTIZE" and op.inputs[0] in constants and not tensors[op.inputs[0]].quantized:
            constants[op.outputs[0]] = constants[op.inputs[0]].astype(np.float32)
            continue
        kept.append(op)
    return kept


def transpose_conv_bias_options(raw: bytes) -> dict[str, int]:
    """Decode MediaPipe's ``Convolution2DTransposeBias`` custom options.

    They are a packed C ``TfLiteTransposeConvParams``: ``int32 padding`` (1 = SAME, 2 = VALID, the
    ``TfLitePadding`` enum), ``int32 stride_width``, ``int32 stride_height``.
    """
    if len(raw) < 12:
        raise ArtifactError(f"Convolution2DTransposeBias: custom options are {len(raw)} bytes, expected 12")
    padding, stride_w, stride_h = struct.unpack("<iii", raw[:12])
    if padding not in (1, 2):
        raise ArtifactError(f"Convolution2DTransposeBias: padding code {padding}, expected 1 (SAME) or 2 (VALID)")
    return {"Padding": 0 if padding == 1 else 1, "StrideW": stride_w, "StrideH": stride_h}
