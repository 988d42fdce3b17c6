"""Detections at model-input size -> :class:`Instances` at frame size (boxes rescaled, masks pasted)."""

from __future__ import annotations

import numpy as np

from ..models.maskrcnn.postprocess import paste_masks
from .types import Instances


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
