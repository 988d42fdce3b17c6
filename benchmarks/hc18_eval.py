"""Accuracy of the shipped HC18 model on the validation patients: Dice, mIoU, head-circumference error.

Metrics are computed at each image's original resolution (logits resized bilinearly, then argmax).
The baseline, measured in the same run on the same images, is the head circumference fitted to the
ground-truth masks: the error floor of the measurement method itself; the table reports the model's
error as a ratio to it. Latency is per image including preprocessing and resizing back (after one
warm-up image), on whatever backend ``create_runner`` picks for each file.

Run:  .venv/bin/python benchmarks/hc18_eval.py            (about a minute on 2 cores)
      .venv/bin/python benchmarks/hc18_eval.py --limit 20 (quick look)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseg.bench.environment import capture
from edgeseg.evaluate import evaluate

ASSETS = REPO / "edgeseg" / "assets"


def _models(args) -> list[Path]:
    if args.model:
        return [Path(m) for m in args.model]
    found = [ASSETS / "hc18_fastseg.safetensors", ASSETS / "hc18_fastseg.onnx"]
    return [p for p in found if p.exists()]


def _row(name: str, report) -> dict:
    m, hc = report.metrics, report.hc
    return {
        "model": name,
        "images": report.images,
        "dice": m["dice"][m["classes"][1]],
        "mean_image_dice": m["mean_image_dice"],
        "mean_iou": m["mean_iou"],
        "pixel_accuracy": m["pixel_accuracy"],
        "hc_mean_abs_mm": hc["mean_abs_error_mm"],
        "hc_median_abs_mm": hc["median_abs_error_mm"],
        "hc_p95_abs_mm": hc["p95_abs_error_mm"],
        "hc_bias_mm": hc["mean_error_mm"],
        "hc_no_head": hc["no_head_found"],
        "baseline_gt_mask_hc_mean_abs_mm": hc["gt_mask_mean_abs_error_mm"],
        "hc_error_ratio_to_baseline": (hc["mean_abs_error_mm"] / hc["gt_mask_mean_abs_error_mm"]
                                       if hc["mean_abs_error_mm"] is not None else None),
        "latency_ms_median": report.infer_ms.get("median"),
        "latency_ms_p99": report.infer_ms.get("p99"),
        "confusion_matrix": m["confusion_matrix"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="*", help="model files (default: the shipped hc18_fastseg checkpoint/ONNX)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hc18"))
    parser.add_argument("--limit", type=int, default=None, help="first N validation images only")
    parser.add_argument("--threads", type=int, default=1,
                        help="runner CPU threads (default 1: steadiest on a shared machine)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hc18_eval.json"))
    args = parser.parse_args(argv)
    data = Path(args.data)
    rows = []
    for path in _models(args):
        t0 = time.perf_counter()
        report = evaluate(path, data / "images", data / "masks", split="val",
                          hc_csv=data / "pixel_size_and_hc.csv", limit=args.limit, threads=args.threads)
        rows.append({**_row(path.name, report), "seconds": round(time.perf_counter() - t0, 1)})
    if not rows:
        print("no model found: build edgeseg/assets/hc18_fastseg.safetensors first (see README)", file=sys.stderr)
        return 1
    columns = [("model", "{}"), ("images", "{}"), ("dice", "{:.4f}"), ("mean_image_dice", "{:.4f}"),
               ("mean_iou", "{:.4f}"), ("hc_mean_abs_mm", "{:.2f}"), ("hc_median_abs_mm", "{:.2f}"),
               ("hc_p95_abs_mm", "{:.2f}"), ("baseline_gt_mask_hc_mean_abs_mm", "{:.2f}"),
               ("hc_error_ratio_to_baseline", "{:.1f}x"), ("latency_ms_median", "{:.1f}"), ("latency_ms_p99", "{:.1f}")]
    print("| " + " | ".join(c for c, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(fmt.format(row[c]) if row[c] is not None else "n/a" for c, fmt in columns) + " |")
    import torch

    result = {"benchmark": "hc18_eval", "split": "validation patients recorded in the checkpoint sidecar",
              "resolution": "original image size", "rows": rows,
              "environment": capture(threads={"runner_threads": args.threads, "torch_threads": torch.get_num_threads()})}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
