"""The fast guided filter against a literal NumPy guided filter, and its edges against bilinear upsampling."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.metrics import boundary_f_score
from edgeseg.refine import GuidedUpsampler, bilinear_upsample

cv2 = pytest.importorskip("cv2")


def _box(x, r):
    """Literal mean over the (2r+1)^2 window, edges mirrored like OpenCV's BORDER_REFLECT (numpy 'symmetric')."""
    p = np.pad(x, r, mode="symmetric")
    h, w = x.shape
    return sum(p[dy:dy + h, dx:dx + w] for dy in range(2 * r + 1) for dx in range(2 * r + 1)) / (2 * r + 1) ** 2


def _guided_coefficients(i_low, p, r, eps):
    mean_i, mean_p = _box(i_low, r), _box(p, r)
    a = (_box(i_low * p, r) - mean_i * mean_p) / (_box(i_low * i_low, r) - mean_i ** 2 + eps)
    b = mean_p - a * mean_i
    return _box(a, r), _box(b, r)


def test_same_size_is_the_guided_filter_of_he_et_al():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    p = rng.random((1, 20, 24)).astype(np.float32)
    a, b = _guided_coefficients(gray / 255.0, p[0].astype(np.float64), 2, 1e-2)
    expected = np.clip(a * gray / 255.0 + b, 0, 1)
    out = GuidedUpsampler(radius=2, eps=1e-2)(gray, p)
    assert out.shape == (1, 20, 24) and out.dtype == np.float32
    assert np.abs(out[0] - expected).max() < 1e-4


def test_upsampling_applies_low_resolution_coefficients_to_the_full_resolution_guide():
    rng = np.random.default_rng(1)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (40, 48), dtype=np.uint8), (3, 3), 0)
    p = rng.random((1, 20, 24)).astype(np.float32)
    low = cv2.resize(cv2.pyrDown(gray), (24, 20), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    a, b = _guided_coefficients(low / 255.0, p[0].astype(np.float64), 1, 1e-3)
    big_a = cv2.resize(a.astype(np.float32), (48, 40), interpolation=cv2.INTER_LINEAR)
    big_b = cv2.resize(b.astype(np.float32), (48, 40), interpolation=cv2.INTER_LINEAR)
    expected = np.clip(big_a * (gray / 255.0) + big_b, 0, 1)
    out = GuidedUpsampler(radius=1, eps=1e-3)(gray, p)
    assert np.abs(out[0] - expected).max() < 1e-4


def test_subsample_computes_the_coefficients_on_area_shrunk_inputs_with_a_scaled_radius():
    rng = np.random.default_rng(5)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (60, 84), dtype=np.uint8), (3, 3), 0)
    p = rng.random((1, 30, 42)).astype(np.float32)
    low = rng.integers(0, 256, (30, 42), dtype=np.uint8)  # any low guide the caller passes is used as given
    low_s = cv2.resize(low.astype(np.float32), (21, 15), interpolation=cv2.INTER_AREA).astype(np.float64)
    p_s = cv2.resize(p[0], (21, 15), interpolation=cv2.INTER_AREA).astype(np.float64)
    a, b = _guided_coefficients(low_s / 255.0, p_s, 1, 1e-3)  # radius 2 / subsample 2
    big_a = cv2.resize(a.astype(np.float32), (84, 60), interpolation=cv2.INTER_LINEAR)
    big_b = cv2.resize(b.astype(np.float32), (84, 60), interpolation=cv2.INTER_LINEAR)
    expected = np.clip(big_a * (gray / 255.0) + big_b, 0, 1)
    out = GuidedUpsampler(radius=2, eps=1e-3, subsample=2)(gray, p, gray=gray, low=low)
    assert np.abs(out[0] - expected).max() < 1e-4
    with pytest.raises(InputError, match="subsample"):
        GuidedUpsampler(subsample=0)


def test_a_uint8_low_guide_and_kept_buffers_give_the_same_result_across_sizes():
    rng = np.random.default_rng(4)
    up = GuidedUpsampler(radius=2, eps=1e-3)
    for (h, w), (height, width) in [((12, 16), (30, 40)), ((20, 24), (40, 48)), ((12, 16), (30, 40))]:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        p = rng.random((2, h, w)).astype(np.float32)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        low = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
        fresh = GuidedUpsampler(radius=2, eps=1e-3)(frame, p, gray=gray, low=low.astype(np.float32))
        assert np.array_equal(up(frame, p, gray=gray, low=low), fresh)


