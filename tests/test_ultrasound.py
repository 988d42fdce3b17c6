"""Head circumference: Ramanujan's perimeter, ellipse fitting, and agreement with HC18's reference values."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edgeseg.apps.ultrasound import (
    Ellipse,
    ellipse_perimeter,
    fit_head_ellipse,
    hc_errors,
    head_circumference_mm,
    read_hc_csv,
)
from edgeseg.data import MaskSpec, read_mask
from edgeseg.errors import InputError


def test_ramanujan_perimeter_of_circle_and_known_ellipse():
    assert ellipse_perimeter(3.0, 3.0) == pytest.approx(2 * math.pi * 3.0, rel=1e-12)
    # semi-axes 2 and 1: the complete elliptic integral gives 9.688448220547675...
    assert ellipse_perimeter(2.0, 1.0) == pytest.approx(9.688448220547675, rel=1e-5)
    assert ellipse_perimeter(1.0, 0.0) == pytest.approx(4.0, rel=5e-3)  # degenerate (a segment, 4a): worst case 0.4%


def test_fit_recovers_a_drawn_rotated_ellipse_and_ignores_small_blobs():
    mask = np.zeros((540, 800), np.uint8)
    cv2.ellipse(mask, (410, 260), (230, 150), 30, 0, 360, 1, -1)  # semi-axes 230, 150
    cv2.circle(mask, (40, 40), 10, 1, -1)                          # a speck: not the head
    ellipse = fit_head_ellipse(mask)
    assert ellipse.center == pytest.approx((410, 260), abs=1.0)
    assert sorted(ellipse.axes) == pytest.approx([300, 460], abs=2.0)
    expected = ellipse_perimeter(230, 150) * 0.1
    assert head_circumference_mm(mask, 0.1, outline_offset_px=0.0) == pytest.approx(expected, rel=0.005)


def test_ellipse_mask_fills_the_fitted_ellipse():
    drawn = np.zeros((300, 400), np.uint8)
    cv2.ellipse(drawn, (200, 150), (120, 80), 20, 0, 360, 1, -1)
    ellipse = fit_head_ellipse(drawn)
    filled = ellipse.mask(drawn.shape)
    assert filled.shape == (300, 400) and filled.dtype == bool
    assert filled.sum() == pytest.approx(math.pi * 120 * 80, rel=0.02)
    dice = 2 * (filled & (drawn > 0)).sum() / (filled.sum() + (drawn > 0).sum())
    assert dice > 0.99
    assert filled[150, 200] and not filled[150, 5] and not filled[5, 200]
    cut = Ellipse((390.0, 150.0), (200.0, 100.0), 0.0).mask((300, 400))  # runs past the right edge: clipped
    assert cut[150, 399] and not cut[150, 285]
    # left half (pi a b / 2) plus the 9.5 px strip right of the centre, about 2 b wide
    assert cut.sum() == pytest.approx(math.pi * 100 * 50 / 2 + 9.5 * 100, rel=0.02)


def test_hc_from_real_ground_truth_masks_matches_the_csv(hc18_dir):
    reference = read_hc_csv(hc18_dir / "pixel_size_and_hc.csv")
    assert set(reference) == {p.name for p in (hc18_dir / "images").glob("*.png")}  # the CSV covers every image
    names = sorted(reference)[::20]  # every 20th file, across all trimesters
    masks = {n: read_mask(hc18_dir / "masks" / n, MaskSpec("binary")) for n in names}
    errors = np.array([row["error_mm"] for row in hc_errors(masks, reference).values()])
    assert np.abs(errors).mean() < 0.2  # HC18's masks run 0.94 px outside the outline: measured inside it
    assert np.abs(errors).max() < 0.6
    as_drawn = np.array([head_circumference_mm(m, reference[n].pixel_size_mm, outline_offset_px=0.0) - reference[n].hc_mm
                         for n, m in masks.items()])
    assert as_drawn.mean() > 0.4  # the contour as drawn is consistently too large


def test_bad_inputs_name_the_problem(tmp_path, hc18_dir):
    with pytest.raises(InputError, match="no foreground"):
        fit_head_ellipse(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match="expected \\(H, W\\)"):
        fit_head_ellipse(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InputError, match="pixel_size_mm"):
        head_circumference_mm(np.ones((10, 10), np.uint8), 0.0)
    with pytest.raises(InputError, match="not in the HC csv"):
        hc_errors({"nope.png": np.ones((10, 10), np.uint8)}, read_hc_csv(hc18_dir / "pixel_size_and_hc.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,pixel size(mm),head circumference (mm)\n000_HC.png,abc,44\n")
    with pytest.raises(InputError, match="line 2"):
        read_hc_csv(bad)


ASSET = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "hc18_fastseg.safetensors"


@pytest.mark.skipif(not ASSET.exists(), reason="the shipped HC18 model is not built yet")
def test_measure_command_reports_hc_close_to_the_reference(hc18_dir, capsys, tmp_path):
    pytest.importorskip("torch")
    from edgeseg.cli import main

    image = hc18_dir / "images" / "018_HC.png"  # a validation patient of the shipped model
    overlay, report, mask = tmp_path / "hc.png", tmp_path / "hc.json", tmp_path / "head.png"
    code = main(["measure", str(image), "--hc-csv", str(hc18_dir / "pixel_size_and_hc.csv"), "--overlay", str(overlay),
                 "--json", str(report), "--mask", str(mask)])
    out = capsys.readouterr().out
    assert code == 0, out
    error = float(re.search(r"error ([+-][0-9.]+) mm", out).group(1))
    assert abs(error) < 5.0
    assert re.search(r"HC [0-9.]+ mm \+- [0-9.]+", out)
    assert cv2.imread(str(overlay)).shape == (540, 800, 3)
    record = json.loads(report.read_text())["measurements"][0]
    low, high = record["interval_mm"]
    assert low < record["hc_mm"] < high and high - low < 20 and record["flags"] == []
    head = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
    assert head.shape == (540, 800) and set(np.unique(head)) == {0, 255}
    truth = cv2.imread(str(hc18_dir / "masks" / "018_HC.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert 2 * ((head > 0) & truth).sum() / ((head > 0).sum() + truth.sum()) > 0.95  # the fitted ellipse is the head
    capsys.readouterr()
    assert main(["measure", str(image), str(image), "--pixel-size", "0.1", "--mask", str(mask)]) == 2
    assert "--mask: got 2 images, expected exactly one" in capsys.readouterr().err


@pytest.mark.skipif(not ASSET.exists(), reason="the shipped HC18 model is not built yet")
def test_measure_command_flags_a_head_cut_by_the_image_edge(hc18_dir, capsys, tmp_path):
    pytest.importorskip("torch")
    from edgeseg.cli import main

    image = cv2.imread(str(hc18_dir / "images" / "018_HC.png"), cv2.IMREAD_GRAYSCALE)
    truth = cv2.imread(str(hc18_dir / "masks" / "018_HC.png"), cv2.IMREAD_GRAYSCALE) > 0
    x = int(np.nonzero(truth.any(0))[0].mean())  # cut through the middle of the head
    cut = tmp_path / "018_HC.png"
    cv2.imwrite(str(cut), np.ascontiguousarray(image[:, x:]))
    code = main(["measure", str(cut), "--hc-csv", str(hc18_dir / "pixel_size_and_hc.csv"), "--fail-on-flag",
                 "--no-tta"])
    out = capsys.readouterr().out
    assert code == 3 and "CHECK: " in out, out  # a half head is never reported as trusted


def _cut_head(center_x: int = 120) -> np.ndarray:
    """A filled ellipse (semi-axes 200, 150) whose left part lies beyond the image's left edge."""
    mask = np.zeros((540, 800), np.uint8)
    cv2.ellipse(mask, (center_x, 270), (200, 150), 10, 0, 360, 1, -1)
    return mask


