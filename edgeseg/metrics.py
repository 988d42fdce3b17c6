"""Segmentation metrics from a running confusion matrix: pixel accuracy, IoU, mean IoU, Dice; boundary F-score
and trimap IoU for still images; flicker, temporal consistency and lag for video (:class:`TemporalMetrics`).

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
    def class_accuracy(self) -> np.ndarray:
        """Per-class recall ``n_ii / t_i`` (t_i: ground-truth pixels of class i), NaN where t_i = 0."""
        return self._ratio(np.diag(self.matrix).astype(np.float64), self.matrix.sum(1))

    @property
    def mean_class_accuracy(self) -> float:
        """FCN's "mean accuracy" ``(1 / n_cl) sum_i n_ii / t_i`` over classes present in the ground truth."""
        acc = self.class_accuracy
        return float(np.nanmean(acc)) if not np.isnan(acc).all() else float("nan")

    @property
    def frequency_weighted_iou(self) -> float:
        """FCN's "f.w. IU" ``(sum_k t_k)^-1 sum_i t_i IoU_i`` (classes absent from the ground truth weigh 0)."""
        t = self.matrix.sum(1).astype(np.float64)
        return float((t * np.nan_to_num(self.iou)).sum() / t.sum()) if t.sum() else float("nan")

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
            "mean_class_accuracy": clean(self.mean_class_accuracy),
            "mean_iou": clean(self.mean_iou),
            "frequency_weighted_iou": clean(self.frequency_weighted_iou),
            "class_accuracy": {n: clean(v) for n, v in zip(names, self.class_accuracy)},
            "mean_dice": clean(self.mean_dice()),
            "iou": {n: clean(v) for n, v in zip(names, self.iou)},
            "dice": {n: clean(v) for n, v in zip(names, self.dice)},
            "confusion_matrix": self.matrix.tolist(),
            "classes": names,
            "pixels": self.total,
        }


# --- boundary quality (still images with ground truth) -------------------------------------------------
#
# boundary(m) = m AND NOT erode(m, 3x3)     (the image edge is not a boundary: the border replicates)
# boundary F  (Perazzi et al., DAVIS 2016), tolerance d pixels, D_d = dilation by a disk of radius d:
#     P = |B_pred AND D_d(B_gt)| / |B_pred|,  R = |B_gt AND D_d(B_pred)| / |B_gt|,  F = 2PR / (P + R)
#     (both boundaries empty: F = 1; one empty: F = 0). Default d = round(0.008 * image diagonal), as DAVIS.
# trimap IoU: IoU of one class counted only inside the band D_w(B_gt) of width w around the true boundary.
# Multi-class: the mean over foreground classes (1..C-1) present in prediction or ground truth.


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> bool boundary pixels: in the mask with a 3x3 neighbour outside it (image edge excluded)."""
    from ._deps import require

    cv2 = require("cv2", "boundary metrics")
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    eroded = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return (m > eroded)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    from ._deps import require

    cv2 = require("cv2", "boundary metrics")
    if radius <= 0:
        return mask.astype(bool)
    return cv2.dilate(mask.astype(np.uint8), _disk(radius)).astype(bool)


def _check_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.ndim != 2 or pred.shape != target.shape:
        raise InputError(f"pred: got shape {pred.shape}, expected a 2-D label map shaped like target {target.shape}")
    return pred, target


def default_tolerance(shape: tuple[int, int]) -> int:
    """DAVIS's boundary tolerance: 0.8% of the image diagonal, in whole pixels (at least 1)."""
    return max(1, round(0.008 * float(np.hypot(*shape))))


def boundary_f_score(pred, target, tolerance: int | None = None) -> float:
    """Boundary F-score of two (H, W) label maps (see the formulas above); NaN when no foreground class is present."""
    pred, target = _check_pair(pred, target)
    d = _tolerance(pred.shape, tolerance)
    scores = [_boundary_f(mask_boundary(pred == c), mask_boundary(target == c), d)
              for c in _foreground_classes(pred, target)]
    return float(np.mean(scores)) if scores else float("nan")


