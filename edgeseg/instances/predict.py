"""Instance models' outputs -> :class:`Instances` at frame size, and the per-frame decoder the
:class:`~edgeseg.pipeline.Segmenter` runs for instance models (after its runner, whatever the backend).

Three output layouts, read by name from the runner's outputs:

- detections (Mask R-CNN, FCIS): ``boxes`` (D, 4) at model-input size, ``scores``, ``labels``, ``masks``
  (D, M, M) probabilities over each box;
- seeds (bottom-up): ``scores``, ``labels``, ``image_masks`` (T, H, W) soft masks at model-input size;
- a split export's engine part (``--route decomposed``: ``feature``, ``objectness``, ``rpn_deltas``), which the
  host graph named in the sidecar's ``extra.export.after_engine`` turns into detections.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..models.maskrcnn.export import OUTPUT_NAMES as DETECTION_OUTPUTS  # what Mask R-CNN / FCIS output per image
from ..models.maskrcnn.postprocess import paste_masks
from .export import BOTTOMUP_OUTPUTS
from .types import Instances


def instance_output_specs(artifact) -> list:
    """Output specs of an instance model whose sidecar lists none (a checkpoint): what its eval forward
    returns per image, by name."""
    from ..artifact import TensorSpec

    if artifact.model == "bottomup":
        kinds = {"scores": (["seeds"], "float32"), "labels": (["seeds"], "int64"),
                 "image_masks": (["seeds", "height", "width"], "float32")}
        return [TensorSpec(name, *kinds[name]) for name in BOTTOMUP_OUTPUTS]
    return [TensorSpec("boxes", ["detections", 4]), TensorSpec("scores", ["detections"]),
            TensorSpec("labels", ["detections"], "int64"), TensorSpec("masks", ["detections", "mask", "mask"])]


def instances_from_detections(boxes, scores, labels, masks, input_size: tuple[int, int],
                              frame_size: tuple[int, int], mask_threshold: float = 0.5) -> Instances:
    """boxes (D, 4) xyxy at ``input_size`` (H, W), scores (D,), labels (D,), masks (D, M, M) probabilities
    over each box -> Instances at ``frame_size`` (H, W) with (D, H, W) bool masks."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    sy, sx = frame_size[0] / input_size[0], frame_size[1] / input_size[1]
    boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
    masks = np.asarray(masks, np.float32).reshape(boxes.shape[0], *np.shape(masks)[-2:])
    pasted = paste_masks(masks, boxes, frame_size[0], frame_size[1], mask_threshold)
    return Instances(boxes, np.asarray(scores, np.float32).reshape(-1), np.asarray(labels, np.int64).reshape(-1),
                     pasted)


def predict_torch(model, image: np.ndarray, frame_size: tuple[int, int] | None = None) -> Instances:
    """Run an eval-mode instance model (Mask R-CNN, FCIS, bottom-up) on one preprocessed image (C, H, W) float32 -> Instances at ``frame_size``
    (default: the input size)."""
    import torch

    size = tuple(image.shape[-2:])
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(image))[None])[0]
    if "image_masks" in out:  # bottom-up: whole-image soft masks per seed, no boxes
        from ..models.bottomup import instances_from_seeds
        return instances_from_seeds(out["scores"].numpy(), out["labels"].numpy(), out["image_masks"].numpy(),
                                    frame_size=frame_size or size)
    return instances_from_detections(out["boxes"].numpy(), out["scores"].numpy(), out["labels"].numpy(),
                                     out["masks"].numpy(), size, frame_size or size)


