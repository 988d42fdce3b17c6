"""PNG plots of benchmark results: latency histogram + CDF, per-stage stacked bars, latency vs resolution."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .._deps import require
from .result import BenchResult

PIPELINE_STAGES = ("pre", "infer", "post", "crf")


def _pyplot():
    matplotlib = require("matplotlib", "benchmark plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_distribution(result: BenchResult, path: str | Path, stage: str = "end_to_end") -> Path:
    """Histogram and empirical CDF of one stage's latency, with median and p99 marked."""
    plt = _pyplot()
    x = np.asarray(result.samples[stage]) * 1e3
    fig, (ax_hist, ax_cdf) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_hist.hist(x, bins=min(60, max(10, x.size // 5)), color="#4477aa")
    ax_hist.set(xlabel=f"{stage} latency [ms]", ylabel="runs", title="histogram")
    xs = np.sort(x)
    ax_cdf.plot(xs, np.arange(1, xs.size + 1) / xs.size, color="#4477aa")
    ax_cdf.set(xlabel=f"{stage} latency [ms]", ylabel="fraction of runs", title="CDF")
    for ax in (ax_hist, ax_cdf):
        for q, style in ((50, "-"), (99, "--")):
            v = np.percentile(x, q)
            ax.axvline(v, color="#cc3311", linestyle=style, label=f"p{q} {v:.2f} ms")
    ax_cdf.legend(loc="lower right")
    fig.suptitle(f"{result.model} / {result.backend} / {result.input_size[0]}x{result.input_size[1]}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_stages(results: list[BenchResult], path: str | Path) -> Path:
    """Horizontal stacked bars of median pre / infer / post / CRF per run: milliseconds and share of the frame."""
    plt = _pyplot()
    labels = [f"{r.model} {r.backend} {r.input_size[0]}x{r.input_size[1]}" for r in results]
    medians = {stage: np.array([np.median(r.samples[stage]) * 1e3 if r.samples.get(stage) else 0.0 for r in results])
               for stage in PIPELINE_STAGES}
    medians = {stage: v for stage, v in medians.items() if v.any()}
    total = np.sum(list(medians.values()), axis=0)
    total[total == 0] = 1.0
    fig, (ax_ms, ax_share) = plt.subplots(1, 2, figsize=(11, 1.5 + 0.28 * len(results)), sharey=True)
    colors = {"pre": "#66ccee", "infer": "#4477aa", "post": "#228833", "crf": "#ee6677"}
    y = np.arange(len(results))
    left_ms, left_share = np.zeros(len(results)), np.zeros(len(results))
    for stage, values in medians.items():
        ax_ms.barh(y, values, left=left_ms, color=colors[stage], label=stage)
        ax_share.barh(y, 100 * values / total, left=left_share, color=colors[stage])
        left_ms += values
        left_share += 100 * values / total
    ax_ms.set(yticks=y, xlabel="median latency [ms]", title="per-stage latency")
    ax_ms.set_yticklabels(labels, fontsize=7)
    ax_ms.invert_yaxis()
    ax_share.set(xlabel="share of the frame [%]", xlim=(0, 100), title="share per stage")
    ax_ms.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(results: list[BenchResult], path: str | Path, stage: str = "infer") -> Path:
    """Median latency vs input resolution (pixels), one line per model and backend."""
    plt = _pyplot()
    lines = defaultdict(list)
    for r in results:
        if r.samples.get(stage):
            lines[(r.model, r.backend)].append((r.input_size[0] * r.input_size[1], np.median(r.samples[stage]) * 1e3,
                                                f"{r.input_size[0]}x{r.input_size[1]}"))
    fig, ax = plt.subplots(figsize=(9, 5))
    models = sorted({model for model, _ in lines})
    palette = plt.get_cmap("tab20" if len(models) > 10 else "tab10")
    styles = ["-", "--", ":", "-."]
    backends = sorted({backend for _, backend in lines})
    for (model, backend), pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=palette(models.index(model)),
                linestyle=styles[backends.index(backend) % len(styles)], label=f"{model} ({backend})")
    ax.set(xscale="log", yscale="log", xlabel="input size", ylabel=f"median {stage} latency [ms]",
           title="latency vs resolution")
    ticks = {pixels: label for pts in lines.values() for pixels, _, label in pts}
    ax.set_xticks(sorted(ticks), labels=[ticks[p] for p in sorted(ticks)])
    ax.minorticks_off()
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
