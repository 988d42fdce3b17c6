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


# --- block statistics: against SciPy, and on samples with the variance structure of real runs -----------------
from edgeseg.bench.stats import (  # noqa: E402
    block_medians, paired_block_test, split_blocks, t_quantile, welch_block_test,
)


@pytest.mark.parametrize("df", [1, 2, 3, 4.5, 9, 17.3, 120])
def test_t_quantile_matches_scipy(df):
    for p in (0.025, 0.6, 0.95, 0.975, 0.995):
        assert t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9, abs=1e-9)


def test_block_medians_match_numpy_split():
    x = np.random.default_rng(1).lognormal(-5, 0.2, 203)
    assert np.array_equal(block_medians(x), [np.median(c) for c in np.array_split(x, 10)])
    sizes = [50, 53, 100]
    assert np.array_equal(block_medians(x, sizes), [np.median(x[:50]), np.median(x[50:103]), np.median(x[103:])])
    with pytest.raises(InputError, match="blocks"):
        split_blocks(x, [100, 100])


def test_paired_and_welch_intervals_match_scipy_t_tests():
    rng = np.random.default_rng(5)
    a = rng.lognormal(np.log(0.01), 0.04, 12)
    b = a * rng.lognormal(0.03, 0.02, 12)
    ref = sps.ttest_rel(np.log(b), np.log(a)).confidence_interval(0.95)
    ours = paired_block_test(a, b)
    assert (ours.low, ours.high) == pytest.approx((np.exp(ref.low), np.exp(ref.high)), rel=1e-9)
    assert ours.ratio == pytest.approx(np.exp(np.mean(np.log(b) - np.log(a))))
    ref = sps.ttest_ind(np.log(b[:7]), np.log(a), equal_var=False).confidence_interval(0.99)
    ours = welch_block_test(a, b[:7], confidence=0.99)
    assert (ours.low, ours.high) == pytest.approx((np.exp(ref.low), np.exp(ref.high)), rel=1e-9)


def test_verdict_needs_significance_and_an_effect_above_the_floor():
    a = np.full(10, 0.010) * np.linspace(0.99, 1.01, 10)
    small = paired_block_test(a, a * 1.01 * np.linspace(1.0, 1.001, 10), min_effect=0.02)
    assert small.significant and small.verdict == "within noise"
    big = paired_block_test(a, a * 1.05 * np.linspace(1.0, 1.001, 10), min_effect=0.02)
    assert big.verdict == "B worse"
    assert paired_block_test(a * 1.05, a, min_effect=0.02).verdict == "B better"


