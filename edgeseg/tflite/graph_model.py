"""``TfliteGraph``: a PyTorch module that runs an imported TFLite graph description (NCHW), and its zoo entry.

Registered in the model zoo as ``tflite_graph``: ``create_model("tflite_graph", num_classes, in_channels,
graph=<description>)`` rebuilds the module from the JSON description that ``edgeseg import-tflite`` stores in
the sidecar's ``model_kwargs``; the weights come from the checkpoint's safetensors. Parameters are ordinary
``nn.Conv2d`` / ``nn.ConvTranspose2d`` weights, so the imported model can be fine-tuned.

>>> from edgeseg.models import load_checkpoint                        # doctest: +SKIP
>>> model, artifact = load_checkpoint("selfie/general.safetensors")    # doctest: +SKIP
>>> model(torch.rand(1, 3, 256, 256)).shape                          # doctest: +SKIP
torch.Size([1, 1, 256, 256])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArtifactError, InputError
from ..models import register_model
from .convert import GRAPH_FORMAT

_ACTIVATIONS = {
    None: lambda x: x,
    "relu": F.relu,
    "relu6": F.relu6,
    "relu_n1_to_1": lambda x: torch.clamp(x, -1.0, 1.0),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "hardswish": F.hardswish,  # x * relu6(x + 3) / 6, TFLite's HARD_SWISH
}
_BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
    "maximum": torch.maximum, "minimum": torch.minimum,
}


class _Conv(nn.Module):
    """Conv2d with TensorFlow SAME padding: symmetric pads go to the conv, asymmetric ones to an explicit pad."""

    def __init__(self, a: dict[str, Any]):
        super().__init__()
        top, bottom, left, right = a["pad"]
        symmetric = top == bottom and left == right
        self.pad = None if symmetric else (left, right, top, bottom)
        self.conv = nn.Conv2d(
            a["in_channels"], a["out_channels"], tuple(a["kernel"]), tuple(a["stride"]),
            padding=(top, left) if symmetric else 0, dilation=tuple(a["dilation"]), groups=a["groups"],
            bias=a["bias"],
        )
        self.act = _ACTIVATIONS[a["act"]]

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return self.act(self.conv(x))


class _ConvTranspose(nn.Module):
    """ConvTranspose2d whose full output is cropped by TensorFlow's SAME rule (``crop`` = top, bottom, left, right)."""

    def __init__(self, a: dict[str, Any]):
        super().__init__()
        self.conv = nn.ConvTranspose2d(
            a["in_channels"], a["out_channels"], tuple(a["kernel"]), tuple(a["stride"]), bias=a["bias"]
        )
        self.crop = tuple(a["crop"])
        self.act = _ACTIVATIONS[a["act"]]

    def forward(self, x):
        y = self.conv(x)
        top, bottom, left, right = self.crop
        if any(self.crop):
            y = y[:, :, top: y.shape[2] - bottom, left: y.shape[3] - right]
        return self.act(y)


class _Activation(nn.Module):
    def __init__(self, a: dict[str, Any]):
        super().__init__()
        self.kind, self.alpha = a["kind"], a.get("alpha", 0.2)

    def forward(self, x):
        if self.kind == "leaky_relu":
            return F.leaky_relu(x, self.alpha)
        return _ACTIVATIONS[self.kind](x)


class _Binary(nn.Module):
    """Elementwise op; an operand that was a TFLite constant is a (persistent) buffer ``value``."""

    def __init__(self, a: dict[str, Any]):
        super().__init__()
        self.fn, self.act = _BINARY[a["kind"]], _ACTIVATIONS[a["act"]]
        self.const_position = a.get("const_position")
        if self.const_position is not None:
            self.register_buffer("value", torch.zeros(a["const_shape"]))

    def forward(self, *xs):
        if self.const_position == 0:
            xs = (self.value, xs[0])
        elif self.const_position == 1:
            xs = (xs[0], self.value)
        return self.act(self.fn(*xs))


