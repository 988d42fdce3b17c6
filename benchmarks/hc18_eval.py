"""HC18 accuracy per head-size band: Dice, head-circumference error, and how well the trust flags find the errors.

Validation split: benchmarks/results/hc18_val_files.txt (stratified by head size into the bands < 150,
150-220, > 220 mm, grouped by patient, drawn only from patients the first shipped model never trained on;
benchmarks/hc18_split.py writes it), so every model listed is scored on patients it has not seen.
Metrics are computed at each image's original resolution (logits resized bilinearly, then argmax).

HC columns (mean absolute error against the CSV, mm): ``before`` fits the ellipse to the whole predicted
contour as drawn (the measurement before issue 24); ``skull only`` leaves out contour points on the image
edge; ``+ outline offset`` also measures 0.94 px inside the contour (HC18's masks run that far outside the
reference ellipse, ``HC18_OUTLINE_OFFSET_PX``, fitted on the training patients' masks); ``reported`` is
what ``edgeseg measure`` prints: all of that on the mean probability of the image and its mirror (flip
TTA). ``GT mask`` is the same fit on the ground-truth mask, before / now: the method's own error floor.
Dice columns: the model's argmax (one pass), the flip-averaged probability > 0.5, and the filled
ellipse ``measure_head`` fits (HC18 annotates each head as a filled ellipse, so this is the outline the
measurement reports). ``interval coverage``: share of scans whose error lies within the reported +- half-width. The
calibration table counts the scans ``measure_head`` flags and how many of the errors above 10 mm those
hold; the cut-head table crops the left 30 % of each head away and measures what remains. Latency: pre +
inference + resize back per image, after one warm-up, on whatever backend ``create_runner`` picks;
model-only FPS: ONNX Runtime, one thread, batch 1 at the model's input size, one pass and flip TTA
(two passes a frame), in alternating windows of the same run.

Run:  .venv/bin/python benchmarks/hc18_eval.py                        (first and current shipped ONNX; ~5 min)
      .venv/bin/python benchmarks/hc18_eval.py --model a.onnx b.onnx  (several models, one table)
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

from edgeseg.apps.ultrasound import head_probability, measure_head, read_hc_csv  # noqa: E402
from edgeseg.data import MaskSpec, load_image, read_mask  # noqa: E402
from edgeseg.data.hc18 import BANDS, band_of, read_file_list  # noqa: E402
from edgeseg.errors import InputError  # noqa: E402
from edgeseg.evaluate import open_predictor  # noqa: E402

ASSETS = REPO / "edgeseg" / "assets"
SPLIT = REPO / "benchmarks" / "results" / "hc18_val_files.txt"
BIG_ERROR_MM = 10.0
FIRST_COMMIT = "ca5b4cb"  # the first shipped HC18 model
HC_KEYS = ("hc_before", "hc_skull", "hc_offset", "hc_gt_raw", "hc_gt")


def first_shipped() -> Path:
    """The first shipped model (trained on patients 000-639), from git, as hc18_fastseg_v1.onnx in a temp folder."""
    import subprocess
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="hc18_v1_"))
    for suffix in ("", ".json"):
        blob = subprocess.run(["git", "show", f"{FIRST_COMMIT}:edgeseg/assets/hc18_fastseg.onnx{suffix}"], cwd=REPO,
                              check=True, capture_output=True).stdout
        (folder / f"hc18_fastseg_v1.onnx{suffix}").write_bytes(blob)
    return folder / "hc18_fastseg_v1.onnx"


def _hc(mask: np.ndarray, px: float, **kw) -> float:
    from edgeseg.apps.ultrasound import head_circumference_mm

    try:
        return head_circumference_mm(mask, px, **kw)
    except InputError:
        return float("nan")


def score_image(predict, image: np.ndarray, truth: np.ndarray, px: float) -> tuple[dict, float]:
    """Per-image row (Dice counts, HC variants, measurement and its features) and the plain prediction's seconds."""
    t0 = time.perf_counter()
    scores = predict(image)
    seconds = time.perf_counter() - t0
    prob = head_probability(scores)
    prob = (prob + head_probability(predict(np.ascontiguousarray(image[:, ::-1])))[:, ::-1]) / 2
    labels = scores.argmax(0).astype(np.uint8)
    gt = truth > 0
    row = {**_overlap(labels > 0, gt), **_overlap(prob > 0.5, gt, "_tta"),
           "hc_before": _hc(labels, px, exclude_border=False, outline_offset_px=0.0),
           "hc_skull": _hc(labels, px, outline_offset_px=0.0), "hc_offset": _hc(labels, px),
           "hc_gt_raw": _hc(truth, px, outline_offset_px=0.0), "hc_gt": _hc(truth, px)}
    row["dice"] = 2 * row["tp"] / max(1, 2 * row["tp"] + row["fp"] + row["fn"])
    try:
        m = measure_head(prob, px)
        row.update(_overlap(m.ellipse.mask(gt.shape), gt, "_ellipse"))
        row.update(measured_mm=m.hc_mm, half_width_mm=m.half_width_mm, border_fraction=m.border_fraction,
                   residual_mm=m.residual_mm, boundary_width_mm=m.boundary_width_mm, flags=list(m.flags))
    except InputError:
        row.update(measured_mm=float("nan"), half_width_mm=float("nan"), flags=["no_head"],
                   **_overlap(np.zeros_like(gt), gt, "_ellipse"))
    return row, seconds


