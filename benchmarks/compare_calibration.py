"""Calibrate `edgeseg bench compare`: how often it cries wolf (A/A) and how often it finds a known slowdown (A/B).

Each comparison builds fresh ONNX Runtime sessions of the shipped HC18 fastseg (edgeseg/assets/hc18_fastseg.onnx,
at a small input so one comparison takes seconds) and times whole frames in blocks:
  - interleaved: both models in one process, blocks alternating A B B A ... (`bench compare --interleave`:
    sessions rebuilt every 2 pairs, 0-1 ms idle before each frame), signed-rank test on log block medians;
  - separate: A's blocks, then B's blocks with a fresh session (like two `edgeseg bench` runs back to back),
    rank-sum test on log block medians.
B is A's runner wrapped so every inference busy-waits ``effect`` times its own measured time afterwards: a true
+3 %, +5 % or +10 % on the infer stage under whatever load the machine has (A runs through the same wrapper with
effect 0). Conditions run round-robin so load changes over the run hit every condition alike.

Reported per condition: the share of comparisons whose infer verdict is "B worse" / "B better" (A/A: false
alarms; A/B: detections) with the shipped rank test and noise floor (edgeseg.bench.compare.TESTS, MIN_EFFECT), the
same test without the floor, the t-test with the floor, and the old bootstrap over iterations; and the A/A noise (95th percentile of |B/A - 1|).

    nice .venv/bin/python benchmarks/compare_calibration.py                  # 20 per condition, ~10-20 min
    .venv/bin/python benchmarks/compare_calibration.py --runs 3 --iterations 100 --blocks 10   # smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseg.bench.compare import MIN_EFFECT, T_TESTS, TESTS  # noqa: E402
from edgeseg.bench.environment import capture as machine_info  # noqa: E402
from edgeseg.bench.measure import FrameTimer, _artifact_at_size, _segmenter, run_interleaved, synthetic_frames  # noqa: E402
from edgeseg.bench.stats import block_medians, bootstrap_ratio  # noqa: E402
from edgeseg.runtime.base import Runner  # noqa: E402

MODEL = REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx"
RESULTS = REPO / "benchmarks" / "results"
STAGES = ("infer", "end_to_end")


class SlowedRunner(Runner):
    """A real runner whose every inference is followed by a busy wait of ``effect`` x its measured time."""

    def __init__(self, inner: Runner, effect: float):
        super().__init__(inner.artifact, check_finite=inner.check_finite)
        self.inner, self.effect = inner, effect
        self.backend = inner.backend
        self.threads = getattr(inner, "threads", None)

    def _activate(self) -> None:
        self.inner.activate()

    def _deactivate(self) -> None:
        self.inner.deactivate()

    def _infer(self, feed):
        start = time.perf_counter()
        out = self.inner._infer(feed)
        if self.effect:
            end = time.perf_counter() + self.effect * (time.perf_counter() - start)
            while time.perf_counter() < end:  # busy, not sleep: a sleep of ~50 us oversleeps by its own size
                pass
        return out


def interleaved(effect: float, args, frames) -> dict:
    a, b = run_interleaved(MODEL, MODEL, size=args.size, iterations=args.iterations, warmup=args.warmup,
                           threads=args.threads, frames=frames, blocks=args.blocks, progress=False,
                           pause=args.pause_ms / 1e3, reload_every=args.reload_every,
                           wrap=lambda role, runner: SlowedRunner(runner, effect if role == "B" else 0.0))
    return {stage: (a.samples[stage], a.blocks[stage], b.samples[stage], b.blocks[stage]) for stage in STAGES}


def separate(effect: float, args, frames) -> dict:
    runs = []
    for e in (0.0, effect):
        artifact = _artifact_at_size(MODEL, args.size)
        seg = _segmenter(artifact, "onnxruntime", False, args.threads, lambda r, e=e: SlowedRunner(r, e))
        try:
            timer = FrameTimer(seg, frames, pause=args.pause_ms / 1e3)
            timer.warm(args.warmup)
            for count in np.diff(np.linspace(0, args.iterations, args.blocks + 1).round().astype(int)):
                timer.block(int(count), None)
            runs.append(timer.result())
        finally:
            seg.close()
    (sa, ba), (sb, bb) = runs
    return {stage: (sa[stage], ba[stage], sb[stage], bb[stage]) for stage in STAGES}


def judge(mode: str, data: dict) -> dict:
    out = {}
    for stage, (xa, sizes_a, xb, sizes_b) in data.items():
        out[stage] = verdicts(mode, block_medians(xa, sizes_a), block_medians(xb, sizes_b))
        out[stage].update(bootstrap=bootstrap_ratio(xa, xb, resamples=1000).verdict(),
                          median_a_ms=float(np.median(xa) * 1e3))
    return out


def verdicts(mode: str, ma, mb) -> dict:
    """The block test with the shipped floor and without; block medians kept so --summarize can redo this."""
    floored = TESTS[mode](ma, mb, min_effect=MIN_EFFECT[mode])
    return {"ratio": floored.ratio, "low": floored.low, "high": floored.high, "spread": floored.spread,
            "verdict": floored.verdict, "no_floor": TESTS[mode](ma, mb).verdict,
            "t_test": T_TESTS[mode](ma, mb, min_effect=MIN_EFFECT[mode]).verdict,
            "blocks_a": [round(float(v), 8) for v in ma], "blocks_b": [round(float(v), 8) for v in mb]}


def rate(rows: list[dict], key: str, word: str, stage: str = "infer") -> float:
    return sum(r[stage][key] == word for r in rows) / len(rows) if rows else float("nan")


def summarize(records: list[dict]) -> list[dict]:
    table = []
    for mode, effect in sorted({(r["mode"], r["effect"]) for r in records}):
        rows = [r for r in records if (r["mode"], r["effect"]) == (mode, effect)]
        ratios = np.array([r["infer"]["ratio"] for r in rows])
        entry = {"mode": mode, "effect": effect, "runs": len(rows), "min_effect": MIN_EFFECT[mode],
                 "median_ratio_infer": float(np.median(ratios)),
                 "median_ratio_end_to_end": float(np.median([r["end_to_end"]["ratio"] for r in rows])),
                 "median_block_spread": float(np.median([r["infer"]["spread"] for r in rows]))}
        for key in ("verdict", "no_floor", "t_test", "bootstrap"):
            entry[f"worse_{key}"] = rate(rows, key, "B worse")
            entry[f"better_{key}"] = rate(rows, key, "B better")
        entry["worse_end_to_end"] = rate(rows, "verdict", "B worse", "end_to_end")
        if effect == 0:
            entry["aa_noise_q95"] = float(np.quantile(np.abs(ratios - 1), 0.95))
            entry["aa_noise_max"] = float(np.max(np.abs(ratios - 1)))
        table.append(entry)
    return table


def markdown(table: list[dict]) -> str:
    lines = ["| mode | injected | runs | called worse | called better | no floor: worse / better "
             "| t-test + floor: worse / better | old bootstrap: worse / better | median B/A infer | A/A noise q95 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in table:
        noise = f"{e['aa_noise_q95'] * 100:.1f} %" if "aa_noise_q95" in e else ""
        lines.append(
            f"| {e['mode']} (floor {e['min_effect'] * 100:.0f} %) | +{e['effect'] * 100:.0f} % | {e['runs']} | "
            f"{e['worse_verdict'] * 100:.0f} % | {e['better_verdict'] * 100:.0f} % | "
            f"{e['worse_no_floor'] * 100:.0f} / {e['better_no_floor'] * 100:.0f} % | "
            f"{e['worse_t_test'] * 100:.0f} / {e['better_t_test'] * 100:.0f} % | "
            f"{e['worse_bootstrap'] * 100:.0f} / {e['better_bootstrap'] * 100:.0f} % | "
            f"{e['median_ratio_infer']:.3f} | {noise} |")
    return "\n".join(lines)


def resummarize(path: Path) -> int:
    data = json.loads(path.read_text())
    for r in data["comparisons"]:
        for stage in STAGES:
            r[stage].update(verdicts(r["mode"], np.array(r[stage]["blocks_a"]), np.array(r[stage]["blocks_b"])))
    data["summary"] = summarize(data["comparisons"])
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(markdown(data["summary"]))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="comparisons per condition (default 20)")
    parser.add_argument("--effects", type=float, nargs="+", default=[0.03, 0.05, 0.10])
    parser.add_argument("--separate-effects", type=float, nargs="*", default=[0.10],
                        help="A/B effects also run as separate runs (A/A always is)")
    parser.add_argument("--no-separate", action="store_true", help="interleaved conditions only")
    parser.add_argument("--iterations", type=int, default=600, help="timed frames per model (default 600)")
    parser.add_argument("--blocks", type=int, default=20, help="blocks per model (default 20)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--size", type=int, default=128, help="model input HxH (default 128)")
    parser.add_argument("--frame", default="240x320", help="synthetic frame HxW (default 240x320)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pause-ms", type=float, default=1.0,
                        help="random idle of 0 to this many ms before each frame (default 1; see run_interleaved)")
    parser.add_argument("--out", default=str(RESULTS / "compare_calibration.json"))
    parser.add_argument("--reload-every", type=int, default=2, help="rebuild sessions every N pairs (default 2)")
    parser.add_argument("--summarize", metavar="JSON", help="only re-judge a saved run with the current floors")
    args = parser.parse_args()
    if args.summarize:
        return resummarize(Path(args.summarize))
    args.size = (args.size, args.size)
    frames = synthetic_frames(tuple(int(v) for v in args.frame.split("x")))
    conditions = [("interleaved", 0.0)] + [("interleaved", e) for e in args.effects]
    if not args.no_separate:
        conditions += [("separate", 0.0)] + [("separate", e) for e in args.separate_effects]
    records, started = [], time.time()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for i in range(args.runs):
        for mode, effect in conditions:
            data = (interleaved if mode == "interleaved" else separate)(effect, args, frames)
            records.append({"mode": mode, "effect": effect, "run": i, "time_s": round(time.time() - started, 1),
                            **judge(mode, data)})
            r = records[-1]["infer"]
            print(f"[{i + 1}/{args.runs}] {mode:<11} +{effect * 100:4.1f} %  B/A {r['ratio']:.3f} "
                  f"[{r['low']:.3f}, {r['high']:.3f}]  {r['verdict']:<26} (t-test: {r['t_test']}, "
                  f"bootstrap: {r['bootstrap']})  {time.time() - started:.0f} s", flush=True)
        table = summarize(records)
        out.write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if k != "out"},
                                   "model": MODEL.name, "machine": machine_info({"runner_threads": args.threads}),
                                   "load_average": list(np.round(np.array(__import__("os").getloadavg()), 2)),
                                   "elapsed_s": round(time.time() - started, 1), "summary": table,
                                   "comparisons": records}, indent=1) + "\n")
    print(markdown(summarize(records)))
    print(f"wrote {out} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
