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
                             threads: int | None = 1, results_json=None) -> dict:
    """Run ``model`` (.onnx / .safetensors) on every image of ``split`` (score threshold 0: AP ranks them all)
    -> {"segm": AP dict, "bbox": AP dict, "images": N, "median_ms": per-frame latency}."""
    items = hc18_instances(data)
    if split == "val":
        by_name = {it.image.name: it for it in items}
        _, val = split_by_group([Sample(it.image, (it.instance_png,)) for it in items], group_regex, val_fraction,
                                seed)
        items = [by_name[s.name] for s in val]
    items = items[:limit] if limit else items
    seg = InstanceSegmenter(model, score_threshold=0.0, threads=threads)
    preds, targets, sizes, times = [], [], [], []
    for item in items:
        image, target = item.load()
        t0 = time.perf_counter()
        preds.append(seg(image).instances)
        times.append(time.perf_counter() - t0)
        targets.append(target)
        sizes.append(image.shape[:2])
    gt = coco_ground_truth(targets, sizes, seg.classes)
    results = coco_results(preds)
    if results_json:
        write_results_json(results, results_json)
    return {"model": str(Path(model)), "segm": coco_ap(gt, results, "segm"), "bbox": coco_ap(gt, results, "bbox"),
            "images": len(items), "median_ms": float(np.median(times) * 1000)}
