"""ONNX graph rewrites that make the exported graph faster in ONNX Runtime without changing its numbers.

``conv_from_conv_transpose``: a stride-1 ``ConvTranspose`` (DeconvNet's 3x3 "deconvolutions") is the
same operator as a ``Conv`` whose weight is transposed (in <-> out channels) and flipped in space,
with padding ``k - 1 - p`` per side:

    ConvTranspose(x, W[Cin, Cout, kh, kw], pads=p)  ==  Conv(x, W'[Cout, Cin, kh, kw], pads=k-1-p),
    W'[o, i, y, x] = W[i, o, kh-1-y, kw-1-x]

ONNX Runtime's CPU ConvTranspose goes through a GEMM + col2im path and is fused with nothing, while
Conv gets its direct/NCHWc kernels and Conv+BatchNorm+ReLU fusion.

>>> model, count = conv_from_conv_transpose(onnx.load("deconvnet.onnx"))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseg._deps import require


def _attrs(node) -> dict[str, Any]:
    onnx = require("onnx")
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _rewritable(attrs: dict[str, Any], kernel: tuple[int, int]) -> bool:
    dims = len(kernel)
    if any(s != 1 for s in attrs.get("strides", [1] * dims)) or any(d != 1 for d in attrs.get("dilations", [1] * dims)):
        return False
    if attrs.get("group", 1) != 1 or any(attrs.get("output_padding", [0] * dims)) or "output_shape" in attrs:
        return False
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) != "NOTSET":
        return False
    pads = attrs.get("pads", [0] * 2 * dims)
    return all(0 <= p <= k - 1 for p, k in zip(pads, list(kernel) * 2))


def conv_from_conv_transpose(model):
    """Rewrite every stride-1, group-1 ``ConvTranspose`` with a constant weight into an equal ``Conv``.

    Returns ``(model, count)``; the model is edited in place.
    """
    onnx = require("onnx", "graph rewrites")
    numpy_helper = onnx.numpy_helper
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    count = 0
    for node in graph.node:
        if node.op_type != "ConvTranspose" or node.domain not in ("", "ai.onnx") or node.input[1] not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if weight.ndim != 4:
            continue
        attrs = _attrs(node)
        kernel = tuple(weight.shape[2:])
        if not _rewritable(attrs, kernel):
            continue
        flipped = np.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
        new_name = node.input[1] + "_as_conv"
        if uses[node.input[1]] == 1:
            graph.initializer.remove(initializers[node.input[1]])
        graph.initializer.append(numpy_helper.from_array(flipped, new_name))
        pads = attrs.get("pads", [0, 0, 0, 0])
        conv_pads = [k - 1 - p for p, k in zip(pads, list(kernel) * 2)]
        conv = onnx.helper.make_node("Conv", [node.input[0], new_name, *node.input[2:]], list(node.output),
                                     name=(node.name or "convtranspose") + "_as_conv", kernel_shape=list(kernel),
                                     pads=conv_pads, strides=[1, 1], dilations=[1, 1], group=1)
        node.CopyFrom(conv)
        count += 1
    return model, count
