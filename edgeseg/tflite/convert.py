"""Convert a parsed TFLite graph (NHWC) into edgeseg's graph description (NCHW) plus PyTorch-layout weights.

The description is plain JSON (it goes into the sidecar's ``model_kwargs["graph"]``); the weights go to
safetensors under the names :class:`edgeseg.tflite.graph_model.TfliteGraph` gives its parameters
(``layers.<node key>.weight`` ...). NumPy only.

Layout rules (TFLite -> PyTorch):

* activations NHWC -> NCHW; every activation must be 4-D (image models);
* ``CONV_2D`` weights OHWI -> OIHW; ``DEPTHWISE_CONV_2D`` 1HW(C*M) -> (C*M)1HW with ``groups=C``;
  ``TRANSPOSE_CONV`` / ``Convolution2DTransposeBias`` OHWI -> IOHW;
* SAME padding is TensorFlow's: ``total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)``,
  ``before = total // 2`` and the odd pixel goes after (bottom/right);
* axis arguments (``MEAN``, ``CONCATENATION``, ``PAD``; ``SOFTMAX``'s last axis) and broadcast constants are
  permuted to NCHW.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ArtifactError
from .reader import TfliteModel, TfliteOp, transpose_conv_bias_options

GRAPH_FORMAT = 1
NHWC_TO_NCHW_AXIS = (0, 2, 3, 1)  # NHWC axis a is NCHW axis NHWC_TO_NCHW_AXIS[a]
# TFLite's kernels clamp to the fused activation's range; they ignore TANH (4) and SIGN_BIT (5), so
# those are rejected rather than guessed.
FUSED_ACTIVATIONS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}
ACTIVATIONS = {
    "RELU": "relu", "RELU6": "relu6", "RELU_N1_TO_1": "relu_n1_to_1", "LOGISTIC": "sigmoid",
    "TANH": "tanh", "HARD_SWISH": "hardswish", "LEAKY_RELU": "leaky_relu",
}
BINARY = {"ADD": "add", "SUB": "sub", "MUL": "mul", "DIV": "div", "MAXIMUM": "maximum", "MINIMUM": "minimum"}


class UnsupportedOperatorError(ArtifactError):
    """The TFLite graph contains an operator (or a variant of one) the importer cannot convert."""


def same_padding(in_size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding ``(before, after)`` for one spatial axis; the extra pixel goes after."""
    out = -(-in_size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - in_size, 0)
    return total // 2, total - total // 2


def conv_weight_to_torch(weight: np.ndarray) -> np.ndarray:
    """TFLite ``CONV_2D`` filter (O, kh, kw, I) -> PyTorch ``Conv2d`` weight (O, I, kh, kw)."""
    return np.ascontiguousarray(weight.transpose(0, 3, 1, 2))


def depthwise_weight_to_torch(weight: np.ndarray) -> np.ndarray:
    """TFLite ``DEPTHWISE_CONV_2D`` filter (1, kh, kw, C*M) -> PyTorch grouped weight (C*M, 1, kh, kw)."""
    return np.ascontiguousarray(weight.transpose(3, 0, 1, 2))


def transpose_conv_weight_to_torch(weight: np.ndarray) -> np.ndarray:
    """TFLite transposed-conv filter (O, kh, kw, I) -> PyTorch ``ConvTranspose2d`` weight (I, O, kh, kw)."""
    return np.ascontiguousarray(weight.transpose(3, 0, 1, 2))


def nchw_constant(value: np.ndarray, rank: int = 4) -> np.ndarray:
    """A constant that broadcasts against NHWC activations -> the same constant for NCHW activations."""
    if value.ndim == 0:
        return value.astype(np.float32)
    if value.ndim > rank:
        raise ArtifactError(f"constant of shape {list(value.shape)} cannot broadcast to rank {rank}")
    full = value.reshape((1,) * (rank - value.ndim) + value.shape)
    return np.ascontiguousarray(full.transpose(0, 3, 1, 2)).astype(np.float32)


