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
