"""Mask R-CNN on this CPU: per-frame latency at 512x512, PyTorch vs ONNX Runtime (post-processing in the
graph), plus PyTorch-vs-ONNX Runtime parity on real HC18 frames (matched boxes, scores, mask IoU).

    .venv/bin/python benchmarks/maskrcnn.py --checkpoint runs/hc18_maskrcnn.safetensors

Writes benchmarks/results/maskrcnn.json. Latency is the model call on a preprocessed (1, 1, 512, 512) blob
(backbone, RPN, NMS, heads, detections; mask pasting excluded), repeats interleaved torch/ORT so load
changes on a shared machine hit both alike; 1 thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _match(a_boxes, b_boxes):
    """For each box of a, the IoU of the best b box and its index."""
    import torch

    from edgeseg.ops.boxes import box_iou
    if len(a_boxes) == 0 or len(b_boxes) == 0:
        return np.zeros(len(a_boxes)), np.zeros(len(a_boxes), int)
    iou = box_iou(torch.from_numpy(a_boxes), torch.from_numpy(b_boxes)).numpy()
    return iou.max(1), iou.argmax(1)


def parity(model, onnx_path, images, pre) -> dict:
    import onnxruntime as ort
    import torch

    from edgeseg.data.dataset import preprocess_image
    from edgeseg.models.maskrcnn.export import MaskRCNNDetections
    wrapper = MaskRCNNDetections(model)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    box_iou_min, score_diff, mask_iou, count_equal, n_det, labels_equal = 1.0, 0.0, [], 0, 0, True
    for image in images:
        blob = preprocess_image(image, pre)[None]
        with torch.no_grad():
            tb, ts, tl, tm = (t.numpy() for t in wrapper(torch.from_numpy(blob)))
        ob, os_, ol, om = sess.run(None, {"input": blob})
        count_equal += int(len(tb) == len(ob))
        best, idx = _match(tb, ob)
        n_det += len(tb)
        if len(tb):
            box_iou_min = min(box_iou_min, float(best.min()))
            score_diff = max(score_diff, float(np.abs(ts - os_[idx]).max()))
            labels_equal = labels_equal and bool((tl == ol[idx]).all())
            for i, j in enumerate(idx):
                a, b = tm[i] >= 0.5, om[j] >= 0.5
                union = (a | b).sum()
                mask_iou.append(float((a & b).sum() / union) if union else 1.0)
    return {"frames": len(images), "detections": n_det, "same_count_frames": count_equal,
            "min_matched_box_iou": box_iou_min, "max_score_abs_diff": score_diff, "labels_equal": labels_equal,
            "min_mask_iou": min(mask_iou) if mask_iou else None,
            "mean_mask_iou": float(np.mean(mask_iou)) if mask_iou else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "runs/hc18_maskrcnn.safetensors"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/hc18"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--parity-frames", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/maskrcnn.json"))
    args = parser.parse_args()

    from dataclasses import replace

    import onnxruntime as ort
    import torch

    import edgeseg.models.maskrcnn  # noqa: F401
    from edgeseg.bench.environment import capture
    from edgeseg.bench.stats import summarize
    from edgeseg.data.dataset import preprocess_image
    from edgeseg.instances.data import hc18_instances
    from edgeseg.models import load_checkpoint
    from edgeseg.models.maskrcnn.export import MaskRCNNDetections, onnx_from_maskrcnn

    torch.set_num_threads(1)
    model, artifact = load_checkpoint(args.checkpoint)
    items = hc18_instances(args.data)[-args.parity_frames:]
    images = [it.load()[0] for it in items]
    tmp = Path(tempfile.mkdtemp())
    trained = tuple(artifact.preprocess.size)
    onnx_trained = onnx_from_maskrcnn(model, tmp / "trained.onnx", size=trained)
    par = parity(model, onnx_trained, images, artifact.preprocess)

    size = (args.size, args.size)
    onnx_big = onnx_from_maskrcnn(model, tmp / "big.onnx", size=size)
    pre = replace(artifact.preprocess, size=size)
    blobs = [preprocess_image(im, pre)[None] for im in images]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_big), options, providers=["CPUExecutionProvider"])
    wrapper = MaskRCNNDetections(model)
    times = {"pytorch": [], "onnxruntime": []}

    def run_torch(blob):
        with torch.no_grad():
            wrapper(torch.from_numpy(blob))

    def run_ort(blob):
        sess.run(None, {"input": blob})

    runs = {"pytorch": run_torch, "onnxruntime": run_ort}
    for fn in runs.values():
        for i in range(args.warmup):
            fn(blobs[i % len(blobs)])
    load_before = os.getloadavg()
    for i in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn(blobs[i % len(blobs)])
            times[name].append(time.perf_counter() - t0)
    stats = {k: summarize(v).to_dict() for k, v in times.items()}
    ratio = stats["pytorch"]["median"] / stats["onnxruntime"]["median"]
    print(f"Mask R-CNN ({args.checkpoint}), {size[0]}x{size[1]} input, 1 thread, {args.repeats} interleaved repeats")
    print(f"{'backend':<14}{'median ms':>10}{'p99 ms':>10}{'fps':>8}")
    for k, s in stats.items():
        print(f"{k:<14}{s['median'] * 1e3:>10.1f}{s['p99'] * 1e3:>10.1f}{1 / s['median']:>8.1f}")
    print(f"PyTorch / ONNX Runtime median ratio: {ratio:.2f}  (load average {load_before[0]:.1f} -> "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"parity at {trained[0]}x{trained[1]} on {par['frames']} real HC18 frames: {par}")
    result = {"benchmark": "maskrcnn", "size": list(size), "repeats": args.repeats, "warmup": args.warmup,
              "latency_s": stats, "ratio_pytorch_over_onnxruntime": ratio, "parity": par,
              "load_average": {"before": load_before, "after": os.getloadavg()},
              "machine": capture({"torch_threads": 1, "ort_intra_op_threads": 1}),
              "checkpoint": args.checkpoint}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
