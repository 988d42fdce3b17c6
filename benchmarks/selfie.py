"""Selfie segmentation latency: LiteRT (the reference runtime, XNNPACK) vs edgeseg (ONNX Runtime CPU).

Same model (MediaPipe's selfie segmenter; `edgeseg fetch-selfie` first), same frames (the first frames of
the real video Megamind.avi, 720x528), same thread count, measured interleaved (A, B, B, A, ...) so that
load from other processes hits both alike.

* model-only: LiteRT ``set_tensor + invoke + get_tensor`` vs edgeseg's ``OnnxRuntimeRunner.infer`` (name/shape
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
# row -> (LiteRT samples, edgeseg samples); "ort_session_cpu" isolates ONNX Runtime from edgeseg's Runner layer
COMPARISONS = {
    "model": ("litert_model", "edgeseg_model"), "e2e": ("litert_e2e", "edgeseg_e2e"),
    "model_cpu": ("litert_model_cpu", "edgeseg_model_cpu"), "e2e_cpu": ("litert_e2e_cpu", "edgeseg_e2e_cpu"),
    "ort_session_cpu": ("litert_model_cpu", "edgeseg_ort_session_cpu"),
    "segment_cpu": ("litert_segment_cpu", "edgeseg_segment_cpu"), "effect_cpu": ("litert_effect_cpu", "edgeseg_effect_cpu"),
}


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

    def litert_e2e(k: int) -> dict[str, tuple[float, float]]:
        frame = frames[k]
        t0 = _clock()
        person = lite.person(lite.infer(lite.preprocess(frame)), frame)
        segment = _since(t0)
        t1 = _clock()
        effect.composite(frame, person)
        effect_s = _since(t1)
        return {"e2e": _since(t0), "segment": segment, "effect": effect_s}

    def edgeseg_e2e(k: int) -> dict[str, tuple[float, float]]:
        frame = frames[k]
        t0 = _clock()
        result = seg(frame)
        t_read = time.perf_counter()
        result.foreground  # noqa: B018 - the frame-size plane, built on first read: LiteRT's person() resizes too
        read_s = time.perf_counter() - t_read
        segment = _since(t0)
        t1 = _clock()
        effect(frame, result)
        effect_s = _since(t1)
        for stage in ("pre", "infer", "post"):  # the Segmenter's own (wall) stage timings, kept in the JSON
            extra = read_s if stage == "post" else 0.0  # post includes building the foreground at frame size
            samples.setdefault(f"edgeseg_segmenter_{stage}", []).append(result.timings[stage] + extra)
        return {"e2e": _since(t0), "segment": segment, "effect": effect_s}

    def model_only(call):
        def measure(k: int) -> dict[str, tuple[float, float]]:
            t = _clock()
            call(k)
            return {"": _since(t)}
        return measure

    load_before = os.getloadavg()
    inputs = [lite.preprocess(f) for f in frames]
    inputs_nchw = [np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for x in inputs]
    # Phase 1, model only: LiteRT, edgeseg's Runner and the bare ORT session in rotating order.
    # Phase 2, end to end: LiteRT pipeline and edgeseg pipeline alternating who goes first.
    phases = [
        [("litert_model", model_only(lambda k: lite.infer(inputs[k]))),
         ("edgeseg_model", model_only(lambda k: runner.infer({name: inputs_nchw[k]}))),
         ("edgeseg_ort_session", model_only(lambda k: runner.session.run(None, {name: inputs_nchw[k]})))],
        [("litert", litert_e2e), ("edgeseg", edgeseg_e2e)],
    ]
    for contenders in phases:
        for i in range(warmup + iterations):
            k = i % len(frames)
            shift = i % len(contenders)
            for who, fn in contenders[shift:] + contenders[:shift]:
                parts = fn(k)
                if i >= warmup:
                    for part, value in parts.items():
                        record(f"{who}_{part}" if part else who, value)
    runner.deactivate()
    seg.close()
    for stage in ("pre", "infer", "post"):  # drop the warm-up frames
        samples[f"edgeseg_segmenter_{stage}"] = samples[f"edgeseg_segmenter_{stage}"][warmup:]

    summaries = {k: summarize(v).to_dict() for k, v in samples.items()}
    ratios = {}
    for stage, (base, ours) in COMPARISONS.items():
        r = bootstrap_ratio(samples[base], samples[ours])
        ratios[stage] = {"baseline": base, "measured": ours, "median_ratio": r.ratio, "ci95": [r.low, r.high],
                         "verdict": r.verdict().replace("B better", "edgeseg faster").replace("B worse",
                                                                                             "edgeseg slower"),
                         "p99_ratio": summaries[ours]["p99"] / summaries[base]["p99"]}
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
                         ("model_cpu", "model only, thread CPU time"), ("e2e_cpu", "end-to-end, thread CPU time"),
                         ("ort_session_cpu", "model only, bare ORT session.run, CPU time"),
                         ("segment_cpu", "  e2e part: pre+model+post, CPU time"),
                         ("effect_cpu", "  e2e part: blur+feather+blend, CPU time")):
        a, b = s[r[stage]["baseline"]], s[r[stage]["measured"]]
        ci = r[stage]["ci95"]
        rows.append((label, f"{a['median'] * 1e3:.2f} ms", f"{a['p99'] * 1e3:.2f} ms", f"{b['median'] * 1e3:.2f} ms",
                     f"{b['p99'] * 1e3:.2f} ms", f"{r[stage]['median_ratio']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"))
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
    from edgeseg import tune_process

    tune_process()  # as the edgeseg CLI does; the timings assume per-frame buffers keep their pages
    result = run(args.variant, args.threads, args.iterations, args.warmup, args.blur, args.frames)
    print(table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
