"""Export the Mask R-CNN to ONNX with its post-processing inside the graph.

The graph maps ``input`` (1, C, H, W) to ``boxes`` (D, 4), ``scores`` (D,), ``labels`` (D,) int64 and
``masks`` (D, 28, 28) probabilities over each box, D data-dependent (at most ``max_detections``): TopK
per pyramid level, ``NonMaxSuppression`` for the proposals and the detections, and two ``RoiAlign``
nodes (box and mask heads). Paste masks into the frame with :func:`edgeseg.instances.predict.instances_from_detections`.

>>> onnx_from_maskrcnn(model, "maskrcnn.onnx", size=(256, 256))   # doctest: +SKIP

TensorRT-RTX implements neither ``NonZero`` nor ``NonMaxSuppression`` (the parser needs a NonZero plugin;
the builder finds no implementation of NMS), so ``--route decomposed`` splits the model in two graphs:
``maskrcnn.onnx``, the dense part for the engine (encoder, FPN, RPN head: ``input`` -> ``feature``
(1, C, H/8, W/8), ``objectness`` (1, A), ``rpn_deltas`` (1, A, 4)), and ``maskrcnn.post.onnx``, the
data-dependent rest for ONNX Runtime after the engine (proposal top-k + NMS, the RoI heads with
``GridSample`` RoIAlign, detection NMS) mapping those three tensors to the four detection outputs.
The sidecar names the second graph in ``extra.export.after_engine``; :func:`run_after_engine` runs it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn


OUTPUT_NAMES = ["boxes", "scores", "labels", "masks"]
ENGINE_OUTPUTS = ["feature", "objectness", "rpn_deltas"]


class MaskRCNNDetections(nn.Module):
    """Eval wrapper: ``forward(input (1, C, H, W)) -> (boxes, scores, labels, masks)`` as tensors, not dicts."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()

    def forward(self, input: Tensor):
        size = (int(input.shape[-2]), int(input.shape[-1]))
        pyramid = self.model.features(input)
        proposals, _ = self.model.rpn(pyramid, size)
        out = self.model.detect(pyramid[0], proposals[0], size)
        return out["boxes"], out["scores"], out["labels"], out["masks"]


class MaskRCNNDense(nn.Module):
    """The engine part of the split: ``input`` (1, C, H, W) -> finest pyramid level, RPN objectness and deltas."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()

    def forward(self, input: Tensor):
        pyramid = self.model.features(input)
        objectness, deltas = self.model.rpn.head(pyramid)
        return pyramid[0], objectness, deltas


class MaskRCNNPost(nn.Module):
    """The host part of the split: (feature, objectness, rpn_deltas) of one ``size`` image -> detections."""

    def __init__(self, model, size: tuple[int, int]):
        super().__init__()
        self.model, self.size = model.eval(), tuple(size)
        with torch.no_grad():
            channels = model.encoder.stages[0][0][0].in_channels
            shapes = [f.shape[-2:] for f in model.features(torch.zeros(1, channels, *self.size))]
        anchors = model.rpn.anchors(shapes, torch.device("cpu"), torch.float32)
        self.counts = [a.shape[0] for a in anchors]
        self.register_buffer("anchors", torch.cat(anchors, 0), persistent=False)

    def forward(self, feature: Tensor, objectness: Tensor, rpn_deltas: Tensor):
        proposals = self.model.rpn._propose(objectness[0], rpn_deltas[0], self.anchors, self.counts, self.size)
        out = self.model.detect(feature, proposals, self.size)
        return out["boxes"], out["scores"], out["labels"], out["masks"]


def post_path(path) -> Path:
    """``x.onnx`` -> ``x.post.onnx``: the host graph of a split export."""
    path = Path(path)
    return path.with_name(path.stem + ".post.onnx")


def _export(module, example: tuple, path: Path, input_names, output_names, opset: int) -> Path:
    from ...ops.onnx_translations import translation_table

    table = translation_table()  # NMS included
    program = torch.onnx.export(module.eval(), example, dynamo=True, opset_version=opset, input_names=input_names,
                                output_names=output_names, custom_translation_table=table, optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    return path


def split_onnx_from_maskrcnn(model, path, size: tuple[int, int] = (256, 256), opset: int = 19) -> tuple[Path, Path]:
    """Export the split form (engine graph ``path``, host graph ``x.post.onnx``); returns both paths."""
    from ...ops.routes import export_route

    path = Path(path)
    example = torch.zeros(1, model.encoder.stages[0][0][0].in_channels, *size)
    dense = MaskRCNNDense(model)
    with torch.no_grad():
        outputs = dense(example)
    with export_route("decomposed"):
        _export(dense, (example,), path, ["input"], ENGINE_OUTPUTS, opset)
        _export(MaskRCNNPost(model, size), outputs, post_path(path), ENGINE_OUTPUTS, OUTPUT_NAMES, opset)
    return path, post_path(path)


def run_after_engine(stage: dict, feature, objectness, rpn_deltas, folder=None) -> list:
    """Run the host graph a split export names (sidecar ``extra.export.after_engine``) with ONNX Runtime:
    the engine's three outputs (NumPy) -> [boxes, scores, labels, masks]. ``folder``: where the graph lies."""
    from ..._deps import require
    from ...errors import InputError

    if stage.get("stage") != "maskrcnn_post":
        raise InputError(f"after_engine.stage: got {stage.get('stage')!r}, expected 'maskrcnn_post'")
    ort = require("onnxruntime", "the Mask R-CNN post-processing graph")
    graph = Path(folder or ".") / stage["onnx"]
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(stage["inputs"], (feature, objectness, rpn_deltas))))