class _Pool(nn.Module):
    """Average/max pooling with TensorFlow semantics: SAME-padded cells are excluded from the average."""

    def __init__(self, a: dict[str, Any]):
        super().__init__()
        self.kind, self.is_global, self.act = a["kind"], a["global"], _ACTIVATIONS[a["act"]]
        self.kernel, self.stride = tuple(a["kernel"]), tuple(a["stride"])
        top, bottom, left, right = a["pad"]
        self.pad = (left, right, top, bottom)

    def forward(self, x):
        if self.is_global:
            y = x.mean((2, 3), keepdim=True) if self.kind == "avg" else x.amax((2, 3), keepdim=True)
        elif self.kind == "max":
            y = F.max_pool2d(F.pad(x, self.pad, value=float("-inf")), self.kernel, self.stride)
        elif not any(self.pad):
            y = F.avg_pool2d(x, self.kernel, self.stride)
        else:  # mean over the real pixels only: sum of padded input / count of real pixels under the window
            ones = F.pad(torch.ones_like(x[:1, :1]), self.pad)
            y = F.avg_pool2d(F.pad(x, self.pad), self.kernel, self.stride) / F.avg_pool2d(ones, self.kernel, self.stride)
        return self.act(y)


class _Mean(nn.Module):
    def __init__(self, a: dict[str, Any]):
        super().__init__()
        self.axes, self.keepdims = tuple(a["axes"]), a["keepdims"]
        if not self.keepdims:
            raise ArtifactError("MEAN without keep_dims changes the rank; only 4-D activations are supported")

    def forward(self, x):
        return x.mean(self.axes, keepdim=True)


def _source_index(out_size: int, in_size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """TensorFlow's resize source coordinate for each output index (before clamping)."""
    out = np.arange(out_size, dtype=np.float64)
    if align_corners and out_size > 1:
        return out * (in_size - 1) / (out_size - 1)
    scale = in_size / out_size
    return (out + 0.5) * scale - 0.5 if half_pixel else out * scale


def _nearest_index(out_size: int, in_size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """TFLite RESIZE_NEAREST_NEIGHBOR: ``(round if align_corners else floor)((x + 0.5*half) * scale)``."""
    scale = (in_size - 1) / (out_size - 1) if align_corners and out_size > 1 else in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + (0.5 if half_pixel else 0.0)) * scale
    idx = np.floor(src + 0.5) if align_corners else np.floor(src)
    return np.clip(idx, 0, in_size - 1).astype(np.int64)


class _Resize(nn.Module):
    """RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR with TFLite's ``align_corners``/``half_pixel_centers`` exactly.

    The two modes PyTorch has natively (bilinear half-pixel and bilinear align-corners) use ``F.interpolate``
    (ONNX ``Resize``); the others gather with precomputed indices and weights (static sizes).
    """

    def __init__(self, a: dict[str, Any], in_shape: list[int]):
        super().__init__()
        self.size, self.mode = tuple(a["size"]), a["mode"]
        self.align, self.half = a["align_corners"], a["half_pixel_centers"]
        self.native = self.mode == "bilinear" and (self.align or self.half)
        # An integer scale exports as a constant ONNX Resize scale (no Shape/Concat with a dynamic batch).
        ratios = [o / i for o, i in zip(self.size, in_shape[2:])]
        integer = all(r == int(r) and r >= 1 for r in ratios) and not self.align
        self.scale = tuple(float(r) for r in ratios) if integer else None
        if not self.native:
            for axis, (o, i) in enumerate(zip(self.size, in_shape[2:])):
                if self.mode == "nearest":
                    lo = hi = _nearest_index(o, i, self.align, self.half)
                    frac = np.zeros(o)
                else:
                    src = _source_index(o, i, self.align, self.half)
                    lo = np.clip(np.floor(src), 0, i - 1).astype(np.int64)
                    hi = np.clip(np.floor(src) + 1, 0, i - 1).astype(np.int64)
                    frac = src - np.floor(src)
                shape = (1, 1, o, 1) if axis == 0 else (1, 1, 1, o)
                self.register_buffer(f"lo{axis}", torch.from_numpy(lo), persistent=False)
                self.register_buffer(f"hi{axis}", torch.from_numpy(hi), persistent=False)
                self.register_buffer(f"frac{axis}", torch.from_numpy(frac.astype(np.float32)).reshape(shape),
                                     persistent=False)

    def forward(self, x):
        if self.native and self.scale is not None:
            return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        if self.native:
            return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align)
        rows = torch.lerp(x.index_select(2, self.lo0), x.index_select(2, self.hi0), self.frac0)
        return torch.lerp(rows.index_select(3, self.lo1), rows.index_select(3, self.hi1), self.frac1)


