"""Run an instance model (Mask R-CNN, FCIS or bottom-up; ``.onnx`` through ONNX Runtime, or ``.safetensors``
through PyTorch) on frames: ``seg(frame) -> Segmentation`` with ``instances`` filled, and an overlay with one colour per instance.

>>> seg = InstanceSegmenter("runs/hc18_maskrcnn.onnx", score_threshold=0.5)   # doctest: +SKIP
>>> result = seg(frame)               # frame (H, W) gray or (H, W, 3) BGR uint8          # doctest: +SKIP
>>> result.instances.boxes, result.instances.masks.shape   # (K, 4), (K, H, W) bool        # doctest: +SKIP
>>> view = seg.overlay(frame, result)                                                      # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Self

import numpy as np

from .._deps import require
from ..artifact import Artifact
from ..data.dataset import preprocess_image
from ..errors import InputError
from ..pipeline import Segmentation
from ..postprocess import label_dtype
from .predict import instances_from_detections
from .types import Instances

_OUTPUTS = ("boxes", "scores", "labels", "masks")


def _palette(k: int) -> np.ndarray:
    """(k, 3) distinct BGR uint8 colours (golden-ratio hue steps)."""
    cv2 = require("cv2", "drawing overlays")
    hues = (np.arange(k) * 0.618033988749895 * 180) % 180
    hsv = np.stack([hues, np.full(k, 200), np.full(k, 255)], 1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]


class InstanceSegmenter:
    """Frames -> :class:`~edgeseg.pipeline.Segmentation` whose ``instances`` is an :class:`Instances`.

    ``labels`` (H, W) uint8 is the class of the highest-scoring instance covering each pixel (0 elsewhere)
    and ``probs`` (C, H, W) float32 the per-class maximum of the instances' pasted mask probabilities
    (background = 1 - the rest), so semantic consumers keep working. Detections below
    ``score_threshold`` are dropped. Timings: "pre", "infer", "post", "crf" (always 0).
    """

    def __init__(self, model: str | Path, score_threshold: float = 0.5, threads: int | None = 1):
        path = Path(model)
        self.artifact = Artifact.load(path)
        self.score_threshold = float(score_threshold)
        self._bottomup = self.artifact.model == "bottomup"
        names = ["scores", "labels", "image_masks"] if self._bottomup else list(_OUTPUTS)
        if path.suffix == ".onnx":
            ort = require("onnxruntime", "running ONNX models")
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
            self._run = lambda blob: self._session.run(names, {self._input: blob})
        elif path.suffix == ".safetensors":
            torch = require("torch", "running PyTorch checkpoints")
            from ..models import load_checkpoint
            from ..models.maskrcnn.export import MaskRCNNDetections
            from .export import bottomup_module

            if threads:
                torch.set_num_threads(threads)
            model, _ = load_checkpoint(path)
            wrapper = bottomup_module(model) if self._bottomup else MaskRCNNDetections(model)

            def run(blob):
                with torch.no_grad():
                    return [t.numpy() for t in wrapper(torch.from_numpy(blob))]
            self._run = run
        else:
            raise InputError(f"model: got {str(path)!r}, expected a .onnx or .safetensors instance model artifact")

    @property
    def classes(self) -> list[str]:
        return list(self.artifact.classes)

    def __call__(self, frame: np.ndarray) -> Segmentation:
        """(H, W, 3) BGR or (H, W) gray uint8 frame -> Segmentation at (H, W) with ``instances``."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            got = (frame.dtype, frame.shape) if isinstance(frame, np.ndarray) else type(frame).__name__
            raise InputError(f"frame: got {got}, expected an (H, W, 3) BGR or (H, W) gray uint8 array")
        t0 = time.perf_counter()
        pre = self.artifact.preprocess
        blob = preprocess_image(frame, pre)[None]
        t1 = time.perf_counter()
        outputs = self._run(blob)
        t2 = time.perf_counter()
        if self._bottomup:
            from ..models.bottomup import instances_from_seeds
            inst = instances_from_seeds(*outputs, score_threshold=self.score_threshold, frame_size=frame.shape[:2])
        else:
            boxes, scores, labels, masks = outputs
            keep = scores >= self.score_threshold
            inst = instances_from_detections(boxes[keep], scores[keep], labels[keep], masks[keep], tuple(pre.size),
                                             frame.shape[:2])
        seg_labels, probs = _semantic_view(inst, len(self.classes), frame.shape[:2])
        t3 = time.perf_counter()
        return Segmentation(labels=seg_labels, probs=probs, timings={"pre": t1 - t0, "infer": t2 - t1,
                                                                     "post": t3 - t2, "crf": 0.0}, instances=inst)

    def overlay(self, frame: np.ndarray, result: Segmentation, alpha: float = 0.5) -> np.ndarray:
        """Each instance blended in its own colour, its box and "class score" drawn -> (H, W, 3) BGR uint8."""
        return draw_instances(frame, result.instances, self.classes, alpha)

    def reset(self) -> None:
        """Nothing to forget: instance results carry no state across frames (kept for the streaming loop)."""

    def close(self) -> None:
        self._run = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _semantic_view(inst: Instances, num_classes: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros(hw, label_dtype(num_classes))
    probs = np.zeros((num_classes, *hw), np.float32)
    for i in range(len(inst) - 1, -1, -1):  # lowest score first, so the best instance paints last
        labels[inst.masks[i]] = inst.classes[i]
        probs[inst.classes[i]][inst.masks[i]] = np.maximum(probs[inst.classes[i]][inst.masks[i]], inst.scores[i])
    probs[0] = 1.0 - probs[1:].max(0) if num_classes > 1 else 1.0
    return labels, probs


def draw_instances(frame: np.ndarray, inst: Instances | None, classes: list[str], alpha: float = 0.5) -> np.ndarray:
    """Blend each instance mask in its own colour and draw its box and "name 0.93" label; BGR uint8 out."""
    cv2 = require("cv2", "drawing overlays")
    out = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    if inst is None or len(inst) == 0:
        return out
    colors = _palette(len(inst))
    for i in range(len(inst)):
        color = colors[i].astype(np.float32)
        m = inst.masks[i]
        out[m] = (out[m] * (1 - alpha) + color * alpha).astype(np.uint8)
        x1, y1, x2, y2 = (round(float(v)) for v in inst.boxes[i])
        c = tuple(int(v) for v in colors[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), c, 2)
        name = classes[inst.classes[i]] if inst.classes[i] < len(classes) else str(inst.classes[i])
        cv2.putText(out, f"{name} {inst.scores[i]:.2f}", (x1 + 2, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, c, 1, cv2.LINE_AA)
    return out
