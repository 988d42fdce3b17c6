"""Selfie segmentation latency: LiteRT (the reference runtime, XNNPACK) vs edgeseg (ONNX Runtime CPU).

Same model (MediaPipe's selfie segmenter; `edgeseg fetch-selfie` first), same frames (the first frames of
the real video Megamind.avi, 720x528), same thread count, measured interleaved (A, B, B, A, ...) so that
load from other processes hits both alike.

* model-only: LiteRT ``set_tensor + invoke + get_tensor`` vs edgeseg's ``OrtRunner.infer`` (name/shape
  checks included) on the same preprocessed input.
* end-to-end per frame: pre + model + post + background blur.
  LiteRT: a hand-written pipeline (cv2 resize + RGB + /255, invoke, resize the mask to the frame).
  edgeseg: ``Segmenter`` (preprocess from the sidecar, runner, 2-class probabilities and labels at frame
  size) + ``BackgroundEffect``. Both blur and blend with the same ``BackgroundEffect.composite``.

Run:  .venv/bin/python benchmarks/selfie.py [--threads 1] [--iterations 300] [--variant general]
Writes benchmarks/results/selfie.json and prints a table (median and p99 in ms, ratio edgeseg / LiteRT).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
RESULTS = ROOT / "benchmarks" / "results" / "selfie.json"


def load_frames(count: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"no frames read from {VIDEO} (install Debian's opencv-doc)")
    return frames


class LiteRTPipeline:
    """What a user writes around the reference runtime: resize, RGB, /255, invoke, mask to frame size."""

    def __init__(self, tflite_path: Path, threads: int):
        import cv2
        from ai_edge_litert.interpreter import Interpreter

        self.cv2 = cv2
        self.interp = Interpreter(model_path=str(tflite_path), num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]["index"]
        self.out = self.interp.get_output_details()[0]["index"]
        self.height, self.width = self.interp.get_input_details()[0]["shape"][1:3]

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        small = cv2.resize(frame, (int(self.width), int(self.height)), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        return (rgb.astype(np.float32) * np.float32(1 / 255))[None]

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.inp, x)
        self.interp.invoke()
        return self.interp.get_tensor(self.out)

    def person(self, output: np.ndarray, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        return self.cv2.resize(output[0, :, :, 0], (w, h), interpolation=self.cv2.INTER_LINEAR)


def _clock() -> tuple[float, float]:
    """(wall, CPU time of this thread). With one thread everywhere all the work runs on this thread, so CPU
    time is the latency the frame would have on an idle core, unaffected by other processes' load."""
    return time.perf_counter(), time.thread_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def run(variant: str, threads: int, iterations: int, warmup: int, blur: int, frame_count: int) -> dict:
    import cv2

    from edgeseg.apps.selfie import BackgroundEffect, selfie_model_path
    from edgeseg.bench.environment import capture
    from edgeseg.bench.stats import bootstrap_ratio, summarize
    from edgeseg.pipeline import Segmenter
    from edgeseg.runtime import create_runner

    cv2.setNumThreads(threads)  # OpenCV's pool (resize, blur, blend) gets the same budget as the runtimes
    frames = load_frames(frame_count)
    lite = LiteRTPipeline(selfie_model_path(variant, "tflite"), threads)
    runner = create_runner(selfie_model_path(variant, "onnx"), backend="onnxruntime", threads=threads)
    runner.activate()
    seg = Segmenter(selfie_model_path(variant, "onnx"), backend="onnxruntime", threads=threads)
    effect = BackgroundEffect(blur=blur)
    name = runner.input_names[0]
    samples: dict[str, list[float]] = {}

    def record(key: str, wall_cpu: tuple[float, float]) -> None:
        samples.setdefault(key, []).append(wall_cpu[0])
        samples.setdefault(f"{key}_cpu", []).append(wall_cpu[1])

    def litert(k: int) -> dict[str, tuple[float, float]]:
        t = _clock()
        lite.infer(inputs[k])
        model = _since(t)
        frame = frames[k]
        t0 = _clock()
        x = lite.preprocess(frame)
        pre = _since(t0)
        y = lite.infer(x)
        t2 = _clock()
        person = lite.person(y, frame)
        post = _since(t2)
        t3 = _clock()
        effect.composite(frame, person)
        return {"model": model, "e2e": _since(t0), "pre": pre, "post": post, "effect": _since(t3)}

    def edgeseg(k: int) -> dict[str, tuple[float, float]]:
        t = _clock()
        runner.infer({name: inputs_nchw[k]})
        model = _since(t)
        frame = frames[k]
        t0 = _clock()
        result = seg(frame)
        t1 = _clock()
        effect(frame, result)
        effect_s = _since(t1)
        return {"model": model, "e2e": _since(t0), "pre": (result.timings["pre"], float("nan")),
                "post": (result.timings["post"], float("nan")), "effect": effect_s}

    load_before = os.getloadavg()
    inputs = [lite.preprocess(f) for f in frames]
    inputs_nchw = [np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for x in inputs]
    for i in range(warmup + iterations):
        k = i % len(frames)
        order = (("litert", litert), ("edgeseg", edgeseg))
        for who, fn in (order if i % 2 == 0 else order[::-1]):  # alternate who goes first
            parts = fn(k)
            if i >= warmup:
                for part, value in parts.items():
                    record(f"{who}_{part}", value)
    runner.deactivate()
    seg.close()
    samples = {k: v for k, v in samples.items() if np.isfinite(v).all()}  # Segmenter stages: wall time only

    summaries = {k: summarize(v).to_dict() for k, v in samples.items()}
    ratios = {}
    for stage in ("model", "e2e", "model_cpu", "e2e_cpu"):
        r = bootstrap_ratio(samples[f"litert_{stage}"], samples[f"edgeseg_{stage}"])
        ratios[stage] = {"median_ratio": r.ratio, "ci95": [r.low, r.high], "verdict": r.verdict().replace(
            "B better", "edgeseg faster").replace("B worse", "edgeseg slower")}
        ratios[stage]["p99_ratio"] = summaries[f"edgeseg_{stage}"]["p99"] / summaries[f"litert_{stage}"]["p99"]
    import ai_edge_litert
    import onnxruntime

    return {
        "benchmark": "selfie", "variant": variant, "model_input": [int(lite.height), int(lite.width)],
        "frames": {"source": str(VIDEO), "count": len(frames), "size_hw": list(frames[0].shape[:2])},
        "iterations": iterations, "warmup": warmup, "blur": blur, "threads": threads,
        "baseline": "litert", "ratio_is": "edgeseg / litert (below 1: edgeseg faster)",
        "summaries_s": summaries, "ratios": ratios,
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "environment": capture({"litert_num_threads": threads, "ort_intra_op_threads": threads,
                                "cv2_num_threads": threads}),
        "versions": {"ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
                     "onnxruntime": onnxruntime.__version__},
    }


