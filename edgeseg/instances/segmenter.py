"""Run an instance model (Mask R-CNN, FCIS or bottom-up) on frames: ``seg(frame) -> Segmentation`` with
``instances`` filled, and an overlay with one colour per instance.

:class:`InstanceSegmenter` is a :class:`~edgeseg.pipeline.Segmenter`: the model runs through a runner of any
backend (``.onnx`` with ONNX Runtime, ``.safetensors`` with PyTorch, ``.engine`` with TensorRT, or a Triton
server), in the same three stages the streaming loop drives. ``edgeseg.Segmenter(path)`` on a sidecar with
``extra.task == "instances"`` gives the same pipeline.

>>> seg = InstanceSegmenter("runs/hc18_maskrcnn.onnx", score_threshold=0.5)   # doctest: +SKIP
>>> result = seg(frame)               # frame (H, W) gray or (H, W, 3) BGR uint8          # doctest: +SKIP
>>> result.instances.boxes, result.instances.masks.shape   # (K, 4), (K, H, W) bool        # doctest: +SKIP
>>> view = seg.overlay(frame, result)                                                      # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifact import Artifact
from ..pipeline import Segmenter
from ..runtime import Runner
from .predict import draw_instances

__all__ = ["InstanceSegmenter", "draw_instances"]


class InstanceSegmenter(Segmenter):
    """A :class:`~edgeseg.pipeline.Segmenter` that decodes instances, whatever the sidecar's ``extra.task``
    (checkpoints saved without it run too).

    Args:
        model: a model path (``.onnx``, ``.safetensors``, ``.engine``; sidecar next to it), an Artifact or a
            ready :class:`~edgeseg.runtime.Runner`.
        score_threshold: detections scoring below it are dropped.
        threads: CPU threads for the backend (ONNX Runtime intra-op / torch); ``None``: the backend's default.
        backend: runner backend (``"auto"``, ``"onnxruntime"``, ``"torch"``, ``"tensorrt"``, ``"triton"``).
        **options: passed to :class:`~edgeseg.pipeline.Segmenter` (``check_output``, runner options such
            as ``url=`` for Triton).

    Results: ``labels`` (H, W) is the class of the highest-scoring instance covering each pixel (0 elsewhere),
    ``probs`` (C, H, W) float32 the per-class maximum of the instances' scores over their masks (background =
    1 - the rest), ``instances`` an :class:`~edgeseg.instances.Instances`. Timings: "pre", "infer", "post",
    "crf" (always 0).
    """

    def __init__(self, model: str | Path | Artifact | Runner, score_threshold: float = 0.5, threads: int | None = 1,
                 backend: str = "auto", **options: Any) -> None:
        super().__init__(model, backend=backend, threads=threads, score_threshold=score_threshold, **options)

    def _is_instance_model(self, artifact: Artifact) -> bool:
        return True

    @property
    def score_threshold(self) -> float:
        return self.instance_decoder.score_threshold