def boundary_f_per_class(pred, target, num_classes: int, tolerance: int | None = None,
                         ignore_index: int | None = None) -> np.ndarray:
    """Boundary F-score of every class 0..num_classes-1 of one image pair, shape (num_classes,): NaN where
    the class is in neither map, 0 where it is in one only. ``ignore_index`` pixels of ``target`` are left
    out of both maps. Same boundary and tolerance definitions as :func:`boundary_f_score`."""
    pred, target = _check_pair(pred, target)
    d = _tolerance(pred.shape, tolerance)
    valid = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        p, t = (pred == c) & valid, (target == c) & valid
        if not p.any() and not t.any():
            continue
        if not p.any() or not t.any():
            out[c] = 0.0
            continue
        out[c] = _boundary_f(mask_boundary(p), mask_boundary(t), d)
    return out


def _tolerance(shape: tuple[int, int], tolerance: int | None) -> int:
    d = default_tolerance(shape) if tolerance is None else int(tolerance)
    if d < 0:
        raise InputError(f"tolerance: got {tolerance!r}, expected pixels >= 0 or None")
    return d


def _boundary_f(bp: np.ndarray, bg: np.ndarray, d: int) -> float:
    """F of two boundary maps at tolerance ``d``: 1 when both are empty, 0 when one is (a class filling the
    whole image has no boundary)."""
    n_p, n_g = int(bp.sum()), int(bg.sum())
    if n_p == 0 or n_g == 0:
        return float(n_p == n_g)
    precision = float((bp & _dilate(bg, d)).sum()) / n_p
    recall = float((bg & _dilate(bp, d)).sum()) / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def trimap_iou(pred, target, width: int = 5) -> float:
    """Mean foreground-class IoU counted only within ``width`` pixels of the true boundary (NaN if no class)."""
    pred, target = _check_pair(pred, target)
    scores = []
    for c in _foreground_classes(pred, target):
        band = _dilate(mask_boundary(target == c), int(width))
        p, t = (pred == c) & band, (target == c) & band
        union = int((p | t).sum())
        if union:
            scores.append(float((p & t).sum()) / union)
    return float(np.mean(scores)) if scores else float("nan")


def _foreground_classes(*maps: np.ndarray) -> list[int]:
    present = np.unique(np.concatenate([np.unique(m) for m in maps]))
    return [int(c) for c in present if c != 0]


# --- temporal quality (video, no ground truth) ---------------------------------------------------------
#
# Frames t-1, t as gray I (0..255), labels L. Pixel sums run over the whole video (pooled, not per frame):
# flicker       = sum_t |{x : L_t(x) != L_t-1(x) and |I_t(x) - I_t-1(x)| < threshold}|
#                 / sum_t |{x : |I_t(x) - I_t-1(x)| < threshold}|
#                 (labels that change where the image did not; static-camera video; lower is better)
# warped labels W_t(x) = L_t-1(x + f(x)), f the dense optical flow from I_t to I_t-1 (OpenCV DIS, nearest
#                 label); pixels whose source x + f(x) falls outside the frame are left out.
# temporal consistency = mean over foreground classes c of  sum_t |L_t = c AND W_t = c| / sum_t |L_t = c OR W_t = c|
# lag (moving-pixel consistency) = the same, counting only pixels with |f(x)| >= motion (default 1 pixel):
#                 where things move, a mask that trails them (EMA ghosting) disagrees with the warped one.
# Higher is better for both; NaN when no foreground label appeared.


def flicker_counts(labels, prev_labels, gray, prev_gray, threshold: float = 8.0) -> tuple[int, int]:
    """(changed static pixels, static pixels) for one frame pair: the two sums of the flicker ratio."""
    static = np.abs(gray.astype(np.int16) - prev_gray.astype(np.int16)) < threshold
    return int((static & (labels != prev_labels)).sum()), int(static.sum())


