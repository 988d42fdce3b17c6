"""Segmentation metrics from a running confusion matrix: pixel accuracy, IoU, mean IoU, Dice.

``matrix[t, p]`` counts pixels of ground-truth class ``t`` predicted as ``p``. A class that appears in
neither the ground truth nor the predictions has IoU and Dice NaN and is left out of the means.

>>> cm = ConfusionMatrix(2)
>>> cm.update(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]))
>>> cm.pixel_accuracy, cm.mean_iou
(0.75, 0.5833333333333333)
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


class ConfusionMatrix:
    """Accumulates a ``(num_classes, num_classes)`` int64 matrix over any number of batches.

    ``update(pred, target)`` takes class-index arrays of equal shape (any shape, e.g. (N, H, W)); pixels
    whose target equals ``ignore_index`` are skipped.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise InputError(f"num_classes: got {num_classes!r}, expected a positive int")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, pred, target) -> None:
        """Add one batch: ``pred`` and ``target`` integer arrays (NumPy or anything ``np.asarray`` takes)."""
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        target = np.asarray(target).reshape(-1).astype(np.int64)
        if pred.shape != target.shape:
            raise InputError(f"pred: got {pred.size} pixels, expected as many as target ({target.size})")
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        k = self.num_classes
        for name, arr in (("target", target), ("pred", pred)):
            if arr.size and (arr.min() < 0 or arr.max() >= k):
                bad = np.unique(arr[(arr < 0) | (arr >= k)])[:10].tolist()
                raise InputError(f"{name}: class values {bad} outside 0..{k - 1} (num_classes={k})")
        self.matrix += np.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix with the same number of classes (e.g. from another worker)."""
        if other.num_classes != self.num_classes:
            raise InputError(f"other.num_classes: got {other.num_classes}, expected {self.num_classes}")
        self.matrix += other.matrix

    # --- metrics -------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    @property
    def pixel_accuracy(self) -> float:
        """Correct pixels / all counted pixels (NaN before any pixel is counted)."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def _ratio(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        out = np.full(self.num_classes, np.nan)
        present = denominator > 0
        out[present] = numerator[present] / denominator[present]
        return out

    @property
    def iou(self) -> np.ndarray:
        """Per-class IoU ``TP / (TP + FP + FN)``, shape (num_classes,), NaN for absent classes."""
        tp = np.diag(self.matrix).astype(np.float64)
        return self._ratio(tp, self.matrix.sum(0) + self.matrix.sum(1) - tp)

    @property
    def dice(self) -> np.ndarray:
        """Per-class Dice ``2 TP / (2 TP + FP + FN)``, shape (num_classes,), NaN for absent classes."""
        tp = np.diag(self.matrix).astype(np.float64)
        return self._ratio(2 * tp, self.matrix.sum(0) + self.matrix.sum(1))

    @property
    def mean_iou(self) -> float:
        """Mean of the per-class IoU over classes present in ground truth or predictions."""
        iou = self.iou
        return float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan")

    def mean_dice(self, include_background: bool = False) -> float:
        """Mean per-class Dice over present classes; class 0 is skipped unless ``include_background``."""
        dice = self.dice if include_background or self.num_classes == 1 else self.dice[1:]
        return float(np.nanmean(dice)) if not np.isnan(dice).all() else float("nan")

    def summary(self, class_names: list[str] | None = None) -> dict:
        """A JSON-serialisable dict of every metric and the matrix itself (NaN becomes None)."""
        names = class_names or [str(i) for i in range(self.num_classes)]

        def clean(v):
            return None if np.isnan(v) else float(v)

        return {
            "pixel_accuracy": clean(self.pixel_accuracy),
            "mean_iou": clean(self.mean_iou),
            "mean_dice": clean(self.mean_dice()),
            "iou": {n: clean(v) for n, v in zip(names, self.iou)},
            "dice": {n: clean(v) for n, v in zip(names, self.dice)},
            "confusion_matrix": self.matrix.tolist(),
            "classes": names,
            "pixels": self.total,
        }