class _Converter:
    def __init__(self, model: TfliteModel):
        self.model = model
        self.nodes: list[dict[str, Any]] = []
        self.weights: dict[str, np.ndarray] = {}

    # --- helpers -----------------------------------------------------------------------------
    def unsupported(self, op: TfliteOp, why: str = "") -> UnsupportedOperatorError:
        detail = f" ({why})" if why else ""
        return UnsupportedOperatorError(
            f"{self.model.path.name}: operator {op.name} at index {op.index} is not supported by the TFLite "
            f"importer{detail}. Supported: {', '.join(sorted(SUPPORTED))}"
        )

    def shape(self, tensor: int) -> list[int]:
        return self.model.tensors[tensor].shape

    def nchw_shape(self, tensor: int, op: TfliteOp) -> list[int]:
        shape = self.shape(tensor)
        if len(shape) != 4:
            raise self.unsupported(op, f"tensor {self.model.tensors[tensor].name!r} has shape {shape}; "
                                       "only 4-D NHWC activations are supported")
        n, h, w, c = shape
        return [n, c, h, w]

    def const(self, tensor: int, op: TfliteOp, what: str) -> np.ndarray:
        if tensor not in self.model.constants:
            raise self.unsupported(op, f"{what} must be a constant tensor")
        return self.model.constants[tensor]

    def activation_input(self, tensor: int, op: TfliteOp) -> str:
        if tensor in self.model.constants:
            raise self.unsupported(op, "a constant where an activation tensor was expected")
        self.nchw_shape(tensor, op)
        return f"t{tensor}"

    def add(self, op: TfliteOp, kind: str, inputs: list[int], attrs: dict[str, Any],
            weights: dict[str, np.ndarray] | None = None) -> None:
        key = f"n{len(self.nodes)}"
        out = op.outputs[0]
        attrs = {**attrs, "out_shape": self.nchw_shape(out, op)}
        self.nodes.append({
            "op": kind, "key": key, "inputs": [self.activation_input(t, op) for t in inputs],
            "output": f"t{out}", "name": self.model.tensors[out].name, "tflite_index": op.index, "attrs": attrs,
        })
        for name, value in (weights or {}).items():
            self.weights[f"layers.{key}.{name}"] = np.ascontiguousarray(value, dtype=np.float32)

    def fused(self, op: TfliteOp) -> str | None:
        code = op.options.get("FusedActivationFunction", 0)
        if code not in FUSED_ACTIVATIONS:
            raise self.unsupported(op, f"fused activation code {code}; supported: NONE, RELU, RELU_N1_TO_1, RELU6")
        return FUSED_ACTIVATIONS[code]

    def padding(self, op: TfliteOp, in_hw, kernel, stride, dilation=(1, 1)) -> list[int]:
        if op.options.get("Padding", 0) == 1:  # VALID
            return [0, 0, 0, 0]
        top, bottom = same_padding(in_hw[0], kernel[0], stride[0], dilation[0])
        left, right = same_padding(in_hw[1], kernel[1], stride[1], dilation[1])
        return [top, bottom, left, right]

    # --- operators ---------------------------------------------------------------------------
    def conv(self, op: TfliteOp) -> None:
        x, w_t = op.inputs[0], op.inputs[1]
        weight = self.const(w_t, op, "the filter")
        _, c_in, h, w = self.nchw_shape(x, op)
        if op.name == "DEPTHWISE_CONV_2D":
            torch_w = depthwise_weight_to_torch(weight)
            groups = c_in
        else:
            torch_w = conv_weight_to_torch(weight)
            if c_in % torch_w.shape[1]:
                raise self.unsupported(op, f"{c_in} input channels for a filter with {torch_w.shape[1]}")
            groups = c_in // torch_w.shape[1]
        stride = (op.options.get("StrideH", 1), op.options.get("StrideW", 1))
        dilation = (op.options.get("DilationHFactor", 1), op.options.get("DilationWFactor", 1))
        kernel = tuple(torch_w.shape[2:])
        weights = {"conv.weight": torch_w}
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            weights["conv.bias"] = self.const(op.inputs[2], op, "the bias")
        attrs = {
            "in_channels": c_in, "out_channels": int(torch_w.shape[0]), "kernel": list(kernel),
            "stride": list(stride), "dilation": list(dilation), "groups": groups,
            "pad": self.padding(op, (h, w), kernel, stride, dilation), "bias": "conv.bias" in weights,
            "act": self.fused(op),
        }
        self.add(op, "conv2d", [x], attrs, weights)

    def transpose_conv(self, op: TfliteOp) -> None:
        if op.name == "TRANSPOSE_CONV":
            x, w_t = op.inputs[2], op.inputs[1]
            bias_t = op.inputs[3] if len(op.inputs) > 3 else -1
            options = op.options
        else:  # MediaPipe's Convolution2DTransposeBias: (input, filter, bias)
            x, w_t, bias_t = op.inputs[0], op.inputs[1], op.inputs[2]
            options = transpose_conv_bias_options(op.custom_options)
        weight = transpose_conv_weight_to_torch(self.const(w_t, op, "the filter"))
        stride = (options.get("StrideH", 1), options.get("StrideW", 1))
        kernel = tuple(weight.shape[2:])
        _, c_in, in_h, in_w = self.nchw_shape(x, op)
        _, _, out_h, out_w = self.nchw_shape(op.outputs[0], op)
        crop = []
        for size_in, size_out, k, s in ((in_h, out_h, kernel[0], stride[0]), (in_w, out_w, kernel[1], stride[1])):
            full = (size_in - 1) * s + k
            before = max(full - size_out, 0) // 2 if options.get("Padding", 0) == 0 else 0
            if size_out > full - before:
                raise self.unsupported(op, f"output size {size_out} exceeds the transposed conv's {full - before}")
            crop += [before, full - before - size_out]
        weights = {"conv.weight": weight}
        if bias_t >= 0:
            weights["conv.bias"] = self.const(bias_t, op, "the bias")
        attrs = {
            "in_channels": c_in, "out_channels": int(weight.shape[1]), "kernel": list(kernel),
            "stride": list(stride), "crop": crop, "bias": "conv.bias" in weights,
            "act": self.fused(op) if op.name == "TRANSPOSE_CONV" else None,
        }
        self.add(op, "conv_transpose2d", [x], attrs, weights)

    def activation(self, op: TfliteOp) -> None:
        attrs = {"kind": ACTIVATIONS[op.name]}
        if op.name == "LEAKY_RELU":
            attrs["alpha"] = float(op.options.get("Alpha", 0.2))
        self.add(op, "activation", [op.inputs[0]], attrs)

    def binary(self, op: TfliteOp) -> None:
        a, b = op.inputs[:2]
        attrs: dict[str, Any] = {"kind": BINARY[op.name], "act": self.fused(op)}
        consts = [t for t in (a, b) if t in self.model.constants]
        if len(consts) == 2:
            raise self.unsupported(op, "both operands are constants")
        if consts:
            attrs["const_position"] = 0 if a in self.model.constants else 1
            value = nchw_constant(self.model.constants[consts[0]])
            attrs["const_shape"] = list(value.shape)
            self.add(op, "binary", [b if a in self.model.constants else a], attrs, {"value": value})
        else:
            self.add(op, "binary", [a, b], attrs)

    def pool(self, op: TfliteOp) -> None:
        _, _, h, w = self.nchw_shape(op.inputs[0], op)
        kernel = (op.options["FilterHeight"], op.options["FilterWidth"])
        stride = (op.options["StrideH"], op.options["StrideW"])
        pad = self.padding(op, (h, w), kernel, stride)
        out = self.nchw_shape(op.outputs[0], op)
        attrs = {
            "kind": "avg" if op.name == "AVERAGE_POOL_2D" else "max", "kernel": list(kernel),
            "stride": list(stride), "pad": pad, "act": self.fused(op),
            "global": tuple(kernel) == (h, w) and pad == [0, 0, 0, 0] and out[2:] == [1, 1],
        }
        self.add(op, "pool2d", [op.inputs[0]], attrs)

    def softmax(self, op: TfliteOp) -> None:
        # TFLite's SOFTMAX normalises the last axis, which for NHWC images is the channel axis (1 in NCHW).
        self.add(op, "softmax", [op.inputs[0]], {"beta": float(op.options.get("Beta", 1.0))})

    def mean(self, op: TfliteOp) -> None:
        axes = [int(a) for a in np.atleast_1d(self.const(op.inputs[1], op, "the axes"))]
        axes = sorted(NHWC_TO_NCHW_AXIS[a % 4] for a in axes)
        self.add(op, "mean", [op.inputs[0]], {"axes": axes, "keepdims": bool(op.options.get("KeepDims", False))})

    def resize(self, op: TfliteOp) -> None:
        size = [int(s) for s in self.const(op.inputs[1], op, "the output size")]
        attrs = {
            "mode": "bilinear" if op.name == "RESIZE_BILINEAR" else "nearest", "size": size,
            "align_corners": bool(op.options.get("AlignCorners", False)),
            "half_pixel_centers": bool(op.options.get("HalfPixelCenters", False)),
        }
        self.add(op, "resize", [op.inputs[0]], attrs)

    def concat(self, op: TfliteOp) -> None:
        axis = NHWC_TO_NCHW_AXIS[op.options.get("Axis", 3) % 4]
        self.add(op, "concat", list(op.inputs), {"axis": axis, "act": self.fused(op)})

    def pad(self, op: TfliteOp) -> None:
        pads = self.const(op.inputs[1], op, "the paddings").reshape(4, 2)
        value = 0.0
        if op.name == "PADV2" and len(op.inputs) > 2:
            value = float(self.const(op.inputs[2], op, "the pad value").reshape(-1)[0])
        nchw = [pads[a].tolist() for a in (0, 3, 1, 2)]
        self.add(op, "pad", [op.inputs[0]], {"pads": nchw, "value": value})

    def convert(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        for op in self.model.ops:
            handler = SUPPORTED.get(op.name)
            if handler is None:
                raise self.unsupported(op)
            handler(self, op)
        model = self.model
        graph = {
            "format": GRAPH_FORMAT,
            "source": model.path.name,
            "description": model.description,
            "inputs": [{"name": model.tensors[t].name, "tensor": f"t{t}", "shape": self._io_shape(t)}
                       for t in model.inputs],
            "outputs": [{"name": model.tensors[t].name, "tensor": f"t{t}", "shape": self._io_shape(t)}
                        for t in model.outputs],
            "nodes": self.nodes,
        }
        return graph, self.weights

    def _io_shape(self, tensor: int) -> list[int]:
        shape = self.shape(tensor)
        if len(shape) != 4:
            raise ArtifactError(f"{self.model.path.name}: graph input/output {self.model.tensors[tensor].name!r} "
                                f"has shape {shape}; the importer supports 4-D NHWC image tensors only")
        return [shape[0], shape[3], shape[1], shape[2]]


SUPPORTED = {
    "CONV_2D": _Converter.conv, "DEPTHWISE_CONV_2D": _Converter.conv,
    "TRANSPOSE_CONV": _Converter.transpose_conv, "Convolution2DTransposeBias": _Converter.transpose_conv,
    **{name: _Converter.activation for name in ACTIVATIONS},
    **{name: _Converter.binary for name in BINARY},
    "AVERAGE_POOL_2D": _Converter.pool, "MAX_POOL_2D": _Converter.pool, "MEAN": _Converter.mean,
    "SOFTMAX": _Converter.softmax,
    "RESIZE_BILINEAR": _Converter.resize, "RESIZE_NEAREST_NEIGHBOR": _Converter.resize,
    "CONCATENATION": _Converter.concat, "PAD": _Converter.pad, "PADV2": _Converter.pad,
}


def graph_from_tflite(model: TfliteModel) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(graph, weights)``: the JSON graph description (NCHW) and float32 weights in PyTorch layout.

    Raises :class:`UnsupportedOperatorError` naming the first operator (and its index) it cannot convert.
    """
    for t in model.inputs + model.outputs:
        if model.tensors[t].dtype != "float32" or model.tensors[t].quantized:
            raise UnsupportedOperatorError(
                f"{model.path.name}: tensor {model.tensors[t].name!r} is {model.tensors[t].dtype}"
                f"{' (quantized)' if model.tensors[t].quantized else ''}; only float models are supported"
            )
    return _Converter(model).convert()
