"""Compare two benchmark runs stage by stage: ratio of medians (B / A) with a bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .result import BenchResult
from .stats import RatioInterval, bootstrap_ratio


@dataclass(frozen=True)
class StageComparison:
    stage: str
    median_a: float
    median_b: float
    interval: RatioInterval

    @property
    def verdict(self) -> str:
        return self.interval.verdict(lower_is_better=True)


def compare(a: BenchResult, b: BenchResult, resamples: int = 2000, confidence: float = 0.95,
            seed: int = 0) -> list[StageComparison]:
    """Every stage both runs measured, as B / A latency ratios (below 1: B is faster)."""
    rows = []
    for stage in [s for s in a.samples if s in b.samples and a.samples[s] and b.samples[s]]:
        xa, xb = np.asarray(a.samples[stage]), np.asarray(b.samples[stage])
        interval = bootstrap_ratio(xa, xb, resamples=resamples, confidence=confidence, seed=seed)
        rows.append(StageComparison(stage, float(np.median(xa)), float(np.median(xb)), interval))
    return rows


def comparison_table(a: BenchResult, b: BenchResult, rows: list[StageComparison]) -> str:
    conf = int(round(rows[0].interval.confidence * 100)) if rows else 95
    lines = [
        f"A: {a.model} / {a.backend} / {a.input_size[0]}x{a.input_size[1]} ({a.created})",
        f"B: {b.model} / {b.backend} / {b.input_size[0]}x{b.input_size[1]} ({b.created})",
        f"{'stage':<13}{'A median ms':>12}{'B median ms':>12}{'B/A':>8}   {conf}% interval   verdict",
    ]
    for r in rows:
        lines.append(
            f"{r.stage:<13}{r.median_a * 1e3:12.3f}{r.median_b * 1e3:12.3f}{r.interval.ratio:8.3f}"
            f"   [{r.interval.low:.3f}, {r.interval.high:.3f}]   {r.verdict}"
        )
    return "\n".join(lines)