def test_skull_only_fit_ignores_the_image_edge_of_a_cut_head():
    mask, truth = _cut_head(), ellipse_perimeter(200, 150) * 0.1
    all_points = fit_head_ellipse(mask, exclude_border=False).perimeter * 0.1
    skull = fit_head_ellipse(mask).perimeter * 0.1
    assert abs(all_points - truth) > 5.0   # the straight edge pulls the ellipse in
    assert skull == pytest.approx(truth, rel=0.01)
    whole = np.zeros_like(mask)
    cv2.ellipse(whole, (400, 270), (200, 150), 10, 0, 360, 1, -1)
    assert fit_head_ellipse(whole).perimeter == fit_head_ellipse(whole, exclude_border=False).perimeter


def test_distances_to_the_fitted_ellipse_are_small_on_its_own_outline():
    from edgeseg.apps.ultrasound import ellipse_distances

    mask = np.zeros((540, 800), np.uint8)
    cv2.ellipse(mask, (410, 260), (230, 150), 30, 0, 360, 1, -1)
    ellipse = fit_head_ellipse(mask)
    contour = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0].reshape(-1, 2)
    assert np.abs(ellipse_distances(ellipse, contour)).max() < 1.5  # pixel staircase only
    outside = np.array([[410 + 230 * np.cos(np.radians(30)) + 10 * np.cos(np.radians(30)),
                         260 + 230 * np.sin(np.radians(30)) + 10 * np.sin(np.radians(30))]])
    assert ellipse_distances(ellipse, outside)[0] == pytest.approx(10.0, abs=1.0)


def test_measurement_interval_and_flags():
    from edgeseg.apps.ultrasound import measure_head

    whole = np.zeros((540, 800), np.uint8)
    cv2.ellipse(whole, (400, 270), (200, 150), 10, 0, 360, 1, -1)
    truth = ellipse_perimeter(200, 150) * 0.1
    sharp = measure_head(whole, 0.1)  # a mask: the interval is the 1 mm floor plus the fit residual
    assert sharp.trusted and sharp.flags == ()
    assert sharp.interval_mm[0] < truth < sharp.interval_mm[1] and sharp.half_width_mm < 1.5
    blurred = measure_head(cv2.GaussianBlur(whole.astype(np.float32), (0, 0), 8), 0.1)  # a soft boundary
    assert blurred.boundary_width_mm > 5 and blurred.half_width_mm > sharp.half_width_mm
    assert blurred.interval_mm[0] < truth < blurred.interval_mm[1]
    cut = measure_head(_cut_head(), 0.1)
    assert "cut_by_border" in cut.flags and not cut.trusted
    assert cut.hc_mm == pytest.approx(truth, rel=0.01)
    assert "check: cut_by_border" in cut.describe()
    with pytest.raises(InputError, match="pixel_size_mm"):
        measure_head(whole, -1.0)
    with pytest.raises(InputError, match="no foreground"):
        measure_head(np.zeros((20, 20), np.float32), 0.1)
