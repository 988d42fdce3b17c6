"""The benchmark result: one JSON document per run (schema below), plus CSV and a terminal table.

Schema ``edgeseg.bench`` version 2 (all times in seconds)::

    {
      "schema": "edgeseg.bench", "schema_version": 2, "created": "2026-11-25T10:00:00+00:00",
      "artifact": "model.onnx", "model": "fastseg", "backend": "onnxruntime", "precision": "fp32",
      "input_size": [256, 256], "batch": 1,
      "config": {"warmup": 10, "iterations": 200, "duration": null, "crf": false, "threads": 2},
      "environment": {...},                      # edgeseg.bench.environment.capture()
      "stages": {"pre": {count, mean, median, p90, p99, min, max, std, throughput}, "infer": ..., "post": ...,
                 "crf": ..., "end_to_end": ..., "device_infer": ... (CUDA events, GPU only)},
      "memory": {"peak_rss_mb": 512.0, "gpu_peak_mb": null},
      "samples": {"end_to_end": [...], "infer": [...], ...},  # raw samples, for `edgeseg bench compare`
      "blocks": {"end_to_end": [20, 20, ...], ...}           # samples per block, in order (sums to the count)
    }

``config.interleave`` (``{"id", "role": "A"|"B", "order"}``) marks the two results of one `bench compare
--interleave` run: block i of A ran right next to block i of B, so a comparison of the two pairs them.
Version 1 files (no ``blocks``) still load: their samples are one block, and a comparison cuts them into
consecutive chunks instead (see :func:`edgeseg.bench.stats.split_blocks`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .stats import summarize

SCHEMA = "edgeseg.bench"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
STAGE_ORDER = ("capture", "pre", "infer", "device_infer", "post", "crf", "upsample", "effect", "sink", "end_to_end",
               "glass_to_glass")


@dataclass
class BenchResult:
    artifact: str
    model: str
    backend: str
    input_size: tuple[int, int]
    batch: int
    samples: dict[str, list[float]]
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, float | None] = field(default_factory=dict)
    precision: str = "fp32"
    blocks: dict[str, list[int]] = field(default_factory=dict)  # samples per block; empty: no block structure
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def stages(self) -> dict[str, dict[str, float]]:
        ordered = [s for s in STAGE_ORDER if s in self.samples] + sorted(set(self.samples) - set(STAGE_ORDER))
        items = self.batch if self.batch > 1 else 1
        return {s: summarize(self.samples[s], items_per_sample=items).to_dict() for s in ordered if self.samples[s]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": self.created,
            "artifact": self.artifact, "model": self.model, "backend": self.backend, "precision": self.precision,
            "input_size": list(self.input_size), "batch": self.batch, "config": self.config,
            "environment": self.environment, "stages": self.stages, "memory": self.memory,
            "samples": self.samples, "blocks": self.blocks,
        }

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    def save_csv(self, path: str | Path) -> Path:
        """One row per stage: the summary statistics in milliseconds."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = ["count", "mean", "median", "p90", "p99", "min", "max", "std"]
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["model", "backend", "input_size", "batch", "stage", *[f"{k}_ms" if k != "count" else k
                                                                                    for k in keys], "throughput_per_s"])
            for stage, s in self.stages.items():
                writer.writerow([self.model, self.backend, "x".join(map(str, self.input_size)), self.batch, stage,
                                 s["count"], *[f"{s[k] * 1e3:.4f}" for k in keys[1:]], f"{s['throughput']:.2f}"])
        return path

    @classmethod
    def load(cls, path: str | Path) -> "BenchResult":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InputError(f"result file: {path} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise InputError(f"result file: {path} is not valid JSON ({exc})") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "BenchResult":
        if data.get("schema") != SCHEMA:
            raise InputError(f"{source}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
        if data.get("schema_version") not in READABLE_VERSIONS:
            raise InputError(f"{source}: schema_version is {data.get('schema_version')!r}, expected one of "
                             f"{list(READABLE_VERSIONS)}")
        missing = [k for k in ("artifact", "model", "backend", "input_size", "batch", "samples") if k not in data]
        if missing:
            raise InputError(f"{source}: missing fields {missing}")
        return cls(
            artifact=data["artifact"], model=data["model"], backend=data["backend"],
            input_size=tuple(data["input_size"]), batch=int(data["batch"]),
            samples={k: [float(v) for v in vs] for k, vs in data["samples"].items()},
            config=data.get("config", {}), environment=data.get("environment", {}),
            memory=data.get("memory", {}), precision=data.get("precision", "fp32"), created=data.get("created", ""),
            blocks={k: [int(n) for n in v] for k, v in (data.get("blocks") or {}).items()},
        )

    def block_sizes(self, stage: str) -> list[int] | None:
        """Samples per block of ``stage``, or None when the run recorded no blocks (schema v1)."""
        sizes = self.blocks.get(stage)
        return sizes if sizes and sum(sizes) == len(self.samples.get(stage, ())) else None

    def table(self) -> str:
        """A plain-text table of the stages in milliseconds."""
        header = f"{'stage':<13}{'mean':>9}{'median':>9}{'p90':>9}{'p99':>9}{'min':>9}{'max':>9}{'per s':>9}"
        lines = [
            f"{self.model} on {self.backend} ({self.precision}), input {self.input_size[0]}x{self.input_size[1]}, "
            f"batch {self.batch}  [ms]",
            header, "-" * len(header),
        ]
        for stage, s in self.stages.items():
            lines.append(
                f"{stage:<13}" + "".join(f"{s[k] * 1e3:9.2f}" for k in ("mean", "median", "p90", "p99", "min", "max"))
                + f"{s['throughput']:9.1f}"
            )
        mem = self.memory
        if mem:
            lines.append(f"peak RSS {mem.get('peak_rss_mb') or 0:.0f} MB"
                         + (f", GPU peak {mem['gpu_peak_mb']:.0f} MB" if mem.get("gpu_peak_mb") else ""))
        return "\n".join(lines)
