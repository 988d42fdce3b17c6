"""FP16/INT8 files accepted or rejected by the task's own metric, with the layers that must stay FP32.

:func:`guard_quantize` scores the FP32 model and the reduced-precision candidate on labelled images
(ONNX Runtime, CPU, Q/DQ computed as the ONNX spec writes it). For INT8 it first picks the calibration
method (minmax / entropy / percentile) by the same metric. When the candidate fails, it searches for a
small set of layers to keep in FP32: layers are ordered (graph order for ``search="bisect"``, or by the
damage each does when it alone is reduced for ``search="sensitivity"``), the shortest prefix that passes
is bisected, its last layer is kept, and the search repeats on the layers before it (each needed layer
costs about log2(layers) trials). Every kept layer is then checked to be needed: without it the metric
fails, and that failing value is its reason. Only a file that passes is written.

Limits of the CPU judge: INT8 is faithful (Q/DQ as written is what TensorRT computes, up to rounding and fusions);
FP16 is optimistic where ONNX Runtime's CPU provider has no FP16 kernel (it runs those ops in FP32) or
fuses differently from TensorRT, so an FP16 verdict should be confirmed on the engine.

>>> result = guard_quantize("hc18.onnx", "int8", data="hc18", accept="dice_drop<=0.005")   # doctest: +SKIP
>>> result.passed, result.kept, result.artifact.path                                         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg._deps import require
from edgeseg.artifact import Artifact
from edgeseg.errors import InputError

from .quantize import (
    CALIBRATION_METHODS, FP32_OPS, INT8_OPS, _load_source, _save_sidecar, default_output, fp16_block_ops,
    int8_details, int8_layers, name_nodes, preprocess_for_int8, qdq_from_preprocessed, quantize_fp16,
)
from .task_metrics import Criterion, EvalSet, Scores, drops, parse_accept, score_model

SEARCHES = ("bisect", "sensitivity")


@dataclass
class Trial:
    """One candidate file: the layers it keeps in FP32, its scores and its metric values against FP32."""

    kept: frozenset[str]
    artifact: Artifact
    scores: Scores
    values: dict[str, float]
    passed: bool
    ratio: float  # worst value / bound over the criteria: below 1 passes


@dataclass
class GuardResult:
    """What the guard decided. ``artifact`` is the written file (None when nothing passed)."""

    passed: bool
    precision: str
    criteria: list[Criterion]
    layers: list[str]
    kept: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    artifact: Artifact | None = None
    message: str = ""


class _Candidates:
    """Builds and scores candidate files of one precision in a work folder, each configuration once."""

    def __init__(self, source: Artifact, precision: str, data: EvalSet, criteria: list[Criterion], work: Path,
                 calibration: Sequence[Path], per_channel: bool, on_trial: Callable[[Trial], None]):
        self.source, self.precision, self.data, self.criteria, self.work = source, precision, data, criteria, work
        self.calibration, self.per_channel, self.on_trial = list(calibration), per_channel, on_trial
        self.method = "percentile"
        self.trials: dict[tuple[str, frozenset[str]], Trial] = {}
        if precision == "int8":
            self.pre = preprocess_for_int8(source.path, work / "pre.onnx")
            self.layers = int8_layers(self.pre)
        else:
            onnx_lib = require("onnx", "FP16 conversion")
            model = onnx_lib.load(str(source.path))
            name_nodes(model)
            blocked = set(fp16_block_ops(FP32_OPS))
            self.layers = [n.name for n in model.graph.node if n.op_type not in blocked]
        self.reference = score_model(source.path, data)

    def cache(self, method: str) -> Path:
        return self.work / f"calibration.{method}.json"

    def trial(self, kept: Sequence[str] | frozenset[str], method: str | None = None) -> Trial:
        method = method or self.method
        key = (method if self.precision == "int8" else "", frozenset(kept))
        if key not in self.trials:
            self.trials[key] = self._run(key[1], method)
            self.on_trial(self.trials[key])
        return self.trials[key]

    def _run(self, kept: frozenset[str], method: str) -> Trial:
        path = self.work / f"trial{len(self.trials)}.{self.precision}.onnx"
        ordered = [name for name in self.layers if name in kept]
        if self.precision == "int8":
            with contextlib.redirect_stdout(io.StringIO()):  # ORT's histogram calibrators print
                qdq_from_preprocessed(self.pre, path, self.source, self.calibration, method=method,
                                      per_channel=self.per_channel, op_types=INT8_OPS, exclude=ordered,
                                      calibration_cache=self.cache(method))
            info = int8_details(path, method, self.per_channel, INT8_OPS, len(self.calibration), self.calibration)
            artifact = _save_sidecar(self.source, path, "int8", info)
        else:
            artifact = quantize_fp16(self.source, path, keep_nodes=ordered)
        scores = score_model(path, self.data)
        values = drops(self.reference, scores)
        passed = all(c.holds(values[c.metric]) for c in self.criteria)
        ratio = max(c.ratio(values[c.metric]) for c in self.criteria)
        return Trial(kept, artifact, scores, values, passed, ratio)

    def input_range(self, layer: str, method: str) -> float | None:
        """The calibrated absolute range of an INT8 layer's data input (None for FP16 or when unknown)."""
        if self.precision != "int8" or not self.cache(method).is_file():
            return None
        onnx_lib = require("onnx", "INT8 quantization")
        node = next((n for n in onnx_lib.load(str(self.pre)).graph.node if n.name == layer), None)
        ranges = json.loads(self.cache(method).read_text()).get("data", {})
        entry = ranges.get(node.input[0]) if node is not None else None
        if not isinstance(entry, dict):
            return None
        values = [abs(float(v)) for key in ("lowest", "highest") for v in _flat(entry.get(key))]
        return max(values) if values else None