def warp_labels(prev_labels: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``L_t-1(x + f(x))`` (nearest) and the mask of pixels whose source lies inside the frame."""
    from ._deps import require

    cv2 = require("cv2", "temporal metrics")
    h, w = prev_labels.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = gx + flow[..., 0], gy + flow[..., 1]
    # nearest sampling rounds the source coordinate; inside means the rounded source is a real pixel
    rx, ry = np.floor(map_x + 0.5), np.floor(map_y + 0.5)
    valid = (rx >= 0) & (rx <= w - 1) & (ry >= 0) & (ry <= h - 1)
    src = prev_labels.astype(np.uint16 if prev_labels.dtype.itemsize > 1 else np.uint8)
    warped = cv2.remap(src, rx, ry, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped.astype(prev_labels.dtype), valid


class TemporalMetrics:
    """Flicker, temporal consistency and lag over a video, fed one frame at a time.

    >>> tm = TemporalMetrics()
    >>> for frame, labels in zip(frames, masks):      # doctest: +SKIP
    ...     tm.update(frame, labels)                  # BGR or gray uint8, (H, W) int labels
    >>> tm.summary()                                  # doctest: +SKIP
    {'frames': ..., 'flicker': ..., 'temporal_consistency': ..., 'lag_iou': ...}

    ``flow=False`` skips the optical flow (flicker only; the flow costs a few ms per VGA frame). ``flow_fn``
    replaces DIS: ``flow_fn(gray_t, gray_prev) -> (H, W, 2)`` float32 displacement from t to t-1.
    """

    def __init__(self, threshold: float = 8.0, motion: float = 1.0, flow: bool = True, flow_fn=None):
        if not threshold > 0:
            raise InputError(f"threshold: got {threshold!r}, expected gray levels > 0")
        self.threshold, self.motion, self.use_flow = float(threshold), float(motion), bool(flow)
        self._flow_fn = flow_fn
        self._dis = None
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self.frames = 0
        self.changed = self.static = 0
        self._inter: dict[int, list[int]] = {}  # class -> [inter, union, moving inter, moving union]

    def _gray(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim == 3 and frame.shape[2] == 3:
            from ._deps import require

            cv2 = require("cv2", "temporal metrics")
            return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return frame.reshape(frame.shape[:2])

    def _flow(self, gray: np.ndarray, prev: np.ndarray) -> np.ndarray:
        if self._flow_fn is not None:
            return np.asarray(self._flow_fn(gray, prev), np.float32)
        if self._dis is None:
            from ._deps import require

            cv2 = require("cv2", "temporal metrics")
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return self._dis.calc(gray, prev, None)

    def update(self, frame, labels) -> None:
        gray, labels = self._gray(frame), np.asarray(labels)
        if labels.shape != gray.shape:
            raise InputError(f"labels: got shape {labels.shape}, expected the frame's (H, W) {gray.shape}")
        self.frames += 1
        if self._prev is None or self._prev[0].shape != gray.shape:
            self._prev = (gray.copy(), labels.copy())
            return
        prev_gray, prev_labels = self._prev
        changed, static = flicker_counts(labels, prev_labels, gray, prev_gray, self.threshold)
        self.changed += changed
        self.static += static
        if self.use_flow:
            flow = self._flow(gray, prev_gray)
            warped, valid = warp_labels(prev_labels, flow)
            moving = valid & (np.hypot(flow[..., 0], flow[..., 1]) >= self.motion)
            for c in _foreground_classes(labels, warped):
                a, b = labels == c, warped == c
                sums = self._inter.setdefault(c, [0, 0, 0, 0])
                inter, union = a & b, a | b
                sums[0] += int((inter & valid).sum())
                sums[1] += int((union & valid).sum())
                sums[2] += int((inter & moving).sum())
                sums[3] += int((union & moving).sum())
        self._prev = (gray.copy(), labels.copy())

    @property
    def flicker(self) -> float:
        return self.changed / self.static if self.static else float("nan")

    def _pooled_iou(self, i: int) -> float:
        ious = [s[i] / s[i + 1] for s in self._inter.values() if s[i + 1]]
        return float(np.mean(ious)) if ious else float("nan")

    @property
    def temporal_consistency(self) -> float:
        return self._pooled_iou(0)

    @property
    def lag_iou(self) -> float:
        return self._pooled_iou(2)

    def summary(self) -> dict:
        """JSON-ready: frames, flicker, temporal_consistency, lag_iou (None where undefined) and the settings."""
        def clean(v):
            return None if v is None or np.isnan(v) else round(float(v), 6)

        return {"frames": self.frames, "flicker": clean(self.flicker),
                "temporal_consistency": clean(self.temporal_consistency) if self.use_flow else None,
                "lag_iou": clean(self.lag_iou) if self.use_flow else None,
                "static_threshold": self.threshold, "motion_threshold_px": self.motion}
