"""PyTorch eager vs ONNX Runtime (CPU) latency for every zoo model, and the Segmenter's pre/post share.

For each model (HC18 configuration: 1 gray input channel, 2 classes, random weights — latency does not
depend on them) at 256x256 and 512x512:
  * eager: ``TorchRunner.infer`` (torch.inference_mode), ONNX Runtime: ``OnnxRuntimeRunner.infer`` on the
    model exported once with dynamic shapes; both get the same (1, 1, S, S) input, calls alternate
    (eager, ORT, eager, ...) so background load hits both alike; median / p99 after warm-up; ratio =
    ORT median / eager median (< 1: ONNX Runtime faster).
  * Segmenter (ONNX Runtime) on a real 800x540 HC18 frame, given as the PNG stores it ((H, W) gray, as
    ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` reads it) and as BGR (what decoded video and edgeseg's stream
    sources deliver): median pre / infer / post
    and the share of pre+post in the frame time. Post includes reading ``result.labels`` (a two-class
    Segmentation builds its frame-size planes on first read), so it is the cost of a frame's labels;
    ``post_foreground_ms`` is the same with the float foreground read instead (the selfie effects' read).

Run:
  .venv/bin/python benchmarks/backends.py                       # whole zoo, 1 thread each, ~5-10 min
  .venv/bin/python benchmarks/backends.py --models fastseg --sizes 256 --budget 5
Writes benchmarks/results/backends.json (and prints a markdown table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HC18_IMAGE = REPO.parent / "shared" / "data" / "hc18" / "images" / "000_HC.png"
RESULTS = REPO / "benchmarks" / "results" / "backends.json"
# Zoo models measured by their own benchmark: not semantic segmenters, so no Segmenter stage here.
ELSEWHERE = {"maskrcnn": "instance model (NMS and mask head in the graph): benchmarks/maskrcnn.py",
             "tflite_graph": "imported TFLite graphs (the selfie models): benchmarks/selfie.py"}


def _keep_going(count: int, elapsed: float, budget_s: float, min_iters: int, max_iters: int) -> bool:
    """Run for ``budget_s`` and at least ``min_iters`` calls, but never past 3x the budget (slow models
    stop after 3 samples) nor past ``max_iters``."""
    if count >= max_iters or (count >= 3 and elapsed > 3 * budget_s):
        return False
    return count < min_iters or elapsed < budget_s


def alternate(fn_a, fn_b, budget_s: float, warmup: int, min_iters: int, max_iters: int):
    """Call fn_a and fn_b alternately; return their latency samples (seconds) after ``warmup`` calls each."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    a, b = [], []
    start = time.perf_counter()
    while _keep_going(len(a), time.perf_counter() - start, budget_s, min_iters, max_iters):
        for fn, samples in ((fn_a, a), (fn_b, b)):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return a, b


def segmenter_stages(seg, frame, budget_s: float, warmup: int, min_iters: int, max_iters: int) -> dict:
    """Median stage times of ``seg(frame)``; post includes the first read of the result's frame-size plane.

    A two-class Segmentation builds its frame-size planes when they are read, by a route that depends on
    what is read, so there are two runs: reading ``labels`` (what overlays and measurements use: the share
    reported) and then reading ``foreground`` (what the selfie effects use: ``post_foreground_ms``). A real
    consumer reads the same plane every frame; alternating the two would mix their memory patterns.
    """
    runs = {}
    for read in ("labels", "foreground"):
        for _ in range(warmup):
            getattr(seg(frame), read)
        rows = []
        start = time.perf_counter()
        while _keep_going(len(rows), time.perf_counter() - start, budget_s / 2, min_iters, max_iters):
            result = seg(frame)
            t0 = time.perf_counter()
            getattr(result, read)
            rows.append({**result.timings, "post": result.timings["post"] + time.perf_counter() - t0})
        runs[read] = {k: np.array([r[k] for r in rows]) for k in ("pre", "infer", "post")}
    pre, infer, post = (runs["labels"][k] for k in ("pre", "infer", "post"))
    total = pre + infer + post
    return {"count": len(pre), "pre_ms": 1e3 * float(np.median(pre)), "infer_ms": 1e3 * float(np.median(infer)),
            "post_ms": 1e3 * float(np.median(post)), "total_ms": 1e3 * float(np.median(total)),
            "pre_post_share": float(np.median((pre + post) / total)),
            "post_foreground_ms": 1e3 * float(np.median(runs["foreground"]["post"]))}