def onnx_from_maskrcnn(model, path, size: tuple[int, int] = (256, 256), opset: int = 19) -> Path:
    """Export an eval-mode :class:`MaskRCNN` for one image of ``size`` (H, W) to ``path`` (dynamo exporter,
    edgeseg's RoIAlign -> ONNX ``RoiAlign``, nms -> ``NonMaxSuppression``). Returns ``path``."""
    example = torch.zeros(1, model.encoder.stages[0][0][0].in_channels, *size)
    return _export(MaskRCNNDetections(model), (example,), Path(path), ["input"], OUTPUT_NAMES, opset)


def export_artifact(model, artifact, path, opset: int = 19) -> Path:
    """Export ``model`` at ``artifact.preprocess.size`` to ``path`` (.onnx) and write its sidecar: the input
    spec (1, C, H, W), the four detection outputs with a dynamic "detections" dim, ``extra.task="instances"``."""
    from dataclasses import replace

    from ...artifact import TensorSpec

    from ...ops.routes import current_route

    size = tuple(artifact.preprocess.size)
    channels = artifact.model_kwargs.get("in_channels", 1)
    detections = [TensorSpec("boxes", ["detections", 4], "float32"), TensorSpec("scores", ["detections"], "float32"),
                  TensorSpec("labels", ["detections"], "int64"), TensorSpec("masks", ["detections", 28, 28], "float32")]
    extra = {**artifact.extra, "task": "instances"}
    if current_route() == "decomposed":
        path, post = split_onnx_from_maskrcnn(model, path, size=size, opset=opset)
        with torch.no_grad():
            dense = MaskRCNNDense(model)(torch.zeros(1, channels, *size))
        anchors = int(dense[1].shape[1])  # named in the specs: sidecar dims are at most 8192, anchors can be more
        outputs = [TensorSpec("feature", list(dense[0].shape), "float32"),
                   TensorSpec("objectness", [1, "anchors"], "float32"),
                   TensorSpec("rpn_deltas", [1, "anchors", 4], "float32")]
        extra["export"] = {**extra.get("export", {}), "after_engine": {
            "stage": "maskrcnn_post", "onnx": post.name, "runtime": "onnxruntime", "inputs": ENGINE_OUTPUTS,
            "anchors": anchors,
            "outputs": [{"name": s.name, "shape": s.shape, "dtype": s.dtype} for s in detections],
            "why": "TensorRT-RTX implements neither NonZero nor NonMaxSuppression"}}
    else:
        path = onnx_from_maskrcnn(model, path, size=size, opset=opset)
        outputs = detections
    sidecar = replace(artifact, path=Path(path), opset=opset, inputs=[TensorSpec("input", [1, channels, *size], "float32")],
                      outputs=outputs, extra=extra)
    sidecar.save()
    return Path(path)
