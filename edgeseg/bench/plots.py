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
    """Stacked bars of median pre / infer / post / CRF per run."""
    plt = _pyplot()
    labels = [f"{r.model}\n{r.backend}\n{r.input_size[0]}x{r.input_size[1]}" for r in results]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(results)), 4))
    bottom = np.zeros(len(results))
    colors = {"pre": "#66ccee", "infer": "#4477aa", "post": "#228833", "crf": "#ee6677"}
    for stage in PIPELINE_STAGES:
        vals = np.array([np.median(r.samples[stage]) * 1e3 if r.samples.get(stage) else 0.0 for r in results])
        if vals.any():
            ax.bar(labels, vals, bottom=bottom, label=stage, color=colors[stage])
            bottom += vals
    ax.set(ylabel="median latency [ms]", title="per-stage latency")
    ax.legend()
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
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, backend), pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                linestyle="-" if backend == "onnxruntime" else "--", label=f"{model} ({backend})")
    ax.set(xscale="log", yscale="log", xlabel="input pixels", ylabel=f"median {stage} latency [ms]",
           title="latency vs resolution")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
