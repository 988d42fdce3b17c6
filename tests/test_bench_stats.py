"""Benchmark statistics against NumPy/SciPy on known, seeded samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from edgeseg.bench.stats import bootstrap_ratio, summarize
from edgeseg.errors import InputError


def test_percentiles_match_scipy_on_lognormal_latencies():
    x = np.random.default_rng(7).lognormal(mean=-4, sigma=0.3, size=1001)
    s = summarize(x, items_per_sample=4)
    assert s.median == pytest.approx(sps.scoreatpercentile(x, 50), rel=1e-12)
    assert s.p90 == pytest.approx(sps.scoreatpercentile(x, 90), rel=1e-12)
    assert s.p99 == pytest.approx(sps.scoreatpercentile(x, 99), rel=1e-12)
    assert (s.min, s.max, s.count) == (x.min(), x.max(), 1001)
    assert s.std == pytest.approx(np.std(x, ddof=1))
    assert s.throughput == pytest.approx(4 / np.median(x))


def test_percentiles_of_a_hand_made_sample():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.median, s.p90, s.mean) == (3.0, 4.6, 3.0)


def test_bootstrap_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(3)
    a = rng.normal(10.0, 1.0, 300)
    b = rng.normal(12.0, 1.0, 300)
    ours = bootstrap_ratio(a, b, statistic=np.mean, resamples=4000, seed=1)
    ref = sps.bootstrap(
        (a, b), lambda x, y, axis=-1: np.mean(y, axis=axis) / np.mean(x, axis=axis),
        n_resamples=4000, method="percentile", random_state=1, confidence_level=0.95,
    ).confidence_interval
    assert ours.ratio == pytest.approx(b.mean() / a.mean())
    assert ours.low == pytest.approx(ref.low, abs=0.01)
    assert ours.high == pytest.approx(ref.high, abs=0.01)
    assert ours.significant and ours.verdict() == "B worse"


def test_same_distribution_is_no_significant_difference():
    rng = np.random.default_rng(11)
    a = rng.lognormal(-4, 0.2, 400)
    b = rng.lognormal(-4, 0.2, 400)
    result = bootstrap_ratio(a, b)
    assert result.low < 1.0 < result.high
    assert result.verdict() == "no significant difference"


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, float("nan")], [-1.0, 2.0]])
def test_bad_samples_are_rejected(bad):
    with pytest.raises(InputError, match="samples"):
        summarize(bad)