def _overlap(pred: np.ndarray, gt: np.ndarray, suffix: str = "") -> dict:
    """Pixel counts ``tp``, ``fp``, ``fn`` (+ ``suffix``) of the bool mask ``pred`` against ``gt``."""
    return {f"tp{suffix}": int((pred & gt).sum()), f"fp{suffix}": int((pred & ~gt).sum()),
            f"fn{suffix}": int((~pred & gt).sum())}


def _pooled_dice(rows: list[dict], suffix: str = "") -> float:
    tp, fp, fn = (sum(r[k + suffix] for r in rows) for k in ("tp", "fp", "fn"))
    return 2 * tp / (2 * tp + fp + fn)


def score_cut(predict, image: np.ndarray, truth: np.ndarray, px: float, ref_mm: float) -> dict:
    """The same scan with the left 30 % of the head's width cropped away: a head cut by the image edge."""
    xs = np.nonzero(truth.any(0))[0]
    x = int(xs.min() + 0.3 * (xs.max() - xs.min()))
    cut = np.ascontiguousarray(image[:, x:])
    scores = predict(cut)
    labels = scores.argmax(0).astype(np.uint8)
    row = {"hc_all_points": _hc(labels, px, exclude_border=False), "hc_skull": _hc(labels, px)}  # both with offset
    try:
        row["flags"] = list(measure_head(head_probability(scores), px).flags)
    except InputError:
        row["flags"] = ["no_head"]
    return {k: (v - ref_mm if k.startswith("hc") else v) for k, v in row.items()}


def summarize_cut(rows: list[dict]) -> dict:
    out = {"images": len(rows), "flagged": int(sum(bool(r["flags"]) for r in rows)),
           "cut_by_border_flagged": int(sum("cut_by_border" in r["flags"] for r in rows))}
    for key in ("hc_all_points", "hc_skull"):
        err = np.abs([r[key] for r in rows])
        out[f"{key}_mae"] = float(np.nanmean(err))
    return out


def summarize(rows: list[dict]) -> dict:
    """Per band and overall: Dice (pooled pixels and mean per image), HC MAE per variant, worst error."""
    out = {}
    for label in [b[0] for b in BANDS] + ["all"]:
        part = [r for r in rows if label in ("all", r["band"])]
        if not part:
            continue
        entry = {"images": len(part), "dice": _pooled_dice(part), "dice_flip_tta": _pooled_dice(part, "_tta"),
                 "dice_ellipse": _pooled_dice(part, "_ellipse"),
                 "mean_image_dice": float(np.mean([r["dice"] for r in part]))}
        for key in HC_KEYS + ("measured_mm",):
            err = np.array([r[key] - r["hc_ref_mm"] for r in part])
            ok = ~np.isnan(err)
            entry[f"{key}_mae"] = float(np.abs(err[ok]).mean()) if ok.any() else None
            entry[f"{key}_missing"] = int((~ok).sum())
        err = np.abs(np.array([r["measured_mm"] - r["hc_ref_mm"] for r in part]))
        entry["reported_p95_mm"] = float(np.nanpercentile(err, 95))
        inside = np.abs(np.array([r["measured_mm"] - r["hc_ref_mm"] for r in part])) <= np.array(
            [r["half_width_mm"] for r in part])
        entry["interval_coverage"] = float(np.mean(inside))
        out[label] = entry
    return out