def test_class_planes_that_sum_to_one_still_do():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    logits = rng.normal(size=(3, 16, 20)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(0)
    out = GuidedUpsampler(radius=2, eps=1e-3, clip=False)(frame, probs)
    assert out.shape == (3, 32, 40)
    assert np.abs(out.sum(0) - 1).max() < 1e-4
    assert out.min() < 0  # overshoot at this noise; clip=True (the default) clamps at 0 and renormalises
    clipped = GuidedUpsampler(radius=2, eps=1e-3)(frame, probs)
    assert clipped.min() >= 0 and np.abs(clipped.sum(0) - 1).max() < 1e-5
    kept = out.min(axis=0) >= 0  # pixels without overshoot are left as they were
    assert np.abs(clipped[:, kept] - out[:, kept]).max() < 1e-5


@pytest.mark.parametrize("subsample", [1, 2])  # 2: what refine="guided" runs
def test_guided_edges_follow_the_frame_better_than_bilinear(subsample):
    yy, xx = np.mgrid[:160, :200]
    truth = ((yy - 80) ** 2 / 50 ** 2 + (xx - 95) ** 2 / 70 ** 2 < 1).astype(np.uint8)
    rng = np.random.default_rng(3)
    frame = np.where(truth[..., None] == 1, 190, 60).astype(np.uint8) + rng.integers(0, 8, (160, 200, 3), np.uint8)
    low = cv2.resize(truth.astype(np.float32), (50, 40), interpolation=cv2.INTER_AREA)[None]  # a soft 4x mask
    bilinear = bilinear_upsample(low, (160, 200))[0]
    guided = GuidedUpsampler(radius=2, eps=1e-3, subsample=subsample)(frame, low)[0]
    f_bilinear = boundary_f_score((bilinear > 0.5).astype(np.uint8), truth, tolerance=0)
    f_guided = boundary_f_score((guided > 0.5).astype(np.uint8), truth, tolerance=0)
    assert f_guided > f_bilinear + 0.1
    assert np.abs(guided - truth).mean() < 0.5 * np.abs(bilinear - truth).mean()


def _blend_weight(planes, m):
    """Literal ``clip(1 - (largest - second largest) / m, 0, 1)``; ``|2p - 1|`` for one plane."""
    if planes.shape[0] == 1:
        margin = np.abs(2 * planes[0] - 1)
    else:
        top = np.sort(planes, axis=0)
        margin = top[-1] - top[-2]
    return np.clip(1 - margin / m, 0, 1)


@pytest.mark.parametrize("classes", [1, 3])
def test_blend_keeps_the_low_resolution_probabilities_where_the_model_is_confident(classes):
    rng = np.random.default_rng(6)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (40, 48), dtype=np.uint8), (3, 3), 0)
    if classes == 1:
        p = rng.random((1, 20, 24)).astype(np.float32)
    else:
        logits = 2 * rng.normal(size=(3, 20, 24))
        p = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    low = cv2.resize(cv2.pyrDown(gray), (24, 20), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    m = 0.7
    w = _blend_weight(p.astype(np.float64), m)
    assert 0 < (w == 0).mean() < 1 and (w > 0.5).any()  # both confident and unsure pixels in this input
    expected = np.empty((classes, 40, 48))
    for k in range(classes):
        a, b = _guided_coefficients(low / 255.0, p[k].astype(np.float64), 1, 1e-3)
        a, b = w * a, w * b + (1 - w) * p[k]                    # A' = w A, B' = w B + (1 - w) p
        big_a = cv2.resize(a.astype(np.float32), (48, 40), interpolation=cv2.INTER_LINEAR)
        big_b = cv2.resize(b.astype(np.float32), (48, 40), interpolation=cv2.INTER_LINEAR)
        expected[k] = big_a * (gray / 255.0) + big_b
    out = GuidedUpsampler(radius=1, eps=1e-3, blend=m, clip=False)(gray, p)
    assert np.abs(out - expected).max() < 1e-4
    if classes == 3:
        assert np.abs(out.sum(0) - 1).max() < 1e-4  # one weight for every plane: the planes still sum to one


def test_blend_weight_zero_everywhere_is_bilinear_upsampling():
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # pure texture: the plain filter would follow it
    # margin >= 0.8 everywhere, constant over 2x2 blocks so the subsample-2 coefficient grid sees the same values
    p_sub = np.where(rng.random((1, 6, 8)) < 0.5, 0.05, 0.9).astype(np.float32)
    p = np.repeat(np.repeat(p_sub, 2, axis=1), 2, axis=2)
    out = GuidedUpsampler(radius=2, eps=1e-3, blend=0.8)(frame, p)
    assert np.abs(out - bilinear_upsample(p, (48, 64))).max() < 1e-5
    out = GuidedUpsampler(radius=2, eps=1e-3, subsample=2, blend=0.8)(frame, p)
    assert np.abs(out - bilinear_upsample(p_sub, (48, 64))).max() < 1e-5  # from the coefficients' grid
    plain = GuidedUpsampler(radius=2, eps=1e-3)(frame, p)
    assert np.abs(plain - bilinear_upsample(p, (48, 64))).max() > 0.1


def test_blend_keeps_confident_labels_where_the_frame_has_dark_structure_and_still_sharpens_the_edge():
    """A soft 4x ellipse mask (0.05 outside, 0.95 inside) on a bright ellipse with a dark band just inside its edge
    (as the fluid inside a skull): the plain filter labels the band background, following the frame where the
    model was sure; the blend keeps the band and its edge is still sharper than bilinear."""
    yy, xx = np.mgrid[:160, :200]
    d = (yy - 80) ** 2 / 50 ** 2 + (xx - 95) ** 2 / 70 ** 2
    truth = (d < 1).astype(np.uint8)
    band = (d > 0.7) & (d < 0.8)
    frame = np.where((truth == 1) & ~band, 190, 60).astype(np.uint8)
    low = cv2.resize(truth.astype(np.float32), (50, 40), interpolation=cv2.INTER_AREA)
    low = (0.05 + 0.9 * low)[None].astype(np.float32)
    bilinear = bilinear_upsample(low, (160, 200))[0]
    plain = GuidedUpsampler(radius=2, eps=1e-4, subsample=2)(frame, low)[0]
    blended = GuidedUpsampler(radius=2, eps=1e-4, subsample=2, blend=1.0)(frame, low)[0]
    assert (bilinear[band] > 0.5).all()
    assert (plain[band] <= 0.5).mean() > 0.5
    assert (blended[band] > 0.5).all()
    f_bilinear = boundary_f_score((bilinear > 0.5).astype(np.uint8), truth, tolerance=0)
    f_blended = boundary_f_score((blended > 0.5).astype(np.uint8), truth, tolerance=0)
    assert f_blended > f_bilinear + 0.1


def test_bad_arguments_are_named():
    with pytest.raises(InputError, match="radius"):
        GuidedUpsampler(radius=0)
    with pytest.raises(InputError, match="eps"):
        GuidedUpsampler(eps=0)
    for bad in (0, -0.5, 2.5, True, "0.5"):
        with pytest.raises(InputError, match="blend"):
            GuidedUpsampler(blend=bad)
    with pytest.raises(InputError, match="planes"):
        GuidedUpsampler()(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32))
    with pytest.raises(InputError, match="frame"):
        GuidedUpsampler()(np.zeros((8, 8), np.float32), np.zeros((1, 4, 4), np.float32))


def test_refine_guided_uses_the_setting_chosen_on_hc18_training_images():
    """``refine="guided"`` is the radius/eps/blend benchmarks/guided_tuning.py recorded as its choice."""
    import json
    from pathlib import Path

    from edgeseg.video.maskfilter import MaskFilter

    tuning = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/video_quality/guided_tuning.json")
                        .read_text(encoding="utf-8"))
    up = MaskFilter("none", "guided").upsampler
    assert (up.radius, up.eps, up.blend, up.subsample) == (tuning["chosen"]["radius"], tuning["chosen"]["eps"],
                                                           tuning["chosen"]["blend"], tuning["subsample"])
