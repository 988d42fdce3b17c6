"""Metrics against confusion matrices and scores worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.metrics import ConfusionMatrix


def test_three_class_matrix_and_scores_by_hand():
    # target / pred, 3 classes:
    #   t=0: p=0,0,1      t=1: p=1,1,1,2     t=2: p=0,2
    target = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 1, 2, 0, 2])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[2, 1, 0], [0, 3, 1], [1, 0, 1]]
    assert cm.pixel_accuracy == pytest.approx(6 / 9)
    # IoU_c = TP / (TP + FP + FN): c0 2/(2+1+1), c1 3/(3+1+1), c2 1/(1+1+1)
    assert cm.iou == pytest.approx([2 / 4, 3 / 5, 1 / 3])
    assert cm.mean_iou == pytest.approx((2 / 4 + 3 / 5 + 1 / 3) / 3)
    # Dice_c = 2TP / (2TP + FP + FN)
    assert cm.dice == pytest.approx([4 / 6, 6 / 8, 2 / 4])
    assert cm.mean_dice() == pytest.approx((6 / 8 + 2 / 4) / 2)  # background excluded
    assert cm.mean_dice(include_background=True) == pytest.approx((4 / 6 + 6 / 8 + 2 / 4) / 3)


def test_batches_accumulate_like_one_big_batch():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 4, size=(6, 5, 7))
    pred = rng.integers(0, 4, size=(6, 5, 7))
    whole, parts = ConfusionMatrix(4), ConfusionMatrix(4)
    whole.update(pred, target)
    for i in range(6):
        parts.update(pred[i], target[i])
    assert np.array_equal(whole.matrix, parts.matrix)
    assert whole.total == 6 * 5 * 7


def test_absent_class_is_nan_and_left_out_of_the_mean():
    # class 2 appears in neither target nor prediction
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]))
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert math.isnan(cm.iou[2]) and math.isnan(cm.dice[2])
    assert cm.mean_iou == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert cm.mean_dice() == pytest.approx(4 / 5)
    assert cm.summary(["bg", "a", "b"])["iou"]["b"] is None


def test_class_only_predicted_has_zero_iou_not_nan():
    cm = ConfusionMatrix(3)
    cm.update(np.array([2, 0]), np.array([0, 0]))
    assert cm.iou.tolist()[0] == pytest.approx(0.5)
    assert math.isnan(cm.iou[1])
    assert cm.iou[2] == 0.0
    assert cm.mean_iou == pytest.approx(0.25)


def test_ignore_index_pixels_are_not_counted():
    target = np.array([0, 1, 255, 255, 1])
    pred = np.array([0, 0, 1, 0, 1])
    cm = ConfusionMatrix(2, ignore_index=255)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[1, 0], [1, 1]]
    assert cm.pixel_accuracy == pytest.approx(2 / 3)


def test_out_of_range_class_is_an_input_error_naming_the_values():
    cm = ConfusionMatrix(2)
    with pytest.raises(InputError, match=r"target: class values \[5\]"):
        cm.update(np.array([0, 1]), np.array([0, 5]))
    with pytest.raises(InputError, match="pred"):
        cm.update(np.array([0, 1, 1]), np.array([0, 1]))


def test_empty_matrix_reports_nan():
    cm = ConfusionMatrix(2)
    assert math.isnan(cm.pixel_accuracy) and math.isnan(cm.mean_iou)
