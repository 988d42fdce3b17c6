"""Choose measure_head's half-width flag limit on the TRAINING patients, by a rule fixed before scoring validation.

Rule: the limit is the smallest half-width (0.05 mm steps) at which all flags together (``cut_by_border``,
``poor_fit``, ``unsure_boundary``) mark at most ``--train-rate`` (5 %) of the training patients' scans.
Half the 10 % budget of issue 24, because a model is surer of the scans it trained on: unseen patients'
intervals are wider, so the same limit flags more of them. The validation split is not read.

Training patients: every HC18 pair whose file is not in benchmarks/results/hc18_val_files.txt.
Measured as ``edgeseg measure`` does (flip TTA, skull-only fit, outline offset): ``hc18_eval.score_image``.

Run:  .venv/bin/python benchmarks/hc18_flag_limit.py          (shipped ONNX, 708 scans; ~5 min on one thread)
      .venv/bin/python benchmarks/hc18_flag_limit.py --model runs/x.onnx --rows rows.json   (reuse scored rows)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from edgeseg.apps.ultrasound import trust_flags  # noqa: E402
from edgeseg.data import pair_folder  # noqa: E402
from edgeseg.data.hc18 import read_file_list  # noqa: E402
from edgeseg.errors import InputError  # noqa: E402

STEP_MM = 0.05


def training_files(data: Path, split: Path) -> list[str]:
    """Every paired HC18 image not listed in the validation ``split``."""
    val = set(read_file_list(split))
    return [s.name for s in pair_folder(data / "images", data / "masks") if s.name not in val]


def choose_limit(rows: list[dict], rate: float) -> float:
    """Smallest half-width limit (a multiple of ``STEP_MM``) at which at most ``rate`` of ``rows`` are flagged.

    A row is flagged by the other two flags whatever the limit (border fraction, fit residual), or by a
    half-width above the limit; rows with no head count as flagged.
    """
    if not 0.0 < rate < 1.0:
        raise InputError(f"rate: got {rate!r}, expected a fraction in (0, 1)")
    if not rows:
        raise InputError("rows: got none, expected the training patients' scored scans")
    half = np.array([r.get("half_width_mm", float("nan")) for r in rows], float)
    fixed = np.array([is_flagged(r, math.inf) for r in rows])
    budget = int(np.floor(rate * len(rows)))
    if fixed.sum() > budget:
        raise InputError(f"rate: {fixed.sum()} of {len(rows)} scans are flagged by the border and fit flags "
                         f"alone, expected a rate of at least {fixed.mean():.3f}")
    candidates = np.sort(half[~fixed])[::-1]  # the half-widths that only the limit can flag, widest first
    spare = budget - int(fixed.sum())  # how many of them may be flagged
    # Flag the `spare` widest at most: the limit must reach the (spare + 1)-th widest, rounded up to a step.
    edge = candidates[spare] if spare < len(candidates) else 0.0
    return round(float(np.ceil(edge / STEP_MM - 1e-9) * STEP_MM), 2)


def is_flagged(row: dict, limit: float) -> bool:
    """Whether any of measure_head's flags marks ``row`` with the half-width limit ``limit`` (no head: flagged)."""
    half = row.get("half_width_mm", float("nan"))
    return not np.isfinite(half) or bool(trust_flags(row["border_fraction"], row["residual_mm"], half, limit))


def flagged_fraction(rows: list[dict], limit: float) -> float:
    """Share of ``rows`` any flag marks with the half-width limit ``limit``."""
    return float(np.mean([is_flagged(r, limit) for r in rows]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hc18"))
    parser.add_argument("--split", default=str(REPO / "benchmarks" / "results" / "hc18_val_files.txt"),
                        help="the validation list; its files are left out")
    parser.add_argument("--train-rate", type=float, default=0.05, help="flag at most this share of training scans")
    parser.add_argument("--rows", default=None, help="an hc18_eval JSON already scored on the training files")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hc18_flag_limit.json"))
    args = parser.parse_args(argv)
    data, model = Path(args.data), Path(args.model).resolve()
    names = training_files(data, Path(args.split))
    if args.rows:
        rows = json.loads(Path(args.rows).read_text(encoding="utf-8"))["results"][0]["per_image"]
        if sorted(r["file"] for r in rows) != sorted(names):
            raise InputError(f"--rows: {args.rows} does not hold exactly the {len(names)} training files")
    else:
        from hc18_eval import evaluate_model

        rows = evaluate_model(model, data, names, threads=1, limit=None, with_cut=False)["per_image"]
    limit = choose_limit(rows, args.train_rate)
    half = np.array([r["half_width_mm"] for r in rows], float)
    out = {"benchmark": "hc18_flag_limit", "model": model.name, "training_scans": len(rows),
           "train_rate": args.train_rate, "half_width_limit_mm": limit,
           "flagged_fraction_train": flagged_fraction(rows, limit),
           "half_width_percentiles_mm": {str(q): float(np.nanpercentile(half, q)) for q in (50, 90, 95, 99)}}
    print(json.dumps(out, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
