"""Regression tracking: one metric across saved benchmark results, ordered by time, regressions flagged.

Results of the same configuration (model, backend, input size, batch) form one series; each point is compared
with the one before it across blocks (rank-sum test on log block medians) and flagged only when the change is
significant *and* larger than the noise floor of separate runs (``MIN_EFFECT["separate"]``, from the A/A
calibration), so run-to-run drift of a shared machine is not reported as a regression.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .compare import MIN_EFFECT, TESTS
from .result import SCHEMA, BenchResult
from .stats import BlockTest, block_medians


@dataclass
class HistoryPoint:
    path: Path
    result: BenchResult
    medians: np.ndarray  # block medians of the metric, seconds
    metric: str = "infer"
    versus_previous: BlockTest | None = None

    @property
    def series(self) -> str:
        r = self.result
        return f"{r.model} {r.backend} {r.input_size[0]}x{r.input_size[1]} b{r.batch}"

    @property
    def median(self) -> float:
        return float(np.median(self.result.samples[self.metric]))

    @property
    def revision(self) -> str:
        return self.result.environment.get("edgeseg_revision") or "?"

    @property
    def flag(self) -> str:
        test = self.versus_previous
        if test is None:
            return ""
        return {"B worse": "REGRESSION", "B better": "improvement"}.get(test.verdict, test.verdict)


def load_history(folder: str | Path, metric: str = "infer", min_effect: float | None = None) -> list[HistoryPoint]:
    """Every ``edgeseg.bench`` result under ``folder`` with ``metric``, by series then time (``created``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"history: {folder} is not a folder of saved results (result.json files)")
    points = []
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            continue
        result = BenchResult.from_dict(data, source=str(path))
        if result.samples.get(metric):
            points.append(HistoryPoint(path, result, block_medians(result.samples[metric],
                                                                   result.block_sizes(metric)), metric=metric))
    if not points:
        raise InputError(f"history: no result under {folder} has samples of {metric!r} (expected result.json files "
                         "written by `edgeseg bench`; --metric picks the stage, e.g. infer or end_to_end)")
    points.sort(key=lambda p: (p.series, p.result.created))
    floor = MIN_EFFECT["separate"] if min_effect is None else min_effect
    for before, point in zip(points, points[1:]):
        if before.series == point.series and before.medians.size >= 2 and point.medians.size >= 2:
            point.versus_previous = TESTS["separate"](before.medians, point.medians, min_effect=floor)
    return points


def history_table(points: list[HistoryPoint], metric: str) -> str:
    floor = next((p.versus_previous.min_effect for p in points if p.versus_previous), MIN_EFFECT["separate"])
    lines = [f"{metric} across {len(points)} saved results; each compared with the previous one of its series "
             f"(rank-sum test across blocks; changes under {floor * 100:.1f} % are within run-to-run noise)",
             f"{'series':<34}{'created':<27}{'revision':<16}{'median ms':>10}{'vs prev':>9}  verdict"]
    for p in points:
        t = p.versus_previous
        lines.append(f"{p.series:<34}{p.result.created:<27}{p.revision:<16}{p.median * 1e3:10.3f}"
                     f"{(f'{t.ratio:9.3f}' if t else ' ' * 9)}  {p.flag}")
    return "\n".join(lines)


def plot_history(points: list[HistoryPoint], metric: str, path: str | Path) -> Path | None:
    """Median per result (bars: range of block medians), one line per series, regressions in red; None
    without matplotlib."""
    try:
        from .plots import _pyplot

        plt = _pyplot()
    except Exception:  # noqa: BLE001 - matplotlib missing: the table is still printed
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(points) + 3), 4.2))
    series = sorted({p.series for p in points})
    labels = []
    for name in series:
        pts = [p for p in points if p.series == name]
        xs = np.arange(len(labels), len(labels) + len(pts))
        labels += [f"{p.result.created[:16]}\n{p.revision}" for p in pts]
        med = np.array([p.median for p in pts]) * 1e3
        low = med - np.array([p.medians.min() for p in pts]) * 1e3
        high = np.array([p.medians.max() for p in pts]) * 1e3 - med
        ax.errorbar(xs, med, yerr=[np.maximum(low, 0), np.maximum(high, 0)], marker="o", capsize=3, label=name)
        bad = [i for i, p in enumerate(pts) if p.flag == "REGRESSION"]
        if bad:
            ax.scatter(xs[bad], med[bad], s=140, facecolors="none", edgecolors="#cc3311", linewidths=2, zorder=3,
                       label="regression")
    ax.set_xticks(np.arange(len(labels)), labels=labels, fontsize=6, rotation=45, ha="right")
    ax.set(ylabel=f"median {metric} [ms]", title=f"{metric} across saved results (bars: range of block medians)")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