def calibration(rows: list[dict]) -> dict:
    """How many scans are flagged, and what share of the errors above 10 mm the flags catch (per flag too)."""
    err = np.array([abs(r["measured_mm"] - r["hc_ref_mm"]) if not np.isnan(r["measured_mm"]) else np.inf
                    for r in rows])
    flagged = np.array([bool(r["flags"]) for r in rows])
    big = err > BIG_ERROR_MM
    table = {"scans": len(rows), "flagged": int(flagged.sum()), "flagged_fraction": float(flagged.mean()),
             "errors_over_10mm": int(big.sum()), "errors_over_10mm_flagged": int((big & flagged).sum()),
             "mae_trusted_mm": float(err[~flagged & np.isfinite(err)].mean()) if (~flagged).any() else None,
             "mae_flagged_mm": float(err[flagged & np.isfinite(err)].mean()) if flagged.any() else None,
             "per_flag": {}}
    for name in sorted({f for r in rows for f in r["flags"]}):
        hit = np.array([name in r["flags"] for r in rows])
        table["per_flag"][name] = {"scans": int(hit.sum()), "errors_over_10mm": int((hit & big).sum())}
    return table


def model_fps(path: Path, seconds: float = 3.0, rounds: int = 3) -> tuple[float, float] | tuple[None, None]:
    """Frames per second of the model alone at its input size, ONNX Runtime, one thread, batch 1: one pass,
    and flip TTA (the frame and its mirror, two runs). Alternating windows, so both see the same load."""
    if path.suffix != ".onnx":
        return None, None
    import onnxruntime as ort

    from edgeseg.artifact import Artifact

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    pre = Artifact.load(path).preprocess
    x = np.random.default_rng(0).standard_normal((1, pre.channels, *pre.size)).astype(np.float32)
    mirrored = np.ascontiguousarray(x[..., ::-1])
    name = session.get_inputs()[0].name
    for _ in range(5):
        session.run(None, {name: x})
    frames, spent = [0, 0], [0.0, 0.0]
    for _ in range(rounds):
        for i, inputs in enumerate(((x,), (x, mirrored))):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds / rounds:
                for blob in inputs:
                    session.run(None, {name: blob})
                frames[i] += 1
            spent[i] += time.perf_counter() - t0
    return frames[0] / spent[0], frames[1] / spent[1]


def evaluate_model(path: Path, data: Path, names: list[str], threads: int, limit: int | None,
                   with_cut: bool = True) -> dict:
    predict, _ = open_predictor(path, threads)
    reference = read_hc_csv(data / "pixel_size_and_hc.csv")
    rows, times, cut = [], [], []
    for name in names[: limit or None]:
        ref = reference[name]
        image, truth = load_image(data / "images" / name), read_mask(data / "masks" / name, MaskSpec("binary"))
        row, seconds = score_image(predict, image, truth, ref.pixel_size_mm)
        rows.append({"file": name, "band": band_of(ref.hc_mm), "hc_ref_mm": ref.hc_mm, **row})
        times.append(seconds)
        if with_cut:
            cut.append(score_cut(predict, image, truth, ref.pixel_size_mm, ref.hc_mm))
    t = np.asarray(times[1:] or times) * 1e3
    fps, fps_flip = model_fps(path)
    return {"model": path.name, "path": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
            "bands": summarize(rows), "calibration": calibration(rows),
            "cut_heads": summarize_cut(cut) if cut else None,
            "latency_ms_median": float(np.median(t)), "latency_ms_p99": float(np.percentile(t, 99)),
            "model_fps_1_thread": fps, "model_fps_flip_tta_1_thread": fps_flip, "per_image": rows}