class InstanceDecoder:
    """One frame's instance-model outputs -> ``(labels, probs, instances)`` at frame size.

    ``labels`` (H, W) is the class of the highest-scoring instance covering each pixel (0 elsewhere) and
    ``probs`` (C, H, W) float32 the per-class maximum of the instances' scores over their masks (background =
    1 - the rest), so semantic consumers keep working. Detections below ``score_threshold`` are dropped.

    Args:
        artifact: the model's artifact (the runner's), listing its outputs.
        score_threshold: minimum detection score kept.
        threads: CPU threads for the host graph of a split export (ONNX Runtime).
    """

    def __init__(self, artifact, score_threshold: float = 0.5, threads: int | None = None) -> None:
        from ..after_engine import after_engine_stage
        from ..errors import ArtifactError, InputError

        if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)):
            raise InputError(f"score_threshold: got {score_threshold!r}, expected a number (detections scoring "
                             "below it are dropped)")
        self.artifact = artifact
        self.score_threshold = float(score_threshold)
        self.num_classes = len(artifact.classes)
        self.bottomup = artifact.model == "bottomup"
        stage = after_engine_stage(artifact)  # names the field when the sidecar holds something else
        needed = list(stage.get("inputs", [])) if stage else (
            BOTTOMUP_OUTPUTS if self.bottomup else DETECTION_OUTPUTS)
        names = [spec.name for spec in artifact.outputs]
        missing = [name for name in needed if name not in names]
        if missing:
            raise ArtifactError(f"{artifact.sidecar_path}: outputs {names} lack {missing}, which the "
                                f"{artifact.model or 'instance'} decoder reads; re-export the model")
        self.after_engine = _host_graph_runner(artifact, stage, threads) if stage else None

    def blob(self, frame: np.ndarray) -> np.ndarray:
        """A checked BGR (H, W, 3) or gray (H, W) uint8 frame -> the model input (1, C, H', W') float32,
        preprocessed as in training (colour, stretch to ``preprocess.size``, normalise)."""
        from ..data.dataset import preprocess_image

        return preprocess_image(frame, self.artifact.preprocess)[None]

    def decode(self, outputs: dict[str, Any], frame_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, Instances]:
        """The runner's outputs (name -> NumPy array) -> labels, probs and :class:`Instances` at ``frame_hw``."""
        if self.after_engine is not None:
            feed = {spec.name: np.asarray(outputs[spec.name], spec.dtype) for spec in self.after_engine.artifact.inputs}
            outputs = self.after_engine.infer(feed, check_finite=False)
        if self.bottomup:
            from ..models.bottomup import instances_from_seeds

            inst = instances_from_seeds(outputs["scores"], outputs["labels"], outputs["image_masks"],
                                        score_threshold=self.score_threshold, frame_size=frame_hw)
        else:
            boxes, scores, labels, masks = (outputs[name] for name in DETECTION_OUTPUTS)
            keep = np.asarray(scores) >= self.score_threshold
            inst = instances_from_detections(boxes[keep], scores[keep], labels[keep], masks[keep],
                                             tuple(self.artifact.preprocess.size), frame_hw)
        labels, probs = semantic_view(inst, self.num_classes, frame_hw)
        return labels, probs, inst

    def close(self) -> None:
        if self.after_engine is not None:
            self.after_engine.deactivate()


def _host_graph_runner(artifact, stage: dict, threads: int | None):
    """The runner (ONNX Runtime) of a split export's host graph: the engine part's outputs -> detections."""
    from ..artifact import TensorSpec
    from ..errors import ArtifactError
    from ..runtime import create_runner

    if stage.get("stage") != "maskrcnn_post":
        raise ArtifactError(f"{artifact.sidecar_path}: extra.export.after_engine.stage is {stage.get('stage')!r}, "
                            "expected 'maskrcnn_post' for an instance model; re-export the model")
    path = artifact.path.parent / str(stage.get("onnx"))
    if not path.is_file():
        raise ArtifactError(f"{artifact.sidecar_path}: extra.export.after_engine names the host graph {path.name!r}, "
                            f"which finishes this split model after {artifact.path.name}, but {path} does not exist; "
                            f"keep it next to {artifact.path.name}")
    inputs = {spec.name: spec for spec in artifact.outputs}
    graph = replace(artifact, path=path, inputs=[inputs[name] for name in stage["inputs"]],
                    outputs=[TensorSpec(o["name"], o["shape"], o["dtype"]) for o in stage["outputs"]],
                    engine=None, extra={"task": "instances"})
    runner = create_runner(graph, backend=stage.get("runtime", "onnxruntime"), threads=threads)
    return runner.activate()


def semantic_view(inst: Instances, num_classes: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Instances -> (labels (H, W), probs (C, H, W) float32): the best instance's class per pixel, and per
    class the highest score of an instance covering the pixel (background = 1 - the rest)."""
    from ..postprocess import label_dtype

    labels = np.zeros(hw, label_dtype(num_classes))
    probs = np.zeros((num_classes, *hw), np.float32)
    for i in range(len(inst) - 1, -1, -1):  # lowest score first, so the best instance paints last
        labels[inst.masks[i]] = inst.classes[i]
        probs[inst.classes[i]][inst.masks[i]] = np.maximum(probs[inst.classes[i]][inst.masks[i]], inst.scores[i])
    probs[0] = 1.0 - probs[1:].max(0) if num_classes > 1 else 1.0
    return labels, probs


def _palette(k: int) -> np.ndarray:
    """(k, 3) distinct BGR uint8 colours (golden-ratio hue steps)."""
    from .._deps import require

    cv2 = require("cv2", "drawing overlays")
    hues = (np.arange(k) * 0.618033988749895 * 180) % 180
    hsv = np.stack([hues, np.full(k, 200), np.full(k, 255)], 1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]


def draw_instances(frame: np.ndarray, inst: Instances | None, classes: list[str], alpha: float = 0.5) -> np.ndarray:
    """Blend each instance mask in its own colour and draw its box and "name 0.93" label; BGR uint8 out."""
    from .._deps import require

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
