"""COCO AP of an instance model artifact on an image/mask folder at original frame resolution."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..data.folder import Sample, split_by_group
from .coco_eval import coco_ap, coco_ground_truth, coco_results, write_results_json
from .data import hc18_instances
from .segmenter import InstanceSegmenter


def evaluate_model_on_folder(model, data, split: str = "val", group_regex: str | None = r"^(\d{3})_",
                             val_fraction: float = 0.2, seed: int = 0, limit: int | None = None,
                             threads: int | None = 1, results_json=None, dataset: str = "hc18",
                             composites: int = 64, canvas: int = 512, overlap: float = 0.0) -> dict:
    """Run ``model`` (.onnx / .safetensors) on every image of ``split`` (score threshold 0: AP ranks them all)
    -> {"segm": AP dict, "bbox": AP dict, "images": N, "median_ms": per-frame latency}.

    ``dataset="hc18_composites"`` scores ``composites`` canvases of ``canvas`` x ``canvas`` pixels tiled from the
    split's scans (seed ``seed + 1``, the validation canvases of training, drawn at this size; ``overlap > 0``:
    head crops that overlap, see :mod:`edgeseg.instances.composites`); "busi" reads BUSI lesions (split by image)."""
    if dataset == "busi":
        from .data import busi_instances
        items, group_regex = busi_instances(data), None
    else:
        items = hc18_instances(data)
    if split == "val":
        by_name = {it.image.name: it for it in items}
        _, val = split_by_group([Sample(it.image, (it.instance_png,)) for it in items], group_regex, val_fraction,
                                seed)
        items = [by_name[s.name] for s in val]
    seg = InstanceSegmenter(model, score_threshold=0.0, threads=threads)
    if dataset == "hc18_composites":
        from ..artifact import Preprocess
        from .composites import CompositeDataset
        ds = CompositeDataset(items, Preprocess(size=(canvas, canvas), color="gray"), length=limit or composites,
                              seed=seed + 1, overlap=overlap)
        frames = [ds.canvas_at(i) for i in range(len(ds))]
    else:
        frames = (item.load() for item in (items[:limit] if limit else items))
    return {"model": str(Path(model)), **score_frames(seg, frames, results_json)}


def score_frames(seg: InstanceSegmenter, frames, results_json=None) -> dict:
    """Run ``seg`` on each (image, target) of ``frames`` -> {"segm": AP dict, "bbox": AP dict, "images": N,
    "median_ms": per-frame latency}; ``results_json``: also write the detections there (COCO results)."""
    preds, targets, sizes, times = [], [], [], []
    for image, target in frames:
        t0 = time.perf_counter()
        preds.append(seg(image).instances)
        times.append(time.perf_counter() - t0)
        targets.append(target)
        sizes.append(image.shape[:2])
    gt = coco_ground_truth(targets, sizes, seg.classes)
    results = coco_results(preds)
    if results_json:
        write_results_json(results, results_json)
    return {"segm": coco_ap(gt, results, "segm"), "bbox": coco_ap(gt, results, "bbox"), "images": len(targets),
            "median_ms": float(np.median(times) * 1000)}
