"""Evaluate a checkpoint or exported model on a folder of images and masks, at the images' own resolution.

The model's logits are resized to each image's size (bilinear) before the argmax, so the metrics and
the ultrasound head circumference describe what a user gets on the original frame, not on the
network's input grid. ``split="val"`` evaluates exactly the validation files recorded by training in
the sidecar (``extra.train.split.val_files``). A model trained on class folders (``layout="class-folders"``)
reads the same layout: ``images`` is then the folder of class folders and ``masks`` is not used.

Metrics: everything :meth:`ConfusionMatrix.summary` gives (pixel accuracy, mean class accuracy, per-class
IoU/Dice, mean IoU, frequency-weighted IoU, the confusion matrix) plus the per-class boundary F-score
(tolerance ``boundary_width`` pixels at the original resolution, averaged over the images where the
class is present in the truth or the prediction).

>>> from edgeseg.evaluate import evaluate
>>> report = evaluate("edgeseg/assets/hc18_fastseg.safetensors", "hc18/images", "hc18/masks",
...                   split="val", hc_csv="hc18/pixel_size_and_hc.csv", grid="hc18_grid.png")  # doctest: +SKIP
>>> report.metrics["dice"]["head"], report.hc["mean_abs_error_mm"]                            # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require
from .artifact import Artifact
from .data import MaskSpec, Sample, load_image, pair_folder, preprocess_image
from .data.class_folders import class_folder_samples, read_sample_mask
from .errors import InputError
from .metrics import ConfusionMatrix, boundary_f_per_class


@dataclass
class EvalReport:
    """Metrics (``ConfusionMatrix.summary``), per-image rows, HC summary (when a CSV is given), latency."""

    model: str
    split: str
    images: int
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    hc: dict[str, Any] | None = None
    infer_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "split": self.split, "images": self.images, "metrics": self.metrics,
                "hc": self.hc, "infer_ms": self.infer_ms, "per_image": self.per_image}


def open_predictor(path: str | Path, threads: int | None = None) -> tuple[Callable[[np.ndarray], np.ndarray], Artifact]:
    """``predict(image) -> scores (C, H, W) float32 at the image's size`` for a model file, and its artifact.

    ``image`` is a BGR (H, W, 3) or gray (H, W) uint8 frame. Runs through ``edgeseg.runtime.create_runner``
    (PyTorch for ``.safetensors``, ONNX Runtime for ``.onnx``); scores are logits or probabilities as
    the artifact's ``output_kind`` says (the argmax is the same). ``threads``: the runner's CPU threads.
    """
    cv2 = require("cv2", "evaluation")
    from .after_engine import after_engine_step
    from .pipeline import check_output_finite
    from .runtime import create_runner

    runner = create_runner(path, **({"threads": threads} if threads else {}))
    runner.activate()
    artifact = runner.artifact
    in_name, out_name = runner.input_names[0], runner.output_names[0]
    finish = after_engine_step(artifact)  # a decomposed export's step after the graph (the CRF), as the Segmenter

    def predict(image: np.ndarray) -> np.ndarray:
        blob = preprocess_image(image, artifact.preprocess)[None]
        scores = runner.infer({in_name: blob})[out_name]
        scores = np.asarray(scores if finish is None else finish(scores, blob))[0].astype(np.float32)
        check_output_finite(scores, artifact)  # NaN scores would read as "nothing found"
        h, w = image.shape[:2]
        resized = cv2.resize(scores.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_LINEAR)
        return resized.reshape(h, w, -1).transpose(2, 0, 1)

    return predict, artifact


def select_samples(artifact: Artifact, images: str | Path, masks: str | Path, split: str,
                   mask_pattern: str | None = None) -> list[Sample]:
    """All pairs (``split="all"``) or the validation files recorded in the sidecar (``split="val"``)."""
    config = artifact.extra.get("train", {}).get("config", {})
    if config.get("layout") == "class-folders":
        samples, _ = class_folder_samples(images, config.get("mask_suffix", "_mask"),
                                          config.get("background", ["normal"]), list(artifact.classes))
    else:
        if masks is None:
            raise InputError("masks: not given, expected the masks folder (the model was trained on image/mask pairs)")
        pattern = mask_pattern or config.get("mask_pattern", "{stem}.png")
        samples = pair_folder(images, masks, image_glob=config.get("image_glob", "*"), mask_pattern=pattern,
                              allow_unpaired_masks=True)
    if split == "all":
        return samples
    if split != "val":
        raise InputError(f"split: got {split!r}, expected 'val' or 'all'")
    val_files = artifact.extra.get("train", {}).get("split", {}).get("val_files")
    if not val_files:
        raise InputError(f"split: 'val' needs the validation file list in {artifact.sidecar_path} "
                         "(extra.train.split.val_files, written by edgeseg train); use split='all'")
    by_name = {s.name: s for s in samples}
    missing = [n for n in val_files if n not in by_name]
    if missing:
        raise InputError(f"images: {len(missing)} validation files of the checkpoint are not in {images}, "
                         f"e.g. {missing[:3]}; expected the folder the model was trained on")
    return [by_name[n] for n in val_files]


def mask_spec_of(artifact: Artifact, mode: str | None = None) -> MaskSpec:
    config = artifact.extra.get("train", {}).get("config", {})
    if config.get("layout") == "class-folders":
        mode = "index"  # the class comes from the folder; read_sample_mask ORs the files
    return MaskSpec(mode or config.get("mask_mode", "binary"), num_classes=len(artifact.classes),
                    ignore_index=config.get("ignore_index"))


def evaluate(model: str | Path, images: str | Path, masks: str | Path | None, split: str = "val",
             hc_csv: str | Path | None = None, grid: str | Path | None = None, limit: int | None = None,
             mask_mode: str | None = None, mask_pattern: str | None = None, progress: bool = False,
             threads: int | None = None, boundary_width: int = 3, grid_count: int = 4,
             predictor: Callable[[np.ndarray], np.ndarray] | None = None) -> EvalReport:
    """Score ``model`` on image/mask pairs; optionally HC error against ``hc_csv`` and a PNG ``grid`` of the
    ``grid_count`` worst and best images by per-image mean IoU.

    ``predictor``: score this ``predict(image) -> scores (C, H, W) at the image's size`` instead of running
    ``model`` (e.g. the model followed by a dense CRF); ``model`` then only supplies the sidecar."""
    tqdm = require("tqdm", "progress bars").tqdm
    from .apps.ultrasound import head_circumference_mm, read_hc_csv

    predict, artifact = open_predictor(model, threads) if predictor is None else (predictor, Artifact.load(model))
    samples = select_samples(artifact, images, masks, split, mask_pattern)[: limit or None]
    spec = mask_spec_of(artifact, mask_mode)
    reference = read_hc_csv(hc_csv) if hc_csv else None
    if boundary_width < 0:
        raise InputError(f"boundary_width: got {boundary_width!r}, expected pixels >= 0")
    classes = list(artifact.classes)
    total = ConfusionMatrix(len(classes), spec.ignore_index)
    rows, times, bf = [], [], []
    for sample in tqdm(samples, desc="eval", disable=not progress):
        image = load_image(sample.image)
        truth = read_sample_mask(sample, spec, image.shape[:2])
        t0 = time.perf_counter()
        labels = predict(image).argmax(0).astype(np.uint8)
        times.append(time.perf_counter() - t0)
        one = ConfusionMatrix(len(classes), spec.ignore_index)
        one.update(labels, truth)
        total.merge(one)
        bf.append(boundary_f_per_class(labels, truth, len(classes), boundary_width, spec.ignore_index))
        row = {"file": sample.name, "dice": one.mean_dice(), "miou": one.mean_iou}
        if reference is not None:
            ref = reference[sample.name]
            row["hc_ref_mm"] = ref.hc_mm
            row["hc_pred_mm"] = _hc_or_nan(head_circumference_mm, labels, ref.pixel_size_mm)
            row["hc_gt_mm"] = _hc_or_nan(head_circumference_mm, truth, ref.pixel_size_mm)
        rows.append(row)
    report = EvalReport(str(model), split, len(samples), total.summary(classes), rows,
                        hc=_hc_summary(rows) if reference is not None else None, infer_ms=_ms(times))
    report.metrics["mean_image_dice"] = float(np.nanmean([r["dice"] for r in rows]))
    report.metrics.update(_boundary_summary(bf, classes, boundary_width))
    if grid:
        picks = worst_and_best(rows, grid_count)
        examples = []
        for index, title in picks:
            sample = samples[index]
            image = load_image(sample.image)
            examples.append((image, read_sample_mask(sample, spec, image.shape[:2]),
                             predict(image).argmax(0).astype(np.uint8), title))
        write_grid(grid, examples, artifact.colors, classes=classes)
    return report


def _boundary_summary(scores: list[np.ndarray], classes: list[str], width: int) -> dict[str, Any]:
    """Per-class boundary F (mean over images where the class is present) and its mean over foreground classes."""
    table = np.vstack(scores) if scores else np.full((0, len(classes)), np.nan)
    seen = ~np.isnan(table)
    per_class = [float(np.nanmean(table[:, c])) if seen[:, c].any() else None for c in range(len(classes))]
    fg = [v for v in per_class[1:] if v is not None]
    return {"boundary_f": {n: v for n, v in zip(classes, per_class)},
            "mean_boundary_f": float(np.mean(fg)) if fg else None, "boundary_width_px": int(width)}


def worst_and_best(rows: list[dict[str, Any]], count: int) -> list[tuple[int, str]]:
    """(row index, title) of the ``count`` lowest and ``count`` highest per-image mean IoU rows, worst first."""
    order = sorted((i for i, r in enumerate(rows) if not np.isnan(r["miou"])), key=lambda i: (rows[i]["miou"], i))
    worst = order[:count]
    best = [i for i in order[::-1][:count] if i not in worst][::-1]
    return ([(i, f"worst: {rows[i]['file']}  mIoU {rows[i]['miou']:.3f}") for i in worst]
            + [(i, f"best: {rows[i]['file']}  mIoU {rows[i]['miou']:.3f}") for i in best])


def _hc_or_nan(fn, mask: np.ndarray, pixel_size: float) -> float:
    try:
        return fn(mask, pixel_size)
    except InputError:  # nothing predicted: no ellipse to fit
        return float("nan")


def _hc_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pred = np.array([r["hc_pred_mm"] - r["hc_ref_mm"] for r in rows])
    gt = np.array([r["hc_gt_mm"] - r["hc_ref_mm"] for r in rows])
    ok = ~np.isnan(pred)
    return {
        "mean_abs_error_mm": float(np.abs(pred[ok]).mean()) if ok.any() else None,
        "median_abs_error_mm": float(np.median(np.abs(pred[ok]))) if ok.any() else None,
        "p95_abs_error_mm": float(np.percentile(np.abs(pred[ok]), 95)) if ok.any() else None,
        "mean_error_mm": float(pred[ok].mean()) if ok.any() else None,
        "no_head_found": int((~ok).sum()),
        "gt_mask_mean_abs_error_mm": float(np.nanmean(np.abs(gt))),
    }


def _ms(times: list[float]) -> dict[str, float]:
    if not times:
        return {}
    t = np.asarray(times[1:] or times) * 1e3  # the first call warms up
    return {"median": float(np.median(t)), "p99": float(np.percentile(t, 99))}


def write_grid(path: str | Path, examples: list[tuple], colors: list[tuple[int, int, int]], width: int = 320,
               classes: list[str] | None = None) -> Path:
    """A PNG with one row per example ``(image, truth, labels[, title])``: image | ground truth overlay |
    prediction overlay (BGR colours), a title over the image, and a legend of ``classes`` at the bottom."""
    cv2 = require("cv2", "writing the example grid")
    palette = np.asarray(colors, np.uint8)
    rows = []
    for image, truth, labels, *caption in examples:
        bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        h = round(bgr.shape[0] * width / bgr.shape[1])
        small = cv2.resize(bgr, (width, h), interpolation=cv2.INTER_AREA)
        tiles = [small]
        for mask, title in ((truth, "ground truth"), (labels, "prediction")):
            m = cv2.resize(np.asarray(mask, np.uint8), (width, h), interpolation=cv2.INTER_NEAREST)
            m = np.where(m < len(palette), m, 0)  # ignore-index pixels drawn as background
            tile = cv2.addWeighted(small, 0.6, palette[m], 0.4, 0)
            contours, _ = cv2.findContours((m > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(tile, contours, -1, (0, 255, 255), 1)
            cv2.putText(tile, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        if caption:
            tiles[0] = tiles[0].copy()
            cv2.putText(tiles[0], caption[0], (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.hstack(tiles))
    if not rows:
        raise InputError("examples: got none, expected at least one (image, truth, prediction) to draw")
    from .outputs import write_image

    if classes:
        rows.append(legend_strip(classes, palette, rows[0].shape[1]))
    return write_image(Path(path), np.vstack(rows))


def legend_strip(classes: list[str], palette: np.ndarray, width: int, height: int = 24) -> np.ndarray:
    """A (height, width, 3) BGR strip: one colour swatch and name per class."""
    cv2 = require("cv2", "drawing a legend")
    strip = np.zeros((height, width, 3), np.uint8)
    x = 6
    for index, name in enumerate(classes):
        color = tuple(int(v) for v in palette[index % len(palette)])
        cv2.rectangle(strip, (x, 6), (x + 12, height - 6), color, -1)
        cv2.rectangle(strip, (x, 6), (x + 12, height - 6), (128, 128, 128), 1)  # a black class stays visible
        cv2.putText(strip, name, (x + 16, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        x += 16 + 9 * len(name) + 14
    return strip
