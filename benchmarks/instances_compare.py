"""Mask R-CNN vs FCIS vs bottom-up on HC18 composites and BUSI lesions: COCO mask AP, ONNX Runtime latency, params.

``--dataset hc18_composites`` (default), for each trained model (an exported ``.onnx`` with its sidecar and, next
to it, the ``.safetensors`` it came from, for the parameter count):
  * mask AP / AP50 / AP75 and box AP (pycocotools) on ``--composites`` validation canvases (2-4 real HC18 scans
    of validation patients, ``--canvas`` pixels, seed = training seed + 1), through InstanceSegmenter with ONNX
    Runtime, so host post-processing is included;
  * median frame latency (1 thread) at the model's input size (the sidecar's, 256 by default), and how it grows
    with the number of heads on the canvas: 1, 2, 4 and 8 heads (a 2 x 4 grid), ``--frames`` canvases each.
Writes compare.json and compare.md (the markdown table). ``--overlap 0.5`` scores on composites whose heads
overlap (later heads occlude earlier ones) instead and writes compare_overlap.json / .md. ``--picture PATH``
only draws the first validation composite with ``--picture-heads`` heads (the AP canvases: seed + 1, in order),
ground truth and each model's instances side by side (score threshold 0.5), to PATH (PNG).

``--dataset busi`` trains each of ``--methods`` on BUSI lesion instances (one instance per mask file; 13 images
have 2-3 lesions) with the same budget (``--train-minutes``, ``--size``, encoder from the shipped HC18 fastseg,
1 thread, one after the other), exports it to ONNX under ``--work`` (runs/, ignored by git), and scores mask AP /
AP50 / AP75 and box AP at original resolution on the seeded validation split by image (``--seed``), plus the AP
on the validation images with 2 or more lesions. ``--models`` skips training and scores those ONNX files.
Writes compare_busi.json and compare_busi.md. BUSI is research-only: never commit the weights.

Run (after training the three, e.g. ``edgeseg train-instances --model fcis --dataset hc18_composites ...``):
  .venv/bin/python benchmarks/instances_compare.py \\
      --models runs/hc18c_maskrcnn.onnx runs/hc18c_fcis.onnx runs/hc18c_bottomup.onnx --data ../shared/data/hc18
  .venv/bin/python benchmarks/instances_compare.py --models runs/hc18c_bottomup.onnx --composites 4 --frames 2
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/instances_compare.py --dataset busi --data ../shared/data/busi \\
      --train-minutes 8 --size 256
  .venv/bin/python benchmarks/instances_compare.py --models runs/hc18c_{maskrcnn,fcis,bottomup}.onnx \\
      --picture benchmarks/results/instances/side_by_side.png
Results go to benchmarks/results/instances/.
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


def _ap_row(model: Path, ap: dict, count: str) -> dict:
    """The table row's model, AP and latency fields from ``evaluate_model_on_folder``'s report; ``count``: the
    name of the scored frames (images or canvases)."""
    from edgeseg.artifact import Artifact

    art = Artifact.load(model)
    return {"method": art.model, "model": str(model), "input": list(art.preprocess.size),
            "mask_AP": round(ap["segm"]["AP"], 3), "mask_AP50": round(ap["segm"]["AP50"], 3),
            "mask_AP75": round(ap["segm"]["AP75"], 3), "box_AP": round(ap["bbox"]["AP"], 3),
            count: ap["images"], "median_ms": round(ap["median_ms"], 1), "params": _params(model)}


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


def draw_side_by_side(image: np.ndarray, panels: list[tuple[str, np.ndarray, np.ndarray | None]],
                      panel: int = 320, alpha: float = 0.35) -> np.ndarray:
    """One BGR uint8 picture: for each (title, masks (K, H, W) bool, scores (K,) or None) a ``panel`` x ``panel``
    view of ``image`` (gray or BGR, H x W) with each instance as a translucent fill, a contour and its score (at
    its centroid), titled above; panels left to right. Instances overlapping one of the first panel's (IoU >= 0.5) take its
    colour, so the same head has the same colour in every panel."""
    import cv2

    from edgeseg.errors import InputError
    from edgeseg.instances.predict import _palette

    if not panels:
        raise InputError("panels: got none, expected at least one (title, masks, scores)")
    h, w = image.shape[:2]
    masks_all = []
    for title, masks, scores in panels:
        masks = np.asarray(masks, bool)
        if masks.ndim != 3 or masks.shape[1:] != (h, w):
            raise InputError(f"panels[{title!r}].masks: got shape {masks.shape}, expected (K, {h}, {w})")
        if scores is not None and len(scores) != len(masks):
            raise InputError(f"panels[{title!r}].scores: got {len(scores)} scores for {len(masks)} masks")
        masks_all.append(masks)
    ref = masks_all[0]
    colours = _palette(max(len(ref), 1) + sum(len(m) for m in masks_all[1:]))
    title_h, scale = 28, panel / max(h, w)
    size = (round(w * scale), round(h * scale))
    base = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    base = cv2.resize(base, size, interpolation=cv2.INTER_AREA)
    spare = len(ref)
    views = []
    for (title, _, scores), masks in zip(panels, masks_all):
        view = base.copy()
        small = [cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0 for m in masks]
        order = range(len(small)) if scores is None else np.argsort(scores, kind="stable")
        for i in order:  # lowest score first, so the surest instances end on top
            m = small[i]
            inter = (masks[i][None] & ref).reshape(len(ref), -1).sum(1) if len(ref) else np.zeros(0)
            union = (masks[i][None] | ref).reshape(len(ref), -1).sum(1) if len(ref) else np.zeros(0)
            iou = inter / np.maximum(union, 1)
            if len(iou) and iou.max() >= 0.5:
                c = colours[int(iou.argmax())]
            else:
                c, spare = colours[spare], spare + 1
            view[m] = (view[m] * (1 - alpha) + c.astype(np.float32) * alpha).astype(np.uint8)
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(view, contours, -1, tuple(int(v) for v in c), 2, cv2.LINE_AA)
            if scores is not None and m.any():
                ys, xs = np.nonzero(m)
                org = (int(xs.mean()) - 16, int(ys.mean()) + 5)  # centred on the mask's centroid
                for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
                    cv2.putText(view, f"{float(scores[i]):.2f}", org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thick,
                                cv2.LINE_AA)
        bar = np.full((title_h, size[0], 3), 255, np.uint8)
        cv2.putText(bar, f"{title} ({len(masks)})", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                    cv2.LINE_AA)
        views.append(np.concatenate([bar, view], 0))
    gap = np.full((title_h + size[1], 4, 3), 255, np.uint8)
    out = [views[0]]
    for v in views[1:]:
        out += [gap, v]
    return np.concatenate(out, 1)


def _picture(args, val_items) -> None:
    """Draw the first AP validation composite with ``--picture-heads`` heads: ground truth, then each model."""
    import cv2

    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.instances.composites import CompositeDataset
    from edgeseg.instances.segmenter import InstanceSegmenter

    ds = CompositeDataset(val_items, Preprocess(size=(args.canvas, args.canvas), color="gray"),
                          length=args.composites, seed=args.seed + 1, overlap=args.overlap)
    for index in range(len(ds)):
        canvas, target = ds.canvas_at(index)
        if len(target["masks"]) == args.picture_heads:
            break
    else:
        raise SystemExit(f"--picture-heads: no validation composite among {len(ds)} has {args.picture_heads} heads")
    panels = [(f"ground truth (composite {index})", target["masks"] > 0, None)]
    for model in (Path(m) for m in args.models):
        inst = InstanceSegmenter(model, score_threshold=0.5, threads=1)(canvas).instances
        panels.append((Artifact.load(model).model, inst.masks, inst.scores))
        print(f"{model}: {len(inst)} instances, scores {np.round(inst.scores, 3).tolist()}", flush=True)
    picture = draw_side_by_side(canvas, panels)
    Path(args.picture).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.picture), picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.picture} ({picture.shape[1]} x {picture.shape[0]}, composite {index}, "
          f"{Path(args.picture).stat().st_size // 1024} KB)")


def _busi_rows(args) -> list[dict]:
    """Train (unless ``--models``) and score each method on BUSI's seeded validation split by image."""
    from edgeseg.data.folder import Sample, split_by_group
    from edgeseg.instances.data import busi_instances
    from edgeseg.instances.evaluate import evaluate_model_on_folder

    items = busi_instances(args.data)
    _, val = split_by_group([Sample(it.image, ()) for it in items], None, 0.2, args.seed)
    val_names = {s.name for s in val}
    multi = [it for it in items if it.image.name in val_names and len(it.mask_files) > 1]
    if args.models:
        models, reports = [Path(m) for m in args.models], [None] * len(args.models)
    else:
        models, reports = [], []
        for method in args.methods:
            onnx, report = _train_busi(method, args)
            models.append(onnx)
            reports.append(report)
    rows = []
    for model, report in zip(models, reports):
        ap = evaluate_model_on_folder(model, args.data, split="val", seed=args.seed, dataset="busi")
        row = {**_ap_row(model, ap, "images"), "multi_lesion_images": len(multi)}
        if multi:
            sub = _busi_subset_ap(model, multi)
            row.update(multi_mask_AP=round(sub["AP"], 3), multi_mask_AP50=round(sub["AP50"], 3))
        if report is not None:
            row.update(train_minutes=args.train_minutes, train_s=report["train_s"], steps=report["steps"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _train_busi(method: str, args) -> tuple[Path, dict]:
    from edgeseg.instances.export import export_artifact
    from edgeseg.instances.train import InstanceTrainConfig, train_instances
    from edgeseg.models import load_checkpoint

    work = Path(args.work)
    out = work / f"busi_{method}.safetensors"
    cfg = InstanceTrainConfig(data=args.data, out=str(out), model=method, dataset="busi", size=args.size,
                              max_minutes=args.train_minutes, max_steps=args.max_steps, threads=1, seed=args.seed,
                              classes=["background", "lesion"],
                              init_encoder=str(REPO / "edgeseg/assets/hc18_fastseg.safetensors"))
    report = train_instances(cfg, log=lambda m: print(f"[{method}] {m}", flush=True))
    model, artifact = load_checkpoint(out)
    return export_artifact(model, artifact, out.with_suffix(".onnx")), report


def _busi_subset_ap(model: Path, items) -> dict:
    """Mask AP of ``model`` on these BUSI items at original resolution (score threshold 0)."""
    from edgeseg.instances.evaluate import score_frames
    from edgeseg.instances.segmenter import InstanceSegmenter

    seg = InstanceSegmenter(model, score_threshold=0.0, threads=1)
    return score_frames(seg, (it.load() for it in items))["segm"]


def _write_busi(rows: list[dict], args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_busi.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    lines = ["| method | input | train budget | steps | mask AP | AP50 | AP75 | box AP | AP (2-3 lesion images) | "
             "params | ms/frame |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        multi = f"{r['multi_mask_AP']:.3f} ({r['multi_lesion_images']} images)" if "multi_mask_AP" in r else "-"
        budget = f"{r['train_minutes']} min" if "train_minutes" in r else "-"
        lines.append(f"| {r['method']} | {r['input'][0]} | {budget} | {r.get('steps', '-')} | {r['mask_AP']:.3f} | "
                     f"{r['mask_AP50']:.3f} | {r['mask_AP75']:.3f} | {r['box_AP']:.3f} | {multi} | {r['params']} | "
                     f"{r['median_ms']} |")
    (out / "compare_busi.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hc18_composites", choices=("hc18_composites", "busi"),
                        help="HC18 validation composites (score --models) or BUSI lesions (train, then score)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="exported instance models (.onnx + sidecar); required for hc18_composites")
    parser.add_argument("--data", default=None, help="the HC18 folder (default ../shared/data/hc18) or the BUSI "
                                                     "folder (default ../shared/data/busi)")
    parser.add_argument("--methods", nargs="+", default=["maskrcnn", "fcis", "bottomup"],
                        choices=("maskrcnn", "fcis", "bottomup"), help="busi: the methods to train")
    parser.add_argument("--train-minutes", type=float, default=8.0, help="busi: training budget per method")
    parser.add_argument("--size", type=int, default=256, help="busi: square training input size")
    parser.add_argument("--max-steps", type=int, default=100000, help="busi: also stop each training here (smoke runs)")
    parser.add_argument("--work", default=str(REPO / "runs/busi_instances"),
                        help="busi: where the trained weights and ONNX files go (never commit them)")
    parser.add_argument("--composites", type=int, default=64, help="validation canvases for AP")
    parser.add_argument("--canvas", type=int, default=512, help="canvas side in pixels")
    parser.add_argument("--overlap", type=float, default=0.0,
                        help="hc18_composites: score on head crops packed so that neighbours overlap by this fraction "
                             "(writes compare_overlap.*; no latency-by-heads sweep)")
    parser.add_argument("--frames", type=int, default=10, help="canvases per head count for latency")
    parser.add_argument("--seed", type=int, default=0, help="the training seed (split and canvases)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/instances"), help="results folder")
    parser.add_argument("--picture", default=None, help="hc18_composites: only draw ground truth and each model's "
                                                        "instances on one validation composite to this PNG")
    parser.add_argument("--picture-heads", type=int, default=3, help="--picture: heads on the composite drawn")
    args = parser.parse_args(argv)
    if args.dataset == "busi":
        args.data = args.data or str(REPO.parent / "shared/data/busi")
        _write_busi(_busi_rows(args), args)
        return 0
    if not args.models:
        parser.error("--models: required with --dataset hc18_composites (the exported .onnx files to score)")
    args.data = args.data or str(REPO.parent / "shared/data/hc18")

    from edgeseg.data.folder import Sample, split_by_group
    from edgeseg.instances.data import hc18_instances
    from edgeseg.instances.evaluate import evaluate_model_on_folder

    items = hc18_instances(args.data)
    by_name = {it.image.name: it for it in items}
    _, val = split_by_group([Sample(it.image, (it.instance_png,)) for it in items], r"^(\d{3})_", 0.2, args.seed)
    val_items = [by_name[s.name] for s in val]
    if args.picture:
        _picture(args, val_items)
        return 0
    rows = []
    for model in (Path(m) for m in args.models):
        ap = evaluate_model_on_folder(model, args.data, split="val", seed=args.seed, dataset="hc18_composites",
                                      composites=args.composites, canvas=args.canvas, overlap=args.overlap)
        row = {**_ap_row(model, ap, "canvases"),
               "ms_by_heads": None if args.overlap else _latency_by_heads(model, val_items, args.canvas, args.frames,
                                                                          args.seed + 2)}
        rows.append(row)
        print(json.dumps(row))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "compare_overlap" if args.overlap else "compare"
    (out / f"{name}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    lines = ["| method | input | mask AP | AP50 | AP75 | box AP | params | ms (2-4 heads) | ms at 1 / 2 / 4 / 8 heads |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        scale = " / ".join(str(r["ms_by_heads"][k]) for k in ("1", "2", "4", "8")) if r["ms_by_heads"] else "-"
        lines.append(f"| {r['method']} | {r['input'][0]} | {r['mask_AP']:.3f} | {r['mask_AP50']:.3f} | "
                     f"{r['mask_AP75']:.3f} | {r['box_AP']:.3f} | {r['params']} | {r['median_ms']} | {scale} |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
