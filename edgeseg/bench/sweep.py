"""A sweep: models x backends x sizes from a small YAML/JSON spec -> one report (markdown table + plots).

Spec example (``sweep.yaml``)::

    artifacts: [out/fastseg.onnx, out/fastseg.safetensors, out/deeplabv3.onnx]
    backends: [onnxruntime, torch]     # each artifact runs on the listed backends that support its format
    sizes: [[256, 256], [512, 512]]
    iterations: 50                     # or duration: 10 (seconds per configuration)
    warmup: 5
    threads: 2
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifact import FORMATS
from ..errors import InputError
from .measure import run_benchmark
from .result import BenchResult


@dataclass
class SweepSpec:
    artifacts: list[str]
    backends: list[str] = field(default_factory=lambda: ["auto"])
    sizes: list[tuple[int, int]] = field(default_factory=list)
    iterations: int | None = 50
    duration: float | None = None
    warmup: int = 5
    threads: int | None = None

    @classmethod
    def load(cls, path: str | Path) -> "SweepSpec":
        path = Path(path)
        if not path.exists():
            raise InputError(f"sweep spec: {path} does not exist")
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            from .._deps import require

            data = require("yaml", "YAML sweep specs").safe_load(text)
        else:
            data = json.loads(text)
        if not isinstance(data, dict) or not data.get("artifacts"):
            raise InputError(f"sweep spec {path}: expected a mapping with a non-empty 'artifacts' list")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"sweep spec {path}: unknown keys {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}")
        base = path.parent
        data["artifacts"] = [str(a if Path(a).is_absolute() else base / a) for a in data["artifacts"]]
        sizes = []
        for size in data.get("sizes", []):
            if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
                raise InputError(f"sweep spec {path}: size {size!r}, expected [height, width] of positive ints")
            sizes.append(tuple(size))
        data["sizes"] = sizes
        return cls(**data)


def _supports(backend: str, artifact: str) -> bool:
    if backend == "auto":
        return True
    from ..runtime.registry import backends_for

    fmt = FORMATS.get(Path(artifact).suffix.lower())
    return fmt is not None and any(b.name == backend for b in backends_for(fmt))


def run_sweep(spec: SweepSpec, progress=None) -> list[BenchResult]:
    """Every supported (artifact, backend, size) configuration, in spec order."""
    configs = [(a, b, s) for a in spec.artifacts for b in spec.backends if _supports(b, a) for s in (spec.sizes or [None])]
    if not configs:
        raise InputError("sweep spec: no artifact matches any listed backend (check the file types and backends)")
    results = []
    for i, (artifact, backend, size) in enumerate(configs):
        if progress:
            progress(i, len(configs), artifact, backend, size)
        results.append(run_benchmark(artifact, backend=backend, size=size, iterations=spec.iterations,
                                     duration=spec.duration, warmup=spec.warmup, threads=spec.threads,
                                     progress=False))
    return results


def markdown_report(results: list[BenchResult], plots: dict[str, str] | None = None) -> str:
    env = results[0].environment if results else {}
    lines = [
        "# edgeseg benchmark sweep", "",
        f"Machine: {env.get('cpu', '?')}, {env.get('cores_usable', '?')} usable cores; "
        f"onnxruntime {env.get('libraries', {}).get('onnxruntime')}, torch {env.get('libraries', {}).get('torch')}; "
        f"GPU: {env.get('gpu', {}).get('detail', '?')}.", "",
        "Latency in ms (median / p99 over the timed runs after warm-up); `vs torch` is the ONNX Runtime median "
        "divided by the PyTorch median of the same model and size, measured in the same sweep.", "",
        "| model | size | backend | infer median | infer p99 | frame median | frame p99 | FPS | vs torch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    torch_median = {(r.model, r.input_size): r.stages["infer"]["median"] for r in results if r.backend == "torch"}
    for r in results:
        st = r.stages
        ratio = torch_median.get((r.model, r.input_size))
        ratio_text = f"{st['infer']['median'] / ratio:.2f}" if ratio and r.backend != "torch" else ""
        lines.append(
            f"| {r.model} | {r.input_size[0]}x{r.input_size[1]} | {r.backend} | {st['infer']['median'] * 1e3:.2f} | "
            f"{st['infer']['p99'] * 1e3:.2f} | {st['end_to_end']['median'] * 1e3:.2f} | "
            f"{st['end_to_end']['p99'] * 1e3:.2f} | {st['end_to_end']['throughput']:.1f} | {ratio_text} |"
        )
    for title, path in (plots or {}).items():
        lines += ["", f"![{title}]({path})"]
    return "\n".join(lines) + "\n"


def write_report(results: list[BenchResult], out_dir: str | Path) -> Path:
    """``report.md``, ``sweep.json`` (all results), ``sweep.png`` and ``stages.png`` in ``out_dir``."""
    from .plots import plot_stages, plot_sweep

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps([_compact(r) for r in results], indent=1) + "\n", encoding="utf-8")
    plot_sweep(results, out / "sweep.png")
    plot_stages(results, out / "stages.png")
    report = out / "report.md"
    report.write_text(markdown_report(results, {"latency vs resolution": "sweep.png",
                                                "per-stage latency": "stages.png"}), encoding="utf-8")
    return report


def _compact(result: BenchResult) -> dict[str, Any]:
    """A result with samples rounded to 0.1 microseconds, so committed reports stay small."""
    data = result.to_dict()
    data["samples"] = {k: [round(v, 7) for v in vs] for k, vs in data["samples"].items()}
    return data