def _flat(value) -> list:
    if isinstance(value, dict):  # numpy arrays are stored as {"data": [...], "dtype": ...}
        value = value.get("data", [])
    return list(value) if isinstance(value, list) else ([] if value is None else [value])


def minimal_keep(order: Sequence[str], passes: Callable[[list[str]], bool], budget: int) -> list[str] | None:
    """A set of layers from ``order`` whose FP32 makes ``passes`` true, found by repeated bisection of
    prefixes (``passes(order)`` must hold). None when more than ``budget`` layers would be needed."""
    kept: list[str] = []
    hi = len(order)  # invariant: passes(kept + order[:hi])
    while not passes(kept):
        lo, k = 0, hi
        while lo + 1 < k:  # smallest k with passes(kept + order[:k]); passes(kept + order[:lo]) fails
            mid = (lo + k) // 2
            if passes(kept + list(order[:mid])):
                k = mid
            else:
                lo = mid
        kept.append(order[k - 1])
        hi = k - 1
        if len(kept) > budget:
            return None
    return kept


def guard_quantize(model: str | Path | Artifact, precision: str, data: str | Path, accept: str | Sequence[Criterion],
                   out_path: str | Path | None = None, *, calibration: Sequence[str | Path] | None = None,
                   method: str = "auto", search: str = "bisect", max_kept: float = 0.5, limit: int | None = 64,
                   seed: int = 0, per_channel: bool = True, hc_csv: str | Path | None = None,
                   eval_files: Sequence[str] | None = None, progress: bool = True) -> GuardResult:
    """Write ``precision`` ("fp16"/"int8") of an FP32 ONNX artifact only if it meets ``accept`` on the
    labelled images in ``data`` (images/, masks/), keeping in FP32 the fewest layers needed, at most
    ``max_kept`` (a share) of them. INT8 calibrates on ``calibration`` (image files, required; any of them
    found in ``data`` is left out of the judging set) with ``method`` ("auto" picks by the metric).
    ``limit``/``seed``: judge on that many sampled pairs; ``eval_files``: on these image file names only."""
    criteria = parse_accept(accept) if isinstance(accept, str) else list(accept)
    if precision not in ("fp16", "int8"):
        raise InputError(f"precision: got {precision!r}, expected 'fp16' or 'int8'")
    if search not in SEARCHES:
        raise InputError(f"search: got {search!r}, expected one of {SEARCHES}")
    if method != "auto" and method not in CALIBRATION_METHODS:
        raise InputError(f"method: got {method!r}, expected 'auto' or one of {CALIBRATION_METHODS}")
    if not 0 <= max_kept <= 1:
        raise InputError(f"max_kept: got {max_kept!r}, expected a share of layers between 0 and 1")
    source = _load_source(model)
    out = Path(out_path) if out_path is not None else default_output(source, precision)
    hc_csv = _hc_csv(criteria, data, hc_csv)
    calibration = [Path(p) for p in calibration] if calibration else []
    if precision == "int8" and not calibration:
        raise InputError("calibration: got no images, expected real images of the deployment domain (32+)")
    evalset = EvalSet.load(source, data, limit=limit, seed=seed, exclude=calibration, hc_csv=hc_csv,
                           files=eval_files)
    tqdm = require("tqdm", "progress bars").tqdm
    with tempfile.TemporaryDirectory(prefix="edgeseg-guard-") as tmp, \
            tqdm(desc=f"guard {precision}", unit="trial", disable=not progress, leave=False) as bar:
        def on_trial(trial: Trial) -> None:
            bar.update(1)
            bar.set_postfix_str(f"kept {len(trial.kept)}, worst {_worst(criteria, trial.values)}")

        candidates = _Candidates(source, precision, evalset, criteria, Path(tmp), calibration, per_channel, on_trial)
        report: dict[str, Any] = {"accept": [str(c) for c in criteria], "images": len(evalset),
                                  "data": str(data), "search": search,
                                  "fp32": candidates.reference.summary(evalset.classes)}
        if precision == "int8":
            candidates.method = _choose_method(candidates, method, report)
        plain = candidates.trial(frozenset())
        report["unguarded"] = _row(plain, evalset.classes)
        result = GuardResult(False, precision, criteria, candidates.layers, report=report)
        kept = [] if plain.passed else _search(candidates, search, max_kept, bar)
        if kept is None:
            result.message = _failure(candidates, criteria, max_kept, data)
            return result
        final = candidates.trial(frozenset(kept))
        result.kept = _reasons(candidates, kept, criteria)
        report["guarded"] = _row(final, evalset.classes)
        report["kept"] = result.kept
        report["layers"] = len(candidates.layers)
        report["kept_share"] = len(kept) / max(len(candidates.layers), 1)
        report["trials"] = len(candidates.trials)
        result.artifact = _write(final.artifact, out, report)
        result.passed = True
    return result


