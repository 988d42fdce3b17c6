"""ONNX export of any instance model: ``maskrcnn`` / ``fcis`` (RoiAlign, TopK, NMS in the graph; see
:mod:`edgeseg.models.maskrcnn.export`) and ``bottomup`` (dense head and the fixed-step seed selection in the
graph; the data-dependent filtering stays on the host in :func:`edgeseg.models.bottomup.instances_from_seeds`).

>>> export_artifact(model, artifact, "runs/hc18c_bottomup.onnx")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

#: outputs of an exported bottom-up graph, T = max_instances seeds
BOTTOMUP_OUTPUTS = ["scores", "labels", "image_masks"]


def bottomup_module(model):
    """Eval wrapper: ``input`` (1, C, H, W) -> scores (T,), labels (T,), image_masks (T, H, W)."""
    from torch import nn

    class BottomUpSeeds(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model.eval()

        def forward(self, input):
            emb, seed, cls = self.model.dense(input)
            out = self.model.detect(emb[0], seed[0], cls[0], (int(input.shape[-2]), int(input.shape[-1])))
            return out["scores"], out["labels"], out["image_masks"]

    return BottomUpSeeds().eval()


def export_artifact(model, artifact, path, opset: int = 19) -> Path:
    """Export ``model`` at ``artifact.preprocess.size`` to ``path`` (.onnx) and write its sidecar."""
    if artifact.model != "bottomup":
        from ..models.maskrcnn.export import export_artifact as export_detector
        return export_detector(model, artifact, path, opset)
    from dataclasses import replace

    import torch

    from ..artifact import TensorSpec
    from ..ops.onnx_translations import translation_table

    size = tuple(artifact.preprocess.size)
    channels = artifact.model_kwargs.get("in_channels", 1)
    example = torch.zeros(1, channels, *size)
    program = torch.onnx.export(bottomup_module(model), (example,), dynamo=True, opset_version=opset,
                                input_names=["input"], output_names=BOTTOMUP_OUTPUTS,
                                custom_translation_table=translation_table(), optimize=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    t = model.max_instances
    outputs = [TensorSpec("scores", [t], "float32"), TensorSpec("labels", [t], "int64"),
               TensorSpec("image_masks", [t, *size], "float32")]
    extra = {**artifact.extra, "task": "instances", "decoder": "bottomup",
             "host_postprocess": "score threshold, mask binarisation, duplicate-mask removal, boxes from masks "
                                 "(data-dependent counts)"}
    replace(artifact, path=path, opset=opset, inputs=[TensorSpec("input", [1, channels, *size], "float32")],
            outputs=outputs, extra=extra).save()
    return path
