"""Our COCO wiring against pycocotools' own definition of AP on pairs whose answer is known by hand."""

import json

import numpy as np
import pytest

pytest.importorskip("pycocotools")

from edgeseg.instances import Instances
from edgeseg.instances.coco_eval import (
    coco_ap,
    coco_ground_truth,
    coco_results,
    write_results_json,
)


def _box_mask(box, size=100):
    m = np.zeros((size, size), bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    return m


def _gt(boxes, size=100):
    masks = np.stack([_box_mask(b, size) for b in boxes])
    return {"boxes": np.array(boxes, np.float32), "labels": np.ones(len(boxes), np.int64), "masks": masks}


def _pred(boxes, scores, size=100):
    return Instances(np.array(boxes, np.float32), np.array(scores, np.float32), np.ones(len(boxes), np.int64),
                     np.stack([_box_mask(b, size) for b in boxes]))


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_one_detection_with_iou_062(iou_type):
    # GT 50x50; prediction 50x31 inside it: IoU = 1550 / 2500 = 0.62 for boxes and masks alike.
    # It is a true positive at IoU thresholds 0.50, 0.55, 0.60 and a miss at 0.65 ... 0.95:
    # AP (mean over the 10 thresholds) = 3/10, AP50 = 1, AP75 = 0.
    gt = coco_ground_truth([_gt([(10, 10, 60, 60)])], [(100, 100)], ["background", "head"])
    ap = coco_ap(gt, coco_results([_pred([(10, 10, 60, 41)], [0.9])]), iou_type)
    assert ap["AP"] == pytest.approx(0.3, abs=1e-6)
    assert ap["AP50"] == pytest.approx(1.0) and ap["AP75"] == pytest.approx(0.0)


def test_false_positive_ranked_first_halves_precision():
    # Two images, one GT each. Image 1: a perfect detection at score 0.6. Image 2: a miss at score 0.9
    # and a perfect one at 0.5. Ranked: FP (0.9), TP (0.6), TP (0.5) -> precision at recall 0.5 and 1.0
    # is 1/2 and 2/3; COCO's interpolated precision (max to the right) is 2/3 at every recall point.
    gt = coco_ground_truth([_gt([(10, 10, 60, 60)]), _gt([(20, 20, 80, 80)])], [(100, 100)] * 2,
                           ["background", "head"])
    preds = [_pred([(10, 10, 60, 60)], [0.6]), _pred([(0, 85, 10, 95), (20, 20, 80, 80)], [0.9, 0.5])]
    ap = coco_ap(gt, coco_results(preds), "segm")
    assert ap["AP50"] == pytest.approx(2 / 3, abs=1e-2)  # 101-point sampling of a step curve


def test_results_json_round_trips_through_pycocotools(tmp_path):
    gt = coco_ground_truth([_gt([(10, 10, 60, 60)])], [(100, 100)], ["background", "head"])
    results = coco_results([_pred([(10, 10, 60, 60)], [0.8])])
    path = write_results_json(results, tmp_path / "results.json")
    loaded = json.loads(path.read_text())
    assert loaded[0]["bbox"] == [10.0, 10.0, 50.0, 50.0] and loaded[0]["category_id"] == 1
    dt = gt.loadRes(str(path))
    assert dt.annToMask(dt.loadAnns(dt.getAnnIds())[0]).sum() == 2500
    assert coco_ap(gt, loaded, "segm")["AP"] == pytest.approx(1.0)


def test_no_detections_score_zero():
    gt = coco_ground_truth([_gt([(10, 10, 60, 60)])], [(100, 100)], ["background", "head"])
    assert coco_ap(gt, [], "bbox")["AP"] == 0.0