def _failure(candidates: _Candidates, criteria: list[Criterion], max_kept: float, data) -> str:
    layers = candidates.layers
    rule = f"{candidates.precision.upper()} cannot meet {', '.join(map(str, criteria))} on {len(candidates.data)} " \
           f"images of {data}"
    everything = next((t for (_, kept), t in candidates.trials.items() if kept == frozenset(layers)), None)
    if everything is not None and not everything.passed:
        return f"{rule} even with all {len(layers)} layers in FP32 ({_worst(criteria, everything.values)}); nothing written"
    budget = math.floor(max_kept * len(layers))
    return (f"{rule} while keeping at most {budget} of {len(layers)} layers in FP32 (max_kept {max_kept:g}); "
            "nothing written")


def _hc_csv(criteria: list[Criterion], data: str | Path, hc_csv: str | Path | None) -> Path | None:
    default = Path(data) / "pixel_size_and_hc.csv"
    path = Path(hc_csv) if hc_csv else (default if default.is_file() else None)
    if any(c.metric == "hc_mm" for c in criteria) and (path is None or not path.is_file()):
        raise InputError(f"--accept: hc_mm needs head circumference references: got no {default}, expected "
                         "HC18's pixel_size_and_hc.csv there or --hc-csv PATH")
    return path


def _choose_method(candidates: _Candidates, method: str, report: dict[str, Any]) -> str:
    methods = CALIBRATION_METHODS if method == "auto" else (method,)
    trials = {m: candidates.trial(frozenset(), m) for m in methods}
    best = min(methods, key=lambda m: (trials[m].ratio, methods.index(m)))
    report["calibration"] = {"chosen": best, "by": "worst value / bound of the accept rule",
                             "methods": {m: _row(t, candidates.data.classes) for m, t in trials.items()}}
    return best


def _search(candidates: _Candidates, search: str, max_kept: float, bar) -> list[str] | None:
    layers = candidates.layers
    budget = math.floor(max_kept * len(layers))
    if budget == 0 or not candidates.trial(frozenset(layers)).passed:
        return None
    order = list(layers)
    if search == "sensitivity":  # each layer reduced alone, the rest FP32: most damaging first
        bar.set_description("guard sensitivity")
        damage = {name: candidates.trial(frozenset(layers) - {name}).ratio for name in layers}
        order.sort(key=lambda name: -damage[name])
    bar.set_description("guard bisect")
    kept = minimal_keep(order, lambda k: candidates.trial(frozenset(k)).passed, budget)
    if kept is None:
        return None
    for name in list(kept):  # drop any layer the others make unnecessary
        if len(kept) > 1 and candidates.trial(frozenset(kept) - {name}).passed:
            kept.remove(name)
    return [name for name in layers if name in kept]


def _reasons(candidates: _Candidates, kept: list[str], criteria: list[Criterion]) -> list[dict[str, Any]]:
    out = []
    for name in kept:
        without = candidates.trial(frozenset(kept) - {name})
        failing = [c for c in criteria if not c.holds(without.values[c.metric])] or criteria
        worst = max(failing, key=lambda c: c.ratio(without.values[c.metric]))
        reason = {"layer": name, "precision": "fp32",
                  "without_it": {c.metric: without.values[c.metric] for c in criteria},
                  "why": f"{candidates.precision.upper()} without it: {worst.metric} "
                         f"{without.values[worst.metric]:.4g} (accept {worst})"}
        rng = candidates.input_range(name, candidates.method)
        if rng is not None:
            reason["input_abs_range"] = rng
            reason["why"] += f"; calibrated input range +-{rng:.3g}"
        out.append(reason)
    return out


def _row(trial: Trial, classes: Sequence[str]) -> dict[str, Any]:
    return {**trial.scores.summary(classes), **trial.values, "passed": trial.passed,
            "kept": sorted(trial.kept)}


def _worst(criteria: list[Criterion], values: dict[str, float]) -> str:
    c = max(criteria, key=lambda c: c.ratio(values[c.metric]))
    return f"{c.metric} {values[c.metric]:.4g}"


def _write(trial_artifact: Artifact, out: Path, report: dict[str, Any]) -> Artifact:
    info = dict(trial_artifact.extra.get("quantization", {}))
    info["guard"] = report
    extra = {**trial_artifact.extra, "quantization": info}
    artifact = trial_artifact.with_path(out, extra=extra)
    shutil.copyfile(trial_artifact.path, out)
    artifact.save()
    return artifact