class _Softmax(nn.Module):
    def __init__(self, a: dict[str, Any]):
        super().__init__()
        self.beta = a["beta"]

    def forward(self, x):
        return torch.softmax(x * self.beta if self.beta != 1.0 else x, dim=1)


class _Concat(nn.Module):
    def __init__(self, a: dict[str, Any]):
        super().__init__()
        self.axis, self.act = a["axis"], _ACTIVATIONS[a["act"]]

    def forward(self, *xs):
        return self.act(torch.cat(xs, self.axis))


class _Pad(nn.Module):
    def __init__(self, a: dict[str, Any]):
        super().__init__()
        (_, _), (c0, c1), (h0, h1), (w0, w1) = a["pads"]
        self.pad, self.value = (w0, w1, h0, h1, c0, c1), a["value"]

    def forward(self, x):
        return F.pad(x, self.pad, value=self.value)


_BUILDERS = {
    "conv2d": _Conv, "conv_transpose2d": _ConvTranspose, "activation": _Activation, "binary": _Binary,
    "pool2d": _Pool, "mean": _Mean, "concat": _Concat, "pad": _Pad, "softmax": _Softmax,
}


class TfliteGraph(nn.Module):
    """An imported TFLite graph as a PyTorch module (NCHW).

    Args:
        graph: the JSON description written by :func:`edgeseg.tflite.convert.graph_from_tflite`.

    ``forward(x)``: ``x`` (N, C, H, W) float32 at the graph's input size -> (N, C_out, H_out, W_out);
    several inputs/outputs are passed/returned in the graph's order.
    """

    def __init__(self, graph: dict[str, Any]):
        super().__init__()
        if graph.get("format") != GRAPH_FORMAT:
            raise ArtifactError(f"tflite_graph description format {graph.get('format')!r}, expected {GRAPH_FORMAT}")
        self.graph = graph
        self.input_tensors = [i["tensor"] for i in graph["inputs"]]
        # SAME padding and resize sizes are baked in for this size (the exporter keeps H, W static).
        self.fixed_input_size = tuple(graph["inputs"][0]["shape"][2:])
        self.output_tensors = [o["tensor"] for o in graph["outputs"]]
        shapes = {i["tensor"]: i["shape"] for i in graph["inputs"]}
        self.layers = nn.ModuleDict()
        self.steps: list[tuple[str, list[str], str]] = []
        for node in graph["nodes"]:
            if node["op"] == "resize":
                layer = _Resize(node["attrs"], shapes[node["inputs"][0]])
            elif node["op"] in _BUILDERS:
                layer = _BUILDERS[node["op"]](node["attrs"])
            else:
                raise ArtifactError(f"tflite_graph node {node['key']}: unknown op {node['op']!r}")
            self.layers[node["key"]] = layer
            self.steps.append((node["key"], node["inputs"], node["output"]))
            shapes[node["output"]] = node["attrs"]["out_shape"]

    def forward(self, x, *more):
        inputs = (x, *more)
        if len(inputs) != len(self.input_tensors):
            raise InputError(f"inputs: got {len(inputs)} tensors, expected {len(self.input_tensors)}")
        env = dict(zip(self.input_tensors, inputs))
        for key, names, out in self.steps:
            env[out] = self.layers[key](*[env[n] for n in names])
        outputs = [env[t] for t in self.output_tensors]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


@register_model("tflite_graph")
def create_tflite_graph(num_classes: int, in_channels: int = 3, graph: dict[str, Any] | None = None) -> TfliteGraph:
    """A graph imported from TFLite (``edgeseg import-tflite``); ``graph`` is its JSON description.

    ``num_classes`` is the number of class names: the graph's output channels, or 2 for a one-channel
    foreground output (background, foreground).
    """
    if graph is None:
        raise ArtifactError("tflite_graph needs model_kwargs['graph'] (written by `edgeseg import-tflite`)")
    got_in, got_out = graph["inputs"][0]["shape"][1], graph["outputs"][0]["shape"][1]
    expected_classes = 2 if got_out == 1 else got_out
    if (in_channels, num_classes) != (got_in, expected_classes):
        raise ArtifactError(
            f"tflite_graph: model_kwargs say in_channels={in_channels}, num_classes={num_classes} but the graph "
            f"has {got_in} input channels and {got_out} output channels (num_classes {expected_classes})"
        )
    return TfliteGraph(graph)
