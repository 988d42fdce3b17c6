"""The task's own metric for judging a reduced-precision file against its FP32 source.

``parse_accept("dice_drop<=0.005")`` reads an acceptance rule; :class:`EvalSet` holds labelled images
preprocessed as the sidecar says; :func:`score_model` runs a file through ONNX Runtime on the CPU and
:func:`drops` compares two scores. Labels are taken at each image's own resolution (logits resized,
then argmax), as ``edgeseg eval`` does.

>>> rules = parse_accept("miou_drop<=0.5%, hc_mm<=0.5")           # doctest: +SKIP
>>> data = EvalSet.load(artifact, "hc18", limit=64)                # doctest: +SKIP
>>> fp32, int8 = score_model("m.onnx", data), score_model("m.int8.onnx", data)   # doctest: +SKIP
>>> drops(fp32, int8)["miou_drop"]                                 # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg._deps import require
from edgeseg.artifact import Artifact
from edgeseg.errors import InputError
from edgeseg.metrics import ConfusionMatrix

ACCEPT_METRICS = {
    "miou_drop": "FP32 mean IoU minus the candidate's (all classes, against the masks)",
    "dice_drop": "FP32 mean foreground Dice minus the candidate's",
    "boundary_f_drop": "FP32 boundary F-score minus the candidate's (foreground classes, tolerance 0.75% of "
                       "the image diagonal)",
    "hc_mm": "mean |head circumference(candidate) - head circumference(FP32)| in mm (HC18 models; needs "
             "pixel_size_and_hc.csv)",
}
_RULE = re.compile(r"^\s*([a-z_]+)\s*(<=|<)\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(%?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Criterion:
    """``metric <= bound`` (or ``<`` when ``strict``); a value is the candidate's loss against FP32."""

    metric: str
    bound: float
    strict: bool = False

    def holds(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value < self.bound if self.strict else value <= self.bound

    def ratio(self, value: float) -> float:
        """``value / bound``: below 1 passes (how far from the bound, for ranking candidates)."""
        if math.isnan(value):
            return math.inf
        return max(value, 0.0) / self.bound if self.bound > 0 else (0.0 if value <= 0 else math.inf)

    def __str__(self) -> str:
        return f"{self.metric}{'<' if self.strict else '<='}{self.bound:g}"


def parse_accept(text: str) -> list[Criterion]:
    """``"miou_drop<=0.005"``, ``"dice_drop<=0.5%, hc_mm<=0.5"`` (comma or ``and``) -> criteria."""
    expected = (f"expected METRIC<=VALUE (several joined by ',' or 'and'), METRIC one of "
                f"{', '.join(ACCEPT_METRICS)}, e.g. \"miou_drop<=0.005\"")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"--accept: got {text!r}, {expected}")
    criteria: dict[str, Criterion] = {}
    for part in re.split(r",|\band\b", text):
        match = _RULE.match(part)
        if not match:
            raise InputError(f"--accept: cannot read {part.strip()!r} in {text!r}; {expected}")
        name, op, value, percent = match.groups()
        name = name.lower()
        if name not in ACCEPT_METRICS:
            raise InputError(f"--accept: unknown metric {name!r} in {text!r}; {expected}")
        if name in criteria:
            raise InputError(f"--accept: {name!r} appears twice in {text!r}; give each metric once, {expected}")
        bound = float(value) / (100.0 if percent else 1.0)
        if percent and name == "hc_mm":
            raise InputError(f"--accept: hc_mm is in millimetres, got a percentage in {text!r}; {expected}")
        criteria[name] = Criterion(name, bound, strict=op == "<")
    return list(criteria.values())


@dataclass
class EvalSet:
    """Labelled images ready for a model: inputs ``(N, C, H, W)`` float32, masks and sizes at full resolution."""

    names: list[str]
    inputs: np.ndarray
    truths: list[np.ndarray]
    classes: list[str]
    ignore_index: int | None = None
    pixel_sizes: list[float] | None = None
    output_kind: str = "logits"  # the sidecar's: a 1-channel output is foreground when > 0 (logits) or > 0.5 (probs)

    @classmethod
    def load(cls, artifact: Artifact, data: str | Path, limit: int | None = 64, seed: int = 0,
             exclude: Sequence[str | Path] = (), hc_csv: str | Path | None = None,
             files: Sequence[str] | None = None) -> EvalSet:
        """``data``/images and ``data``/masks (paired as the sidecar's training config says); ``limit`` pairs
        sampled with ``seed``, skipping image files in ``exclude`` (e.g. the calibration images); only the
        image file names in ``files`` when given."""
        from edgeseg.apps.ultrasound import read_hc_csv
        from edgeseg.data import load_image, preprocess_image
        from edgeseg.data.class_folders import read_sample_mask
        from edgeseg.evaluate import mask_spec_of, select_samples

        root = Path(data)
        if not (root / "images").is_dir() or not (root / "masks").is_dir():
            raise InputError(f"--data: got {root}, expected a folder with images/ and masks/ (labelled images "
                             "of your deployment domain, masks as `edgeseg train` reads them)")
        skip = {Path(p).name for p in exclude}
        samples = [s for s in select_samples(artifact, root / "images", root / "masks", "all")
                   if Path(s.image).name not in skip]
        if files is not None:
            wanted = set(files)
            samples = [s for s in samples if s.name in wanted]
        if not samples:
            raise InputError(f"--data: no image/mask pairs left in {root} after leaving out {len(skip)} "
                             "calibration images; give more images or a separate --calibration folder")
        if limit and len(samples) > limit:
            pick = np.random.default_rng(seed).choice(len(samples), size=limit, replace=False)
            samples = [samples[i] for i in sorted(pick)]
        spec = mask_spec_of(artifact)
        images = [load_image(s.image) for s in samples]
        pixel_sizes = None
        if hc_csv is not None:
            reference = read_hc_csv(hc_csv)
            missing = [s.name for s in samples if s.name not in reference]
            if missing:
                raise InputError(f"--hc-csv: {hc_csv} has no row for {missing[:3]}, expected one per image")
            pixel_sizes = [reference[s.name].pixel_size_mm for s in samples]
        return cls([s.name for s in samples], np.stack([preprocess_image(i, artifact.preprocess) for i in images]),
                   [read_sample_mask(s, spec, i.shape[:2]) for s, i in zip(samples, images)],
                   list(artifact.classes), spec.ignore_index,
                   pixel_sizes, artifact.output_kind)

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Scores:
    """One model on an :class:`EvalSet`: the confusion matrix, mean boundary F and head circumferences."""

    confusion: ConfusionMatrix
    boundary_f: float
    hc_mm: np.ndarray | None
    labels: list[np.ndarray]

    def summary(self, classes: Sequence[str]) -> dict:
        iou = self.confusion.iou
        return {"miou": self.confusion.mean_iou, "dice": self.confusion.mean_dice(), "boundary_f": self.boundary_f,
                "iou": {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, iou)},
                **({"hc_mm_mean": float(np.nanmean(self.hc_mm))} if self.hc_mm is not None else {})}


