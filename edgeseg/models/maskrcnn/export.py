"""Export the Mask R-CNN to ONNX with its post-processing inside the graph.

The graph maps ``input`` (1, C, H, W) to ``boxes`` (D, 4), ``scores`` (D,), ``labels`` (D,) int64 and
``masks`` (D, 28, 28) probabilities over each box, D data-dependent (at most ``max_detections``): TopK
per pyramid level, ``NonMaxSuppression`` for the proposals and the detections, and two ``RoiAlign``
nodes (box and mask heads). Paste masks into the frame with :func:`edgeseg.instances.predict.instances_from_detections`.

>>> onnx_from_maskrcnn(model, "maskrcnn.onnx", size=(256, 256))   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ...ops.nms import NMS_TRANSLATION

OUTPUT_NAMES = ["boxes", "scores", "labels", "masks"]


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


def onnx_from_maskrcnn(model, path, size: tuple[int, int] = (256, 256), opset: int = 19) -> Path:
    """Export an eval-mode :class:`MaskRCNN` for one image of ``size`` (H, W) to ``path`` (dynamo exporter,
    edgeseg's RoIAlign -> ONNX ``RoiAlign``, nms -> ``NonMaxSuppression``). Returns ``path``."""
    from ...export.op_translations import CUSTOM_TRANSLATION_TABLE

    path = Path(path)
    wrapper = MaskRCNNDetections(model)
    example = torch.zeros(1, model.encoder.stages[0][0][0].in_channels, *size)
    table = {**CUSTOM_TRANSLATION_TABLE, **NMS_TRANSLATION}
    program = torch.onnx.export(wrapper, (example,), dynamo=True, opset_version=opset, input_names=["input"],
                                output_names=OUTPUT_NAMES, custom_translation_table=table, optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    return path


def export_artifact(model, artifact, path, opset: int = 19) -> Path:
    """Export ``model`` at ``artifact.preprocess.size`` to ``path`` (.onnx) and write its sidecar: the input
    spec (1, C, H, W), the four detection outputs with a dynamic "detections" dim, ``extra.task="instances"``."""
    from dataclasses import replace

    from ...artifact import TensorSpec

    size = tuple(artifact.preprocess.size)
    path = onnx_from_maskrcnn(model, path, size=size, opset=opset)
    channels = artifact.model_kwargs.get("in_channels", 1)
    sidecar = replace(artifact, path=Path(path), opset=opset,
                      inputs=[TensorSpec("input", [1, channels, *size], "float32")],
                      outputs=[TensorSpec("boxes", ["detections", 4], "float32"),
                               TensorSpec("scores", ["detections"], "float32"),
                               TensorSpec("labels", ["detections"], "int64"),
                               TensorSpec("masks", ["detections", 28, 28], "float32")],
                      extra={**artifact.extra, "task": "instances"})
    sidecar.save()
    return Path(path)
