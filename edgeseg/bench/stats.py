"""Summary statistics of latency samples and a bootstrap comparison of two runs.

All latencies are in seconds. Percentiles use linear interpolation (NumPy's default), so they agree with
``numpy.percentile`` and ``scipy.stats.scoreatpercentile``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Summary:
    """Latency statistics of one stage (seconds) and its throughput (items per second at the median)."""

    count: int
    mean: float
    median: float
    p90: float
    p99: float
    min: float
    max: float
    std: float
    throughput: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(samples, items_per_sample: int = 1) -> Summary:
    """Statistics of latency ``samples`` (seconds). ``items_per_sample`` is the batch size for throughput."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise InputError(f"samples: got shape {x.shape}, expected a non-empty 1-D sequence of seconds")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise InputError("samples: expected finite, non-negative latencies in seconds")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return Summary(
        count=int(x.size), mean=float(x.mean()), median=float(p50), p90=float(p90), p99=float(p99),
        min=float(x.min()), max=float(x.max()), std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        throughput=float(items_per_sample / p50) if p50 > 0 else float("inf"),
    )


@dataclass(frozen=True)
class RatioInterval:
    """``statistic(b) / statistic(a)`` with a bootstrap confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float

    @property
    def significant(self) -> bool:
        """False when the interval includes 1 (no significant difference)."""
        return not (self.low <= 1.0 <= self.high)

    def verdict(self, lower_is_better: bool = True) -> str:
        if not self.significant:
            return "no significant difference"
        faster = self.ratio < 1.0 if lower_is_better else self.ratio > 1.0
        return "B better" if faster else "B worse"


def bootstrap_ratio(a, b, statistic=np.median, resamples: int = 2000, confidence: float = 0.95,
                    seed: int = 0) -> RatioInterval:
    """Percentile-bootstrap interval of ``statistic(b) / statistic(a)`` for two independent samples."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        raise InputError(f"samples: got {a.size} and {b.size} values, expected at least 2 in each run to compare")
    if not 0 < confidence < 1:
        raise InputError(f"confidence: got {confidence}, expected a value between 0 and 1")
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, size=(resamples, a.size))
    ib = rng.integers(0, b.size, size=(resamples, b.size))
    ratios = statistic(b[ib], axis=1) / statistic(a[ia], axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return RatioInterval(float(statistic(b) / statistic(a)), float(low), float(high), confidence)


# --- comparisons across blocks --------------------------------------------------------------------------------
# Iterations of one run are autocorrelated (load, clocks and caches drift over seconds), so a test across
# iterations is far too confident. A run is cut into blocks; each block's median is one observation, and the
# tests below work on log block medians: paired tests when A and B blocks alternated in one process (drift hits
# both blocks of a pair alike and cancels), two-sample tests for two separate runs (drift between the runs is not in
# the data: only the minimum effect, calibrated by A/A runs, guards against it). `bench compare` uses the rank
# tests (signed-rank, rank-sum); benchmarks/compare_calibration.py also reports the t-tests (paired, Welch).

DEFAULT_BLOCKS = 10


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t distribution (``scipy.stats.t.ppf(p, df)``), for real ``df > 0``; NumPy only."""
    if not 0 < p < 1 or not df > 0:
        raise InputError(f"t quantile: got p={p}, df={df}, expected 0 < p < 1 and df > 0")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):  # bisection: 2**-200 of the bracket is far below float precision
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for t >= 0: 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2)."""
    return 1.0 - 0.5 * _incomplete_beta(df / (df + t * t), df / 2, 0.5)


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz)."""
    import math

    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below this point: use the symmetry
        return 1.0 - _incomplete_beta(1.0 - x, b, a)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return front * h


def split_blocks(samples, sizes=None, blocks: int = DEFAULT_BLOCKS) -> list[np.ndarray]:
    """``samples`` cut into blocks of the given ``sizes``; without sizes, into ``blocks`` consecutive chunks."""
    x = np.asarray(samples, dtype=np.float64)
    if sizes is None:
        if x.size < 2 * blocks:
            blocks = max(1, x.size // 2)
        return [chunk for chunk in np.array_split(x, blocks) if chunk.size]
    sizes = [int(s) for s in sizes]
    if sum(sizes) != x.size or any(s < 1 for s in sizes):
        raise InputError(f"blocks: sizes {sizes} sum to {sum(sizes)}, expected positive sizes summing to the "
                         f"{x.size} samples")
    return np.split(x, np.cumsum(sizes)[:-1])


def block_medians(samples, sizes=None, blocks: int = DEFAULT_BLOCKS) -> np.ndarray:
    return np.array([np.median(b) for b in split_blocks(samples, sizes, blocks)])


@dataclass(frozen=True)
class BlockTest:
    """B / A from block medians: the ratio of geometric means, its interval, and the verdict with a floor.

    ``spread`` is the relative standard deviation of one block observation (paired: of one pair's B/A);
    ``min_effect`` is the smallest relative difference reported as real (the A/A noise floor).
    """

    ratio: float
    low: float
    high: float
    confidence: float
    blocks_a: int
    blocks_b: int
    paired: bool
    spread: float
    min_effect: float

    @property
    def significant(self) -> bool:
        return not (self.low <= 1.0 <= self.high)

    @property
    def verdict(self) -> str:
        if not self.significant:
            return "no significant difference"
        if abs(self.ratio - 1.0) < self.min_effect:
            return "within noise"
        return "B worse" if self.ratio > 1.0 else "B better"


def _check_blocks(med_a: np.ndarray, med_b: np.ndarray) -> None:
    if med_a.size < 2 or med_b.size < 2:
        raise InputError(f"blocks: got {med_a.size} and {med_b.size} blocks, expected at least 2 in each run "
                         "(record more iterations or --blocks)")
    if np.any(med_a <= 0) or np.any(med_b <= 0) or not (np.all(np.isfinite(med_a)) and np.all(np.isfinite(med_b))):
        raise InputError("blocks: expected positive, finite block medians (latencies in seconds)")


def _paired_log_ratios(med_a, med_b, confidence: float) -> np.ndarray:
    """``log(med_b) - log(med_a)`` per block pair, after checking both runs and the confidence."""
    a, b = np.asarray(med_a, np.float64), np.asarray(med_b, np.float64)
    _check_blocks(a, b)
    if a.size != b.size:
        raise InputError(f"blocks: a paired test needs as many A blocks as B blocks, got {a.size} and {b.size}")
    _check_confidence(confidence)
    return np.log(b) - np.log(a)


def paired_block_test(med_a, med_b, confidence: float = 0.95, min_effect: float = 0.0) -> BlockTest:
    """Paired t-test on ``log(med_b) - log(med_a)``: block i of A ran next to block i of B (interleaved)."""
    d = _paired_log_ratios(med_a, med_b, confidence)
    sd = float(d.std(ddof=1))
    half = t_quantile(1 - (1 - confidence) / 2, d.size - 1) * sd / np.sqrt(d.size)
    mean = float(d.mean())
    return BlockTest(float(np.exp(mean)), float(np.exp(mean - half)), float(np.exp(mean + half)), confidence,
                     d.size, d.size, True, float(np.expm1(sd)), min_effect)


def welch_block_test(med_a, med_b, confidence: float = 0.95, min_effect: float = 0.0) -> BlockTest:
    """Welch's t-test on log block medians of two separate runs."""
    a, b = np.log(np.asarray(med_a, np.float64)), np.log(np.asarray(med_b, np.float64))
    _check_blocks(np.exp(a), np.exp(b))
    _check_confidence(confidence)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    mean = float(b.mean() - a.mean())
    if se == 0.0:
        half = 0.0
    else:
        df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
        half = t_quantile(1 - (1 - confidence) / 2, df) * se
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return BlockTest(float(np.exp(mean)), float(np.exp(mean - half)), float(np.exp(mean + half)), confidence,
                     a.size, b.size, False, float(np.expm1(pooled)), min_effect)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise InputError(f"confidence: got {confidence}, expected a value between 0 and 1")


# Rank-based versions: a block hit by a long stall (the process descheduled for 100 ms on a loaded machine) is an
# outlier among block medians that inflates a t-test's variance; ranks bound its weight. The estimate is the
# Hodges-Lehmann shift of log block medians and the interval inverts the exact signed-rank (paired) or rank-sum
# (separate runs) test, as in Hollander & Wolfe, Nonparametric Statistical Methods, ch. 3-4.

def _tail_count(null_counts: np.ndarray, alpha_half: float) -> int:
    """Largest c with P(statistic <= c) <= alpha_half under the null (-1 if none)."""
    cdf = np.cumsum(null_counts) / null_counts.sum()
    return int(np.searchsorted(cdf, alpha_half * (1 + 1e-12), side="right")) - 1


def signed_rank_null(n: int) -> np.ndarray:
    """Ways to reach each Wilcoxon signed-rank sum 0 .. n(n+1)/2 with n untied ranks."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts


def rank_sum_null(m: int, n: int) -> np.ndarray:
    """Ways to reach each Mann-Whitney U = 0 .. m*n for samples of m and n untied values."""
    table = [[None] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        for j in range(n + 1):
            if i == 0 or j == 0:
                table[i][j] = np.ones(1)
                continue
            counts = np.zeros(i * j + 1)
            left, down = table[i - 1][j], table[i][j - 1]  # last value from A (beats j of B) or from B
            counts[j:j + left.size] += left
            counts[:down.size] += down
            table[i][j] = counts
    return table[m][n]


def _interval(values: np.ndarray, null_counts: np.ndarray, confidence: float) -> tuple[float, float]:
    c = _tail_count(null_counts, (1 - confidence) / 2)
    if c < 0:  # too few blocks for this confidence: no finite interval
        return -np.inf, np.inf
    return float(values[c]), float(values[values.size - 1 - c])


def signed_rank_block_test(med_a, med_b, confidence: float = 0.95, min_effect: float = 0.0) -> BlockTest:
    """Paired (interleaved) blocks: Hodges-Lehmann B/A of log block medians and the signed-rank interval."""
    d = _paired_log_ratios(med_a, med_b, confidence)
    i, j = np.triu_indices(d.size)
    walsh = np.sort((d[i] + d[j]) / 2)
    low, high = _interval(walsh, signed_rank_null(d.size), confidence)
    mad = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    return BlockTest(float(np.exp(np.median(walsh))), float(np.exp(low)), float(np.exp(high)), confidence,
                     d.size, d.size, True, float(np.expm1(mad)), min_effect)


def rank_sum_block_test(med_a, med_b, confidence: float = 0.95, min_effect: float = 0.0) -> BlockTest:
    """Blocks of two separate runs: Hodges-Lehmann shift of log block medians and the rank-sum interval."""
    a, b = np.log(np.asarray(med_a, np.float64)), np.log(np.asarray(med_b, np.float64))
    _check_blocks(np.exp(a), np.exp(b))
    _check_confidence(confidence)
    diffs = np.sort((b[None, :] - a[:, None]).ravel())
    low, high = _interval(diffs, rank_sum_null(a.size, b.size), confidence)
    mad = 1.4826 * float(np.median(np.concatenate([np.abs(a - np.median(a)), np.abs(b - np.median(b))])))
    return BlockTest(float(np.exp(np.median(diffs))), float(np.exp(low)), float(np.exp(high)), confidence,
                     a.size, b.size, False, float(np.expm1(mad)), min_effect)