def open_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session that runs Q/DQ pairs as the ONNX spec writes them (quantise, dequantise,
    float op: what TensorRT computes), not ORT's fused integer kernels, whose results depend on the CPU."""
    ort = require("onnxruntime", "judging a reduced-precision model")
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def score_model(path: str | Path, data: EvalSet, batch: int = 8, threads: int | None = None) -> Scores:
    """Run ``path`` on every image of ``data`` and score its labels against the masks."""
    cv2 = require("cv2", "judging a reduced-precision model")
    from edgeseg.apps.ultrasound import head_circumference_mm

    session = open_session(path, threads)
    name = session.get_inputs()[0].name
    confusion = ConfusionMatrix(len(data.classes), data.ignore_index)
    labels, bf = [], []
    for start in range(0, len(data), batch):
        scores = session.run(None, {name: data.inputs[start:start + batch]})[0]
        for offset, one in enumerate(np.asarray(scores, np.float32)):
            truth = data.truths[start + offset]
            h, w = truth.shape
            full = cv2.resize(one.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
            if full.shape[2] == 1:  # one sigmoid channel for two classes
                label = (full[:, :, 0] > (0.5 if data.output_kind == "probs" else 0.0)).astype(np.uint8)
            else:
                label = full.argmax(2).astype(np.uint8)
            confusion.update(label, truth)
            bf.append(boundary_f(label, truth, len(data.classes), data.ignore_index))
            labels.append(label)
    hc = None
    if data.pixel_sizes is not None:
        hc = np.array([_hc_or_nan(head_circumference_mm, lab, px) for lab, px in zip(labels, data.pixel_sizes)])
    return Scores(confusion, float(np.nanmean(bf)) if not np.isnan(bf).all() else float("nan"), hc, labels)


def drops(reference: Scores, candidate: Scores) -> dict[str, float]:
    """Every :data:`ACCEPT_METRICS` value of ``candidate`` against ``reference`` (hc_mm only with HC data)."""
    ref, cand = reference.confusion, candidate.confusion
    out = {"miou_drop": ref.mean_iou - cand.mean_iou, "dice_drop": ref.mean_dice() - cand.mean_dice(),
           "boundary_f_drop": reference.boundary_f - candidate.boundary_f}
    if reference.hc_mm is not None and candidate.hc_mm is not None:
        seen = ~np.isnan(reference.hc_mm)
        # no head found where FP32 found one: the whole circumference is the error
        diff = np.where(np.isnan(candidate.hc_mm), reference.hc_mm, np.abs(candidate.hc_mm - reference.hc_mm))
        out["hc_mm"] = float(diff[seen].mean()) if seen.any() else float("nan")
    return out


def boundary_f(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int | None = None,
               tolerance: float = 0.0075) -> float:
    """Mean boundary F-score over foreground classes present in ``pred`` or ``truth`` (Csurka et al. 2013):
    boundary pixels within ``tolerance`` x image diagonal of the other's boundary count as matched.
    NaN when no foreground class is present."""
    cv2 = require("cv2", "boundary F-score")
    tol = tolerance * math.hypot(*truth.shape)
    valid = truth != ignore_index if ignore_index is not None else np.ones(truth.shape, bool)
    scores = []
    for c in range(1, num_classes):
        p, t = _boundary(cv2, (pred == c) & valid), _boundary(cv2, (truth == c) & valid)
        if not p.any() and not t.any():
            continue
        if not p.any() or not t.any():
            scores.append(0.0)
            continue
        precision = float((_distance_to(cv2, t)[p] <= tol).mean())
        recall = float((_distance_to(cv2, p)[t] <= tol).mean())
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(scores)) if scores else float("nan")


def _boundary(cv2, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)).astype(bool)


def _distance_to(cv2, boundary: np.ndarray) -> np.ndarray:
    return cv2.distanceTransform((~boundary).astype(np.uint8), cv2.DIST_L2, 3)


def _hc_or_nan(fn, mask: np.ndarray, pixel_size: float) -> float:
    try:
        return fn(mask, pixel_size)
    except InputError:  # nothing predicted: no ellipse to fit
        return float("nan")