def print_tables(results: list[dict]) -> None:
    print("| model | band | images | Dice | Dice flip TTA | Dice fitted ellipse | mean image Dice | HC MAE before | skull only | + outline offset "
          "| + flip TTA (reported) | p95 | interval coverage | GT mask before / now |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for res in results:
        for band, e in res["bands"].items():
            print(f"| {res['model']} | {band} | {e['images']} | {e['dice']:.4f} | {e['dice_flip_tta']:.4f} | {e['dice_ellipse']:.4f} | {e['mean_image_dice']:.4f} | "
                  f"{e['hc_before_mae']:.2f} | {e['hc_skull_mae']:.2f} | {e['hc_offset_mae']:.2f} | "
                  f"{e['measured_mm_mae']:.2f} | {e['reported_p95_mm']:.2f} | {e['interval_coverage']:.0%} | "
                  f"{e['hc_gt_raw_mae']:.2f} / {e['hc_gt_mae']:.2f} |")
    print("\n| model | scans | flagged | errors > 10 mm | of them flagged | MAE trusted | MAE flagged | per flag |")
    print("|---|---|---|---|---|---|---|---|")
    for res in results:
        c = res["calibration"]
        per = ", ".join(f"{k}: {v['scans']} ({v['errors_over_10mm']} > 10 mm)" for k, v in c["per_flag"].items())
        fmt = lambda v: f"{v:.2f}" if v is not None else "n/a"  # noqa: E731
        print(f"| {res['model']} | {c['scans']} | {c['flagged']} ({c['flagged_fraction']:.1%}) | "
              f"{c['errors_over_10mm']} | {c['errors_over_10mm_flagged']} | {fmt(c['mae_trusted_mm'])} | "
              f"{fmt(c['mae_flagged_mm'])} | {per or '-'} |")
    print("\n| model | heads cut by the left edge (30 % of width) | HC MAE all points | skull only | flagged "
          "| of them cut_by_border |")
    print("|---|---|---|---|---|---|")
    for res in results:
        c = res["cut_heads"]
        if c:
            print(f"| {res['model']} | {c['images']} | {c['hc_all_points_mae']:.2f} | {c['hc_skull_mae']:.2f} | "
                  f"{c['flagged']} | {c['cut_by_border_flagged']} |")
    print()
    for res in results:
        fps, flip = res["model_fps_1_thread"], res["model_fps_flip_tta_1_thread"]
        print(f"{res['model']}: latency {res['latency_ms_median']:.1f} / {res['latency_ms_p99']:.1f} ms (median / p99)"
              + (f", model alone {fps:.0f} FPS on one thread, {flip:.0f} FPS with flip TTA" if fps else ""))
        worst = sorted(res["per_image"], key=lambda r: -abs(np.nan_to_num(r["measured_mm"] - r["hc_ref_mm"], nan=1e9)))
        print("  worst: " + "; ".join(f"{r['file']} {r['band']} err {r['measured_mm'] - r['hc_ref_mm']:+.1f} mm "
                                      f"Dice {r['dice']:.3f} flags {r['flags'] or '-'}" for r in worst[:6]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="*",
                        help="model files (default: the first shipped model, from git, and the shipped one)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hc18"))
    parser.add_argument("--split", default=str(SPLIT), help="validation file list (one name a line)")
    parser.add_argument("--limit", type=int, default=None, help="first N validation images only")
    parser.add_argument("--threads", type=int, default=1, help="runner CPU threads (default 1)")
    parser.add_argument("--no-cut", action="store_true", help="skip the cut-head experiment")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hc18_eval.json"))
    args = parser.parse_args(argv)
    models = [Path(m) for m in args.model] if args.model else [first_shipped(), ASSETS / "hc18_fastseg.onnx"]
    names = read_file_list(args.split)
    results = []
    for path in models:
        t0 = time.perf_counter()
        results.append({**evaluate_model(path.resolve(), Path(args.data), names, args.threads, args.limit,
                                                       not args.no_cut),
                        "seconds": round(time.perf_counter() - t0, 1)})
    print_tables(results)
    from edgeseg.bench.environment import capture

    split = Path(args.split).resolve()
    out = {"benchmark": "hc18_eval", "split": str(split.relative_to(REPO)) if split.is_relative_to(REPO) else str(split),
           "bands_mm": {label: [low, None if high == float("inf") else high] for label, low, high in BANDS},
           "resolution": "original image size", "results": results, "environment": capture(threads={"runner_threads": args.threads})}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