def table(result: dict) -> str:
    s, r = result["summaries_s"], result["ratios"]
    rows = [("stage", "LiteRT median", "LiteRT p99", "edgeseg median", "edgeseg p99", "ratio (median, 95% CI)")]
    for stage, label in (("model", "model only"), ("e2e", "end-to-end (pre+model+post+blur)"),
                         ("model_cpu", "model only, thread CPU time"), ("e2e_cpu", "end-to-end, thread CPU time")):
        a, b = s[f"litert_{stage}"], s[f"edgeseg_{stage}"]
        ci = r[stage]["ci95"]
        rows.append((label, f"{a['median'] * 1e3:.2f} ms", f"{a['p99'] * 1e3:.2f} ms", f"{b['median'] * 1e3:.2f} ms",
                     f"{b['p99'] * 1e3:.2f} ms", f"{r[stage]['median_ratio']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"))
    for part in ("pre", "post", "effect"):
        a, b = s[f"litert_{part}"], s[f"edgeseg_{part}"]
        rows.append((f"  e2e stage: {part} (wall)", f"{a['median'] * 1e3:.2f} ms", f"{a['p99'] * 1e3:.2f} ms",
                     f"{b['median'] * 1e3:.2f} ms", f"{b['p99'] * 1e3:.2f} ms", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    env = result["environment"]
    lines.append(f"{result['variant']} model {result['model_input']}, {result['frames']['count']} frames "
                 f"{result['frames']['size_hw']} of Megamind.avi, {result['iterations']} iterations, "
                 f"threads={result['threads']}, CPU: {env['cpu']} ({env['cores_usable']} usable cores), "
                 f"load average {result['load_average_1min']['before']} -> {result['load_average_1min']['after']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="general", choices=["general", "landscape"])
    parser.add_argument("--threads", type=int, default=1, help="LiteRT num_threads = ORT intra-op threads")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--blur", type=int, default=21)
    parser.add_argument("--frames", type=int, default=60, help="distinct video frames, cycled")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    result = run(args.variant, args.threads, args.iterations, args.warmup, args.blur, args.frames)
    print(table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
