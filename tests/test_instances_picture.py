"""benchmarks/instances_compare.py draw_side_by_side: one titled panel per method from hand-made masks."""

import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import InputError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from instances_compare import draw_side_by_side  # noqa: E402


def _masks() -> np.ndarray:
    masks = np.zeros((2, 100, 200), bool)
    masks[0, 20:60, 10:70] = True
    masks[1, 30:90, 120:190] = True
    return masks


def test_one_panel_per_method_with_fills_in_each():
    image = np.full((100, 200), 40, np.uint8)
    gt = _masks()
    panels = [("ground truth", gt, None), ("a", gt[:1], np.array([0.9])), ("b", gt, np.array([0.8, 0.7])),
              ("c", np.zeros((0, 100, 200), bool), np.zeros(0))]
    out = draw_side_by_side(image, panels, panel=200)
    # 200 x 100 views (long side 200: scale 1), a 28-pixel title bar above each, 4-pixel white gaps between
    assert out.shape == (28 + 100, 4 * 200 + 3 * 4, 3) and out.dtype == np.uint8
    for k, (_, masks, _) in enumerate(panels):
        x0 = k * 204
        view = out[28:, x0:x0 + 200].astype(int)
        assert (out[:28, x0:x0 + 200] < 128).any(), f"panel {k}: no title text"
        tinted = np.abs(view - 40).sum(-1) > 20  # fill, contour or text changed the flat gray
        assert tinted[40:56, 20:60].all() == (len(masks) > 0), f"panel {k}: inside of mask 0"
        assert not tinted[70:, 80:110].any(), f"panel {k}: tint outside every mask"
    # the same head has the same colour in every panel that has it, and it is a colour, not the gray base
    gt_pixel = out[28 + 30, 20]
    assert len(set(gt_pixel.tolist())) > 1
    for k in (1, 2):
        assert np.array_equal(out[28 + 30, k * 204 + 20], gt_pixel), f"panel {k}"
    assert not np.array_equal(out[28 + 60, 150], gt_pixel)  # the other head has another colour

def test_mask_size_mismatch_is_a_clear_error():
    with pytest.raises(InputError, match=r"panels\['x'\].masks: got shape \(1, 10, 10\), expected \(K, 100, 200\)"):
        draw_side_by_side(np.zeros((100, 200), np.uint8), [("x", np.zeros((1, 10, 10), bool), None)])
    with pytest.raises(InputError, match="2 scores for 1 masks"):
        draw_side_by_side(np.zeros((100, 200), np.uint8), [("x", _masks()[:1], np.array([0.5, 0.4]))])
