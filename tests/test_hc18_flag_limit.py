"""benchmarks/hc18_flag_limit.py: the half-width flag limit chosen on training scans by a fixed flag rate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgeseg.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from hc18_flag_limit import choose_limit, flagged_fraction  # noqa: E402


def _rows(halves, border=(), poor=()):
    return [{"half_width_mm": h, "border_fraction": 0.5 if i in border else 0.0,
             "residual_mm": 3.0 if i in poor else 0.1} for i, h in enumerate(halves)]


def test_limit_flags_the_widest_intervals_up_to_the_rate():
    rows = _rows([float(h) for h in range(1, 21)])  # half-widths 1..20 mm
    # 10 % of 20 scans: the two widest (19, 20) may be flagged, so the limit sits at 18 (flags are "> limit").
    assert choose_limit(rows, 0.10) == pytest.approx(18.0)
    assert flagged_fraction(rows, 18.0) == pytest.approx(0.10)
    assert choose_limit(rows, 0.149) == pytest.approx(18.0)  # 2.98 scans: still two
    assert choose_limit(rows, 0.15) == pytest.approx(17.0)


def test_limit_rounds_up_to_a_step_and_counts_the_other_flags():
    rows = _rows([1.0, 2.0, 3.0, 4.0, 4.02, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert choose_limit(rows, 0.5) == pytest.approx(4.05)  # five widest flagged: the limit must cover the 6th, 4.02
    # Scan 0 (half-width 1) cut by the border and scan 1 a poor fit use two of the five flags.
    rows = _rows([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], border={0}, poor={1})
    assert choose_limit(rows, 0.5) == pytest.approx(7.0)
    assert flagged_fraction(rows, 7.0) == pytest.approx(0.5)
    missing = _rows([1.0, 2.0, 3.0, 4.0]) + [{"file": "x", "flags": ["no_head"]}]
    assert choose_limit(missing, 0.4) == pytest.approx(3.0)  # the no-head scan takes one of two flags, 4 mm the other


def test_bad_rates_and_budgets_are_refused():
    rows = _rows([1.0, 2.0, 3.0, 4.0], border={0, 1})
    with pytest.raises(InputError, match="rate: 2 of 4 scans"):
        choose_limit(rows, 0.25)
    for rate in (0.0, 1.0, -0.1):
        with pytest.raises(InputError, match="rate"):
            choose_limit(rows, rate)
    with pytest.raises(InputError, match="rows"):
        choose_limit([], 0.1)
