"""Video and boundary quality metrics against literal NumPy computations on small hand-made sequences."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.metrics import (TemporalMetrics, boundary_f_score, flicker_counts, mask_boundary, trimap_iou,
                             warp_labels)

cv2 = pytest.importorskip("cv2")


def _np_boundary(m):
    """Literal: a mask pixel with any of its 8 neighbours outside the mask (edges replicate)."""
    p = np.pad(m, 1, mode="edge")
    h, w = m.shape
    inside_all = np.ones_like(m)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            inside_all &= p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    return m & ~inside_all


def _np_dilate(m, r):
    h, w = m.shape
    out = np.zeros_like(m)
    ys, xs = np.nonzero(m)
    for y, x in zip(ys, xs):
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                if dy * dy + dx * dx <= r * r and 0 <= y + dy < h and 0 <= x + dx < w:
                    out[y + dy, x + dx] = True
    return out


def test_flicker_counts_changed_labels_only_where_the_image_is_static():
    rng = np.random.default_rng(0)
    g0 = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    g1 = g0.copy()
    g1[:2] = np.clip(g0[:2].astype(int) + 50, 0, 255)  # rows 0-1 changed in the image (unless clipped at 255)
    l0 = rng.integers(0, 2, (6, 7), dtype=np.uint8)
    l1 = rng.integers(0, 2, (6, 7), dtype=np.uint8)
    static = np.abs(g1.astype(int) - g0.astype(int)) < 8
    assert flicker_counts(l1, l0, g1, g0, 8) == ((static & (l1 != l0)).sum(), static.sum())

    tm = TemporalMetrics(threshold=8, flow=False)
    frames, labels = [g0, g1, g1], [l0, l1, l0]
    for g, lab in zip(frames, labels):
        tm.update(g, lab)
    changed = (static & (l1 != l0)).sum() + (l1 != l0).sum()  # the third frame repeats the image: all static
    assert tm.flicker == pytest.approx(changed / (static.sum() + g0.size))
    assert tm.summary()["temporal_consistency"] is None  # flow off


def test_warp_labels_with_an_integer_flow_is_a_shift_and_marks_sources_outside():
    prev = np.arange(30, dtype=np.uint8).reshape(5, 6)
    flow = np.zeros((5, 6, 2), np.float32)
    flow[..., 0] = -2  # x + f(x) = x - 2: the content moved 2 px right between t-1 and t
    warped, valid = warp_labels(prev, flow)
    assert (warped[:, 2:] == prev[:, :-2]).all()
    assert valid[:, 2:].all() and not valid[:, :2].any()


def test_temporal_consistency_and_lag_pool_intersections_over_the_video():
    h, w = 12, 16
    shift = 2

    def flow_fn(gray, prev):
        flow = np.zeros((h, w, 2), np.float32)
        flow[2:10, :, 0] = -shift  # rows 2-9 moved right by 2 px; the rest is still
        return flow

    rng = np.random.default_rng(1)
    gray = [rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in range(3)]
    labels = [np.zeros((h, w), np.uint8) for _ in range(3)]
    labels[0][3:8, 3:8] = 1
    labels[1][3:8, 5:10] = 1  # followed the motion
    labels[2][3:8, 5:10] = 1  # stuck: lags behind
    labels[1][10:12, 0:3] = 2  # a second class that appears in the still rows and stays
    labels[2][10:12, 0:3] = 2
    tm = TemporalMetrics(flow_fn=flow_fn, motion=1.0)
    for g, lab in zip(gray, labels):
        tm.update(g, lab)

    # literal: W_t(y, x) = L_t-1(y, x - 2) in rows 2-9 (valid for x >= 2), L_t-1 elsewhere
    sums = {}
    for t in (1, 2):
        prev, cur = labels[t - 1], labels[t]
        warped = prev.copy()
        valid = np.ones((h, w), bool)
        warped[2:10, 2:] = prev[2:10, :-2]
        warped[2:10, :2] = 0
        valid[2:10, :2] = False
        moving = np.zeros((h, w), bool)
        moving[2:10] = True
        moving &= valid
        for c in (1, 2):
            a, b = cur == c, warped == c
            if not (a | b).any():
                continue
            s = sums.setdefault(c, np.zeros(4))
            s += [(a & b & valid).sum(), ((a | b) & valid).sum(), (a & b & moving).sum(), ((a | b) & moving).sum()]
    tc = np.mean([s[0] / s[1] for s in sums.values() if s[1]])
    lag = np.mean([s[2] / s[3] for s in sums.values() if s[3]])
    assert tm.temporal_consistency == pytest.approx(tc)
    assert tm.lag_iou == pytest.approx(lag)
    assert 0 < tm.lag_iou < 1.0 and 0 < tm.temporal_consistency < 1.0  # the stale third mask costs both


def test_dis_flow_scores_a_mask_that_follows_the_motion_above_a_stale_one():
    rng = np.random.default_rng(2)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (120, 200), dtype=np.uint8), (5, 5), 0)
    follow, stale = TemporalMetrics(), TemporalMetrics()
    for t in range(4):
        frame = np.roll(texture, 3 * t, axis=1)
        mask = np.zeros((120, 200), np.uint8)
        mask[30:90, 40 + 3 * t:100 + 3 * t] = 1
        follow.update(frame, mask)
        stuck = np.zeros_like(mask)
        stuck[30:90, 40:100] = 1
        stale.update(frame, stuck)
    assert follow.temporal_consistency > 0.9
    assert follow.lag_iou > 0.85
    assert stale.lag_iou < follow.lag_iou - 0.05


def test_boundary_f_score_against_literal_boundaries_and_dilations():
    target = np.zeros((20, 24), np.uint8)
    target[5:15, 6:16] = 1
    pred = np.zeros_like(target)
    pred[6:16, 8:18] = 1  # one row down, two columns right
    bp, bg = _np_boundary(pred.astype(bool)), _np_boundary(target.astype(bool))
    assert (mask_boundary(pred.astype(bool)) == bp).all()
    for d in (0, 1, 2):
        precision = (bp & _np_dilate(bg, d)).sum() / bp.sum()
        recall = (bg & _np_dilate(bp, d)).sum() / bg.sum()
        f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        assert boundary_f_score(pred, target, tolerance=d) == pytest.approx(f)
    assert boundary_f_score(pred, target, tolerance=0) < boundary_f_score(pred, target, tolerance=3) == 1.0
    assert boundary_f_score(target, target, tolerance=0) == 1.0
    assert boundary_f_score(np.zeros_like(target), target) == 0.0
    assert np.isnan(boundary_f_score(np.zeros_like(target), np.zeros_like(target)))


def test_trimap_iou_counts_only_the_band_around_the_true_boundary():
    target = np.zeros((20, 24), np.uint8)
    target[5:15, 6:16] = 1
    pred = target.copy()
    pred[6:16, 6:16] = 1
    pred[5, 6:16] = 0
    pred[0, 0] = 1  # far from the boundary: outside the band, not counted
    band = _np_dilate(_np_boundary(target.astype(bool)), 2)
    a, b = (pred == 1) & band, (target == 1) & band
    assert trimap_iou(pred, target, width=2) == pytest.approx((a & b).sum() / (a | b).sum())


def test_shape_mismatches_are_named():
    with pytest.raises(InputError, match="pred"):
        boundary_f_score(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="labels"):
        TemporalMetrics().update(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
