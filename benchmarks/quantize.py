"""FP32 vs FP16 vs INT8 ONNX of the HC18 model on the CPU through ONNX Runtime: accuracy and latency.

Accuracy: Dice (head) and mIoU on the validation patients recorded in the model's sidecar, at each
image's original resolution (``edgeseg.evaluate``), and the change against FP32. INT8 is calibrated
on training-split images only (never validation). Latency: the ONNX Runtime session alone at the
model's input size (batch 1), the three precisions interleaved round by round so machine load hits
all of them alike; median and p99 after warm-up, ratio of medians to FP32 (measured in the same run)
with a bootstrap 95% interval.

Run:  .venv/bin/python benchmarks/quantize.py                        (a few minutes on 2 cores)
      .venv/bin/python benchmarks/quantize.py --limit 20 --iterations 50   (quick look)
      .venv/bin/python benchmarks/quantize.py --model runs/hc18_fastseg.safetensors   (exported first)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseg.artifact import Artifact
from edgeseg.bench.environment import capture
from edgeseg.bench.stats import bootstrap_ratio, summarize

DEFAULT_MODELS = [REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx", REPO / "runs" / "hc18_fastseg.safetensors"]


def fp32_onnx(model: Path | None, workdir: Path) -> Artifact:
    """The FP32 ONNX artifact to quantize: the given/shipped ``.onnx``, or a checkpoint exported to ONNX."""
    candidates = [model] if model else [p for p in DEFAULT_MODELS if p.exists()]
    if not candidates:
        raise SystemExit("no model: pass --model, or ship edgeseg/assets/hc18_fastseg.onnx (see README)")
    path = Path(candidates[0])
    if path.suffix == ".onnx":
        return Artifact.load(path)
    from edgeseg.export.onnx_export import onnx_from_checkpoint

    return onnx_from_checkpoint(path, workdir / (path.stem + ".onnx"))


def calibration_files(art: Artifact, images: Path, count: int, seed: int) -> list[Path]:
    """``count`` training-split images (files not in the sidecar's validation list)."""
    val = set(art.extra.get("train", {}).get("split", {}).get("val_files") or [])
    if not val:
        raise SystemExit(f"{art.sidecar_path} records no validation files (extra.train.split.val_files)")
    train = [p for p in sorted(images.glob("*.png")) if p.name not in val]
    pick = np.random.default_rng(seed).choice(len(train), size=min(count, len(train)), replace=False)
    return [train[i] for i in sorted(pick)]


def accuracy(path: Path, data: Path, limit: int | None) -> dict:
    from edgeseg.evaluate import evaluate

    report = evaluate(path, data / "images", data / "masks", split="val", limit=limit)
    m = report.metrics
    return {"images": report.images, "dice_head": m["dice"][m["classes"][1]], "mean_iou": m["mean_iou"],
            "pixel_accuracy": m["pixel_accuracy"]}


def latency(paths: dict[str, Path], feed: np.ndarray, iterations: int, warmup: int, threads: int | None) -> dict:
    """Interleaved ORT session latency per precision: name -> list of seconds."""
    import onnxruntime as ort

    sessions = {}
    for name, path in paths.items():
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = next(iter(sessions.values())).get_inputs()[0].name
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, {input_name: feed})
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(iterations):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {input_name: feed})
            times[name].append(time.perf_counter() - start)
    return times


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="FP32 .onnx (or .safetensors to export)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "hc18")
    parser.add_argument("--calibration", type=int, default=64, help="training-split images for INT8 calibration")
    parser.add_argument("--method", default="percentile", choices=("minmax", "entropy", "percentile"))
    parser.add_argument("--limit", type=int, default=None, help="first N validation images only")
    parser.add_argument("--iterations", type=int, default=200, help="timed runs per precision")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: ORT's)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quantize.json")
    args = parser.parse_args(argv)

    from edgeseg.export.quantize import image_batches, quantize

    with tempfile.TemporaryDirectory(prefix="edgeseg-quantize-") as tmp:
        workdir = Path(tmp)
        fp32 = fp32_onnx(args.model, workdir)
        local = fp32.with_path(workdir / fp32.path.name)
        local.path.write_bytes(fp32.path.read_bytes())
        local.save()
        calib = calibration_files(local, args.data / "images", args.calibration, seed=0)
        t0 = time.perf_counter()
        fp16 = quantize(local, "fp16")
        t_fp16 = time.perf_counter() - t0
        t0 = time.perf_counter()
        int8 = quantize(local, "int8", calibration=calib, method=args.method)
        t_int8 = time.perf_counter() - t0
        paths = {"fp32": local.path, "fp16": fp16.path, "int8": int8.path}
        sizes = {k: p.stat().st_size for k, p in paths.items()}
        acc = {k: accuracy(p, args.data, args.limit) for k, p in paths.items()}
        feed = next(iter(image_batches(local, calib[:1])))
        times = latency(paths, feed, args.iterations, args.warmup, args.threads)

    rows = []
    base = acc["fp32"]
    for name in paths:
        lat = summarize(times[name])
        ratio = bootstrap_ratio(times["fp32"], times[name])
        rows.append({
            "precision": name, "file_mb": round(sizes[name] / 1e6, 3), **acc[name],
            "dice_delta": acc[name]["dice_head"] - base["dice_head"],
            "miou_delta": acc[name]["mean_iou"] - base["mean_iou"],
            "latency_ms_median": lat.median * 1e3, "latency_ms_p99": lat.p99 * 1e3,
            "latency_ratio_to_fp32": ratio.ratio, "ratio_ci95": [ratio.low, ratio.high],
        })
    header = ("| precision | file MB | val images | Dice (head) | Δ Dice | mIoU | Δ mIoU | median ms | p99 ms | "
              "× FP32 time (95% CI) |")
    print(header)
    print("|" + "---|" * 10)
    for r in rows:
        print(f"| {r['precision']} | {r['file_mb']:.2f} | {r['images']} | {r['dice_head']:.4f} | {r['dice_delta']:+.4f} | "
              f"{r['mean_iou']:.4f} | {r['miou_delta']:+.4f} | {r['latency_ms_median']:.2f} | {r['latency_ms_p99']:.2f} | "
              f"{r['latency_ratio_to_fp32']:.2f} ({r['ratio_ci95'][0]:.2f}-{r['ratio_ci95'][1]:.2f}) |")
    import onnxruntime as ort

    result = {
        "benchmark": "quantize",
        "model": _shown(args.model or next(p for p in DEFAULT_MODELS if p.exists())),
        "model_training_val_miou": fp32.extra.get("train", {}).get("val", {}).get("mean_iou"),
        "input_shape": list(feed.shape), "calibration_images": len(calib), "calibration_method": args.method,
        "calibration_split": "training patients (not in the sidecar's val_files)",
        "accuracy_split": "validation patients recorded in the sidecar, original resolution",
        "latency": f"ONNX Runtime CPU session only, batch 1, {args.warmup} warm-up + {args.iterations} interleaved runs",
        "quantize_seconds": {"fp16": round(t_fp16, 2), "int8": round(t_int8, 2)},
        "rows": rows,
        "environment": capture(threads={"ort_intra_op_threads": args.threads or "default",
                                        "onnxruntime": ort.__version__}),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