def bench_model(name: str, sizes: list[int], args, workdir: Path, frames: dict[str, np.ndarray]) -> list[dict]:
    import torch
    from edgeseg.export.onnx_export import onnx_from_torch

    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.bench.stats import summarize
    from edgeseg.models import create_model
    from edgeseg.pipeline import Segmenter
    from edgeseg.runtime import OnnxRuntimeRunner, TorchRunner

    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_channels=1).eval()
    params = sum(p.numel() for p in model.parameters())
    multiple = getattr(model, "input_multiple", 1)
    base = Artifact(path=workdir / f"{name}.safetensors", model=name, model_kwargs=model.model_kwargs,
                    classes=["background", "head"],
                    preprocess=Preprocess(size=(sizes[0], sizes[0]), color="gray", mean=[0.5], std=[0.25]))
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exported = onnx_from_torch(model, base, workdir / f"{name}.onnx")
    export_s = time.perf_counter() - t0
    notes = [str(w.message) for w in caught if "ExportWarning" in type(w.message).__name__]
    domains = exported.extra["export"].get("custom_domains")
    if domains:  # e.g. CRF-as-RNN's edgeseg.DenseCRF: a TensorRT plugin, not runnable in ONNX Runtime
        return [{"model": name, "size": s, "skipped": f"custom-domain ONNX nodes {domains} (TensorRT plugin)"}
                for s in sizes]
    rows = []
    for size in sizes:
        side = -(-size // multiple) * multiple
        art = exported.with_path(exported.path)
        if isinstance(art.inputs[0].shape[2], int) and art.inputs[0].shape[2] != side:
            # Exported static (the model bakes its size in): export again at this size.
            base.preprocess.size = (side, side)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                art = onnx_from_torch(model, base, workdir / f"{name}_{side}.onnx")
        art.preprocess.size = (side, side)
        x = np.random.default_rng(0).normal(size=(1, 1, side, side)).astype(np.float32)
        torch_runner = TorchRunner(model, art.with_path(base.path), threads=args.threads)
        ort_runner = OnnxRuntimeRunner(art, threads=args.threads)
        with torch_runner, ort_runner:
            feed = {"input": x}
            eager, ort = alternate(lambda t=torch_runner, f=feed: t.infer(f), lambda o=ort_runner, f=feed: o.infer(f),
                                   args.budget, args.warmup, args.min_iters, args.max_iters)
            seg = Segmenter(ort_runner)
            stages = {kind: segmenter_stages(seg, frame, args.budget / 2, args.warmup, args.min_iters, args.max_iters)
                      for kind, frame in frames.items()}
        e, o = summarize(eager), summarize(ort)
        rows.append({"model": name, "size": side, "params": params, "export_s": export_s, "notes": notes,
                     "eager": e.to_dict(), "onnxruntime": o.to_dict(), "ratio_ort_to_eager": o.median / e.median,
                     "segmenter": stages})
        shares = "  ".join(f"pre+post {kind} {100 * st['pre_post_share']:4.1f} %" for kind, st in stages.items())
        print(f"  {name:<18} {side:>4}  eager {1e3 * e.median:8.2f} ms  ort {1e3 * o.median:8.2f} ms  "
              f"ratio {o.median / e.median:5.2f}  {shares}", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    kinds = next((list(r["segmenter"]) for r in rows if "segmenter" in r), ["gray"])
    first = kinds[0]
    head = (f"| model | size | params | eager median / p99 (ms) | ORT median / p99 (ms) | ORT / eager | "
            f"Segmenter pre / infer / post (ms), {first} frame | pre+post share, {' / '.join(kinds)} frame |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['size']} | | not run in ONNX Runtime: {r['skipped']} | | | | |")
            continue
        e, o, s = r["eager"], r["onnxruntime"], r["segmenter"][first]
        shares = " / ".join(f"{100 * r['segmenter'][kind]['pre_post_share']:.1f} %" for kind in kinds)
        lines.append(
            f"| {r['model']} | {r['size']} | {r['params'] / 1e6:.2f} M | {1e3 * e['median']:.2f} / {1e3 * e['p99']:.2f} | "
            f"{1e3 * o['median']:.2f} / {1e3 * o['p99']:.2f} | {r['ratio_ort_to_eager']:.2f} | "
            f"{s['pre_ms']:.2f} / {s['infer_ms']:.2f} / {s['post_ms']:.2f} | {shares} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None,
                        help=f"zoo names (default: all but {', '.join(ELSEWHERE)}, which have their own benchmarks)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[256, 512])
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for both backends (default 1: on a shared, oversubscribed CPU "
                             "PyTorch's OpenMP barriers make multi-threaded eager erratic)")
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per measurement after warm-up")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-iters", type=int, default=10)
    parser.add_argument("--max-iters", type=int, default=200)
    parser.add_argument("--frames", nargs="+", choices=("gray", "bgr"), default=["gray", "bgr"],
                        help="how the Segmenter gets the HC18 frame: gray (as the PNG stores it) and/or BGR (what "
                             "decoded video and edgeseg's stream sources deliver); default both")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from edgeseg import tune_process

    tune_process()  # as the edgeseg CLI does; the timings assume per-frame buffers keep their pages

    import cv2
    import torch

    from edgeseg.bench.environment import capture
    from edgeseg.models import list_models

    torch.set_num_threads(args.threads)
    names = args.models or [n for n in list_models() if n not in ELSEWHERE]
    frames, notes = {}, []
    for kind in dict.fromkeys(args.frames):
        gray = kind == "gray"
        frame = cv2.imread(str(HC18_IMAGE), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        if frame is None:
            frame = np.random.default_rng(0).integers(0, 256, (540, 800) if gray else (540, 800, 3), dtype=np.uint8)
            notes.append(f"synthetic 800x540 {kind} (HC18 not found)")
        else:
            notes.append(f"HC18 {HC18_IMAGE.name} {frame.shape[1]}x{frame.shape[0]} {kind}")
        frames[kind] = frame
    frame_note = ", ".join(notes)
    print(f"threads={args.threads}  models={names}  sizes={args.sizes}  frames={frame_note}", flush=True)
    rows, failures = [], {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                rows += bench_model(name, args.sizes, args, Path(tmp), frames)
            except Exception as exc:  # noqa: BLE001 - one model failing must not lose the others' numbers
                failures[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                print(f"  {name}: FAILED {failures[name]}", flush=True)
    elsewhere = {name: why for name, why in ELSEWHERE.items() if name in list_models() and not args.models}
    table = markdown(rows) + "".join(f"\n| {name} | | | measured elsewhere: {why} | | | | |"
                                     for name, why in elsewhere.items())
    print("\n" + table)
    report = {
        "benchmark": "backends", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": time.perf_counter() - started,
        "machine": capture({"torch.set_num_threads": args.threads, "ort.intra_op_num_threads": args.threads}),
        "config": {"sizes": args.sizes, "budget_s": args.budget, "warmup": args.warmup, "min_iters": args.min_iters,
                   "max_iters": args.max_iters, "frames": frame_note, "num_classes": 2, "in_channels": 1,
                   "command": " ".join([Path(sys.executable).name, *sys.argv])},
        "results": rows, "failures": failures, "measured_elsewhere": elsewhere, "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {os.path.relpath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