def _ar1(rng, n, phi, sigma):
    """log-latency noise with lag-1 correlation ``phi`` (slow load drift within a run)."""
    e = rng.normal(0, sigma * np.sqrt(1 - phi**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0, sigma)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def test_autocorrelated_runs_fool_the_iteration_bootstrap_but_not_the_block_tests():
    from edgeseg.bench.stats import rank_sum_block_test

    rng = np.random.default_rng(2026)
    naive = welch = ranks = 0
    runs = 100
    for i in range(runs):
        a = 0.010 * np.exp(_ar1(rng, 400, 0.9, 0.05))  # correlation time ~10 frames, blocks of 40
        b = 0.010 * np.exp(_ar1(rng, 400, 0.9, 0.05))
        naive += bootstrap_ratio(a, b, resamples=400, seed=i).significant
        ma, mb = block_medians(a, blocks=10), block_medians(b, blocks=10)
        welch += welch_block_test(ma, mb).significant
        ranks += rank_sum_block_test(ma, mb).significant
    # same process, so every "significant" is a false alarm: 5 % expected from a valid test
    assert naive / runs > 0.4
    assert welch / runs <= 0.1 and ranks / runs <= 0.1


def test_run_level_shifts_need_the_noise_floor_and_interleaving_cancels_drift():
    from edgeseg.bench.stats import rank_sum_block_test, signed_rank_block_test

    rng = np.random.default_rng(7)
    runs, blocks = 100, 20
    separate_t = separate_floor = paired_false = paired_hits = 0
    for _ in range(runs):
        # separate runs: each run sits at its own level (sd 2 %), blocks vary 3 % around it
        a = 0.01 * np.exp(rng.normal(0, 0.02) + rng.normal(0, 0.03, blocks))
        b = 0.01 * np.exp(rng.normal(0, 0.02) + rng.normal(0, 0.03, blocks))
        separate_t += welch_block_test(a, b).significant
        separate_floor += welch_block_test(a, b, min_effect=0.06).verdict in ("B worse", "B better")
        separate_floor += rank_sum_block_test(a, b, min_effect=0.06).verdict in ("B worse", "B better")
        # interleaved: a random-walk drift (10 % over the run) shared by the blocks of a pair, 2 % own noise
        drift = np.cumsum(rng.normal(0, 0.02, blocks))
        a = 0.01 * np.exp(drift + rng.normal(0, 0.02, blocks))
        same = 0.01 * np.exp(drift + rng.normal(0, 0.02, blocks))
        slower = 0.01 * np.exp(drift + np.log(1.05) + rng.normal(0, 0.02, blocks))
        for test in (paired_block_test, signed_rank_block_test):
            paired_false += test(a, same, min_effect=0.02).verdict in ("B worse", "B better")
            paired_hits += test(a, slower, min_effect=0.02).verdict == "B worse"
    assert separate_t / runs > 0.3  # the blocks do not see the run-level shift ...
    assert separate_floor / (2 * runs) <= 0.05  # ... the A/A floor does (t and rank test)
    assert paired_false / (2 * runs) <= 0.05
    assert paired_hits / (2 * runs) >= 0.9


from edgeseg.bench.stats import (  # noqa: E402
    rank_sum_block_test, rank_sum_null, signed_rank_block_test, signed_rank_null,
)


def test_rank_null_distributions_give_scipys_exact_p_values():
    rng = np.random.default_rng(3)
    d = rng.normal(0.01, 0.05, 11)
    t_plus = float(np.sum(np.argsort(np.argsort(np.abs(d)))[d > 0] + 1))
    counts = signed_rank_null(11)
    ours = 2 * min(counts[: int(t_plus) + 1].sum(), counts[int(t_plus):].sum()) / counts.sum()
    assert min(ours, 1.0) == pytest.approx(sps.wilcoxon(d, method="exact").pvalue, rel=1e-12)
    a, b = rng.normal(0, 1, 7), rng.normal(0.5, 1, 9)
    u = int(np.sum(b[None, :] > a[:, None]))  # pairs where B is larger
    counts = rank_sum_null(7, 9)
    ours = 2 * min(counts[: u + 1].sum(), counts[u:].sum()) / counts.sum()
    assert min(ours, 1.0) == pytest.approx(sps.mannwhitneyu(b, a, method="exact").pvalue, rel=1e-12)


@pytest.mark.parametrize("paired", [True, False])
def test_rank_intervals_are_exactly_the_shifts_scipy_does_not_reject(paired):
    rng = np.random.default_rng(11)
    a = np.exp(rng.normal(np.log(0.01), 0.05, 12))
    b = a * np.exp(rng.normal(0.03, 0.04, 12)) if paired else np.exp(rng.normal(np.log(0.0103), 0.05, 10))
    test = (signed_rank_block_test if paired else rank_sum_block_test)(a, b)
    la, lb = np.log(a), np.log(b)

    def p_value(shift):
        if paired:
            return sps.wilcoxon(lb - la - shift, method="exact").pvalue
        return sps.mannwhitneyu(lb - shift, la, method="exact").pvalue

    for bound in (np.log(test.low), np.log(test.high)):
        inside = bound + (1e-9 if bound == np.log(test.low) else -1e-9)
        outside = bound - (1e-9 if bound == np.log(test.low) else -1e-9)
        assert p_value(inside) > 0.05 >= p_value(outside)
    walsh = [(x + y) / 2 for i, x in enumerate(lb - la) for y in (lb - la)[i:]] if paired else \
        [y - x for x in la for y in lb]
    assert test.ratio == pytest.approx(np.exp(np.median(walsh)))  # Hodges-Lehmann


def test_stalled_blocks_cost_the_t_test_its_power_but_not_the_rank_test():
    rng = np.random.default_rng(4)
    runs, rank_hits, t_hits = 100, 0, 0
    for _ in range(runs):
        drift = np.cumsum(rng.normal(0, 0.01, 20))
        a = 0.001 * np.exp(drift + rng.normal(0, 0.03, 20))
        b = 0.001 * np.exp(drift + np.log(1.05) + rng.normal(0, 0.03, 20))
        stalled = rng.choice(20, 2, replace=False)  # the process was descheduled through two whole blocks
        b[stalled[0]] *= 20
        a[stalled[1]] *= 20
        rank_hits += signed_rank_block_test(a, b, min_effect=0.02).verdict == "B worse"
        t_hits += paired_block_test(a, b, min_effect=0.02).verdict == "B worse"
    assert rank_hits / runs >= 0.9
    assert t_hits / runs < 0.5
