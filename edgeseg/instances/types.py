"""The per-frame result of an instance model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass
class Instances:
    """Detections of one frame, sorted by decreasing score.

    boxes (K, 4) float32 xyxy in frame pixels; scores (K,) float32; classes (K,) int64 (index into the
    artifact's class names, 0 = background never appears); masks (K, H, W) bool at frame size.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray

    def __post_init__(self) -> None:
        k = self.boxes.shape[0]
        if self.boxes.shape != (k, 4):
            raise InputError(f"Instances.boxes: got shape {self.boxes.shape}, expected (K, 4)")
        for name in ("scores", "classes"):
            if getattr(self, name).shape != (k,):
                raise InputError(f"Instances.{name}: got shape {getattr(self, name).shape}, expected ({k},)")
        if self.masks.ndim != 3 or self.masks.shape[0] != k:
            raise InputError(f"Instances.masks: got shape {self.masks.shape}, expected ({k}, H, W)")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def above(self, score: float) -> Instances:
        """The detections scoring at least ``score``."""
        keep = self.scores >= score
        return Instances(self.boxes[keep], self.scores[keep], self.classes[keep], self.masks[keep])

    @classmethod
    def empty(cls, height: int, width: int) -> Instances:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   np.zeros((0, height, width), bool))
