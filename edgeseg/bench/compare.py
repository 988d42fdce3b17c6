"""Compare two benchmark runs stage by stage: B / A from block medians, a test across blocks, a noise floor.

Two results of one interleaved run (``bench compare --interleave``) are compared pair by pair (signed-rank test
on log block medians); two separate runs with the rank-sum test across their blocks. Either way a difference smaller
than ``min_effect`` (the A/A noise measured by ``benchmarks/compare_calibration.py``) is "within noise".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .result import BenchResult
from .stats import (DEFAULT_BLOCKS, BlockTest, block_medians, paired_block_test, rank_sum_block_test,
                    signed_rank_block_test, welch_block_test)

# Smallest B/A difference reported as real: the A/A noise on a shared 2-core Xeon (README, "Comparing runs").
MIN_EFFECT = {"interleaved": 0.02, "separate": 0.06}
# The tests across blocks: rank-based (a block stalled by the scheduler is one outlier, not a variance blow-up);
# the t-tests are the textbook alternative, kept for the calibration's comparison.
TESTS = {"interleaved": signed_rank_block_test, "separate": rank_sum_block_test}
T_TESTS = {"interleaved": paired_block_test, "separate": welch_block_test}


@dataclass(frozen=True)
class StageComparison:
    stage: str
    median_a: float
    median_b: float
    test: BlockTest

    @property
    def verdict(self) -> str:
        return self.test.verdict


def interleaved_pair(a: BenchResult, b: BenchResult) -> bool:
    """True when ``a`` and ``b`` are the two halves of one ``bench compare --interleave`` run."""
    ia, ib = a.config.get("interleave") or {}, b.config.get("interleave") or {}
    return bool(ia.get("id")) and ia.get("id") == ib.get("id") and ia.get("role") != ib.get("role")


def compare(a: BenchResult, b: BenchResult, confidence: float = 0.95, min_effect: float | None = None,
            blocks: int = DEFAULT_BLOCKS) -> list[StageComparison]:
    """Every stage both runs measured, as B / A latency ratios (below 1: B is faster).

    ``min_effect`` defaults to :data:`MIN_EFFECT` for the mode (interleaved pair or separate runs). A result
    without recorded blocks (schema v1) is cut into ``blocks`` consecutive chunks.
    """
    paired = interleaved_pair(a, b)
    floor = MIN_EFFECT["interleaved" if paired else "separate"] if min_effect is None else min_effect
    if not 0 <= floor < 1:
        raise InputError(f"--min-effect: got {floor}, expected a fraction in [0, 1) such as 0.03")
    rows = []
    for stage in [s for s in a.samples if s in b.samples and a.samples[s] and b.samples[s]]:
        med_a = block_medians(a.samples[stage], a.block_sizes(stage), blocks)
        med_b = block_medians(b.samples[stage], b.block_sizes(stage), blocks)
        mode = "interleaved" if paired and med_a.size == med_b.size else "separate"
        test = TESTS[mode](med_a, med_b, confidence, floor)
        rows.append(StageComparison(stage, float(np.median(a.samples[stage])), float(np.median(b.samples[stage])),
                                    test))
    return rows


def comparison_table(a: BenchResult, b: BenchResult, rows: list[StageComparison]) -> str:
    conf = int(round(rows[0].test.confidence * 100)) if rows else 95
    lines = [
        f"A: {a.model} / {a.backend} / {a.input_size[0]}x{a.input_size[1]} ({a.created})",
        f"B: {b.model} / {b.backend} / {b.input_size[0]}x{b.input_size[1]} ({b.created})",
    ]
    lines += _method_notes(a, b, rows)
    lines.append(f"{'stage':<13}{'A median ms':>12}{'B median ms':>12}{'B/A':>8}   {conf}% interval"
                 f"    block noise   verdict")
    for r in rows:
        lines.append(
            f"{r.stage:<13}{r.median_a * 1e3:12.3f}{r.median_b * 1e3:12.3f}{r.test.ratio:8.3f}"
            f"   [{r.test.low:.3f}, {r.test.high:.3f}]   {r.test.spread * 100:8.1f} %   {r.verdict}"
        )
    return "\n".join(lines)


def _method_notes(a: BenchResult, b: BenchResult, rows: list[StageComparison]) -> list[str]:
    if not rows:
        return ["no stage measured in both runs"]
    t = rows[0].test
    notes = []
    for name, r in (("A", a), ("B", b)):
        if not r.blocks:
            notes.append(f"note: {name} has no recorded blocks (written before schema v2): its samples are cut into "
                         f"{DEFAULT_BLOCKS} consecutive chunks, which captures slow drift inside that run but "
                         "nothing between runs")
    if t.paired:
        notes.append(f"interleaved run: {t.blocks_a} A/B block pairs in one process, signed-rank test on log block "
                     "medians (drift hits both blocks of a pair alike); B/A is the Hodges-Lehmann estimate")
    else:
        notes.append(f"separate runs: {t.blocks_a} vs {t.blocks_b} blocks, rank-sum test on log block medians; "
                     "drift between the two runs is not in the blocks, for small effects use "
                     "`bench compare --interleave A B`")
    if not np.isfinite(t.high):
        notes.append(f"too few blocks for a {t.confidence:.0%} interval (a rank test needs 6 pairs, or about 4 blocks per "
                     "run): every verdict is 'no significant difference'; record more with --blocks")
    notes.append(f"noise floor: differences under {t.min_effect * 100:.1f} % are 'within noise' (A/A noise of "
                 f"{'interleaved' if t.paired else 'separate'} runs); 'block noise' is one block's spread here")
    return notes
