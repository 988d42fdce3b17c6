"""Mask R-CNN vs FCIS vs bottom-up on HC18 composites: COCO mask AP, ONNX Runtime latency, params, scaling.

For each trained model (an exported ``.onnx`` with its sidecar and, next to it, the ``.safetensors`` it came
from, for the parameter count):
  * mask AP / AP50 / AP75 and box AP (pycocotools) on ``--composites`` validation canvases (2-4 real HC18 scans
    of validation patients, ``--canvas`` pixels, seed = training seed + 1), through InstanceSegmenter with ONNX
    Runtime, so host post-processing is included;
  * median frame latency (1 thread) at the model's input size (the sidecar's, 256 by default), and how it grows
    with the number of heads on the canvas: 1, 2, 4 and 8 heads (a 2 x 4 grid), ``--frames`` canvases each.

HC18 only (CC BY 4.0). Never point this at BUSI-trained models for a committed table.

Run (after training the three, e.g. ``edgeseg train-instances --model fcis --dataset hc18_composites ...``):
  .venv/bin/python benchmarks/instances_compare.py \\
      --models runs/hc18c_maskrcnn.onnx runs/hc18c_fcis.onnx runs/hc18c_bottomup.onnx --data ../shared/data/hc18
  .venv/bin/python benchmarks/instances_compare.py --models runs/hc18c_bottomup.onnx --composites 4 --frames 2
Writes benchmarks/results/instances/compare.json and compare.md (the markdown table).
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


def _params(onnx_path: Path) -> int | None:
    weights = onnx_path.with_suffix(".safetensors")
    if not weights.exists():
        return None
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        return int(sum(np.prod(f.get_slice(k).get_shape()) for k in f.keys()))


def _latency_by_heads(model: Path, items, canvas: int, frames: int, seed: int) -> dict[str, float]:
    from edgeseg.artifact import Preprocess
    from edgeseg.instances.composites import CompositeDataset
    from edgeseg.instances.segmenter import InstanceSegmenter

    seg = InstanceSegmenter(model, score_threshold=0.5, threads=1)
    out = {}
    for heads in (1, 2, 4, 8):
        ds = CompositeDataset(items, Preprocess(size=(canvas, canvas), color="gray"), length=frames, seed=seed,
                              heads=(heads, heads), grid=(2, 4))
        canvases = [ds.canvas_at(i)[0] for i in range(frames)]
        seg(canvases[0])  # warm-up
        times = []
        for c in canvases:
            t0 = time.perf_counter()
            seg(c)
            times.append(time.perf_counter() - t0)
        out[str(heads)] = round(float(np.median(times)) * 1000, 1)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="exported instance models (.onnx + sidecar)")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/hc18"), help="the HC18 folder")
    parser.add_argument("--composites", type=int, default=64, help="validation canvases for AP")
    parser.add_argument("--canvas", type=int, default=512, help="canvas side in pixels")
    parser.add_argument("--frames", type=int, default=10, help="canvases per head count for latency")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (split and canvases)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/instances"), help="results folder")
    args = parser.parse_args(argv)

    from edgeseg.artifact import Artifact
    from edgeseg.data.folder import Sample, split_by_group
    from edgeseg.instances.data import hc18_instances
    from edgeseg.instances.evaluate import evaluate_model_on_folder

    items = hc18_instances(args.data)
    by_name = {it.image.name: it for it in items}
    _, val = split_by_group([Sample(it.image, (it.instance_png,)) for it in items], r"^(\d{3})_", 0.2, args.seed)
    val_items = [by_name[s.name] for s in val]
    rows = []
    for model in (Path(m) for m in args.models):
        art = Artifact.load(model)
        ap = evaluate_model_on_folder(model, args.data, split="val", seed=args.seed, dataset="hc18_composites",
                                      composites=args.composites, canvas=args.canvas)
        row = {"method": art.model, "model": str(model), "input": list(art.preprocess.size),
               "mask_AP": round(ap["segm"]["AP"], 3), "mask_AP50": round(ap["segm"]["AP50"], 3),
               "mask_AP75": round(ap["segm"]["AP75"], 3), "box_AP": round(ap["bbox"]["AP"], 3),
               "canvases": ap["images"], "median_ms": round(ap["median_ms"], 1), "params": _params(model),
               "ms_by_heads": _latency_by_heads(model, val_items, args.canvas, args.frames, args.seed + 2)}
        rows.append(row)
        print(json.dumps(row))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    lines = ["| method | input | mask AP | AP50 | AP75 | box AP | params | ms (2-4 heads) | ms at 1 / 2 / 4 / 8 heads |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        scale = " / ".join(str(r["ms_by_heads"][k]) for k in ("1", "2", "4", "8"))
        lines.append(f"| {r['method']} | {r['input'][0]} | {r['mask_AP']:.3f} | {r['mask_AP50']:.3f} | "
                     f"{r['mask_AP75']:.3f} | {r['box_AP']:.3f} | {r['params']} | {r['median_ms']} | {scale} |")
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
