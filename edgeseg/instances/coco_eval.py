"""COCO mask AP and box AP through pycocotools, and the COCO results JSON.

Ground truth and predictions are given as arrays per image; this module turns them into the COCO
structures (RLE masks, xywh boxes) that ``pycocotools.cocoeval.COCOeval`` scores.

>>> gt = coco_ground_truth([target], [(256, 256)], ["background", "head"])   # doctest: +SKIP
>>> results = coco_results([instances], image_ids=[1])                     # doctest: +SKIP
>>> coco_ap(gt, results, "segm")   # {"AP": ..., "AP50": ..., "AP75": ...}  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from .._deps import require
from ..errors import InputError
from .types import Instances

#: COCOeval.stats indices of the numbers we report
_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5}


def _rle(mask: np.ndarray) -> dict:
    mask_utils = require("pycocotools.mask", "COCO evaluation")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # JSON-serialisable
    return rle


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_ground_truth(targets: list[dict], sizes: list[tuple[int, int]], classes: list[str]):
    """A ``pycocotools.coco.COCO`` from targets (``boxes`` (G, 4) xyxy, ``labels`` (G,), ``masks`` (G, H, W))
    for images with ids 1..N of ``sizes`` (H, W); category id = label; ``classes[0]`` is the background."""
    coco_mod = require("pycocotools.coco", "COCO evaluation")
    if len(targets) != len(sizes):
        raise InputError(f"sizes: got {len(sizes)}, expected one (H, W) per target ({len(targets)})")
    images, anns = [], []
    for image_id, (target, (h, w)) in enumerate(zip(targets, sizes), start=1):
        images.append({"id": image_id, "height": int(h), "width": int(w), "file_name": f"{image_id}.png"})
        for box, label, mask in zip(target["boxes"], target["labels"], target["masks"]):
            rle = _rle(mask)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(label), "iscrowd": 0,
                         "bbox": _xywh(box), "area": float(np.count_nonzero(mask)), "segmentation": rle})
    cats = [{"id": i, "name": name} for i, name in enumerate(classes) if i > 0]
    coco = coco_mod.COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_results(predictions: list[Instances], image_ids: list[int] | None = None) -> list[dict]:
    """COCO results (one dict per detection: image_id, category_id, bbox xywh, score, segmentation RLE)."""
    image_ids = image_ids or list(range(1, len(predictions) + 1))
    results = []
    for image_id, inst in zip(image_ids, predictions):
        for box, score, label, mask in zip(inst.boxes, inst.scores, inst.classes, inst.masks):
            results.append({"image_id": int(image_id), "category_id": int(label), "bbox": _xywh(box),
                            "score": float(score), "segmentation": _rle(mask)})
    return results


def write_results_json(results: list[dict], path) -> Path:
    """Write COCO results (from :func:`coco_results`) to ``path``; pycocotools' ``loadRes`` reads it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))
    return path


def coco_ap(gt, results: list[dict], iou_type: str = "segm") -> dict[str, float]:
    """COCO AP of ``results`` against ``gt`` for ``iou_type`` "segm" (mask AP) or "bbox" (box AP).

    Returns AP (IoU 0.50:0.95), AP50, AP75 and AP by object size, in [0, 1]; -1 where undefined (pycocotools).
    No detections at all scores 0.
    """
    cocoeval = require("pycocotools.cocoeval", "COCO evaluation")
    if iou_type not in ("segm", "bbox"):
        raise InputError(f"iou_type: got {iou_type!r}, expected 'segm' or 'bbox'")
    if not results:
        return {k: 0.0 for k in _STATS}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = cocoeval.COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(ev.stats[i]) for k, i in _STATS.items()}
