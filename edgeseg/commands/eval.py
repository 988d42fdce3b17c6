"""Evaluate a model (checkpoint or exported ONNX) on images and masks at their original resolution.

Prints pixel accuracy and mean class accuracy (FCN's two formulas: sum_i n_ii / sum_i t_i and
mean_i n_ii / t_i), mean IoU, frequency-weighted IoU, per-class IoU, Dice, accuracy and boundary F-score
(boundary pixels matched within --boundary-width pixels), and the confusion matrix; with a head
circumference CSV (HC18's pixel_size_and_hc.csv, found automatically in --data) also the HC error in mm;
--grid writes a PNG of the worst and best images (per-image mean IoU) next to the ground truth.

A model trained with --layout class-folders is evaluated on the same layout: --data is then the folder
of class folders (e.g. ../shared/data/busi), and the sidecar's mask suffix and class names apply.

--split val (default) uses the validation files that `edgeseg train` recorded in the sidecar, so the
numbers are on patients the model never saw; --split all uses every pair.

Examples:
  edgeseg eval edgeseg/assets/hc18_fastseg.safetensors --data ../shared/data/hc18 --grid hc18_val.png
  edgeseg eval model.onnx --images data/img --masks data/ann --split all --json report.json
  edgeseg eval runs/busi.safetensors --data ../shared/data/busi --grid busi_val.png --json busi_val.json
"""

from __future__ import annotations

import json
from pathlib import Path

HELP = "score a model on images + masks: accuracy, mIoU, per-class IoU, Dice (+ HC error), example grid"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="a .safetensors checkpoint or an exported model (.onnx) with its sidecar")
    parser.add_argument("--data", default=None, help="folder holding images/ and masks/ (and pixel_size_and_hc.csv); "
                        "for a model trained on class folders, the folder of class folders")
    parser.add_argument("--images", default=None, help="images folder (default: DATA/images)")
    parser.add_argument("--masks", default=None, help="masks folder (default: DATA/masks)")
    parser.add_argument("--split", default="val", choices=("val", "all"), help="recorded validation files, or all")
    parser.add_argument("--mask-mode", default=None, choices=("binary", "index", "palette"),
                        help="mask decoding (default: as in training)")
    parser.add_argument("--mask-pattern", default=None, help="mask glob with {stem} (default: as in training)")
    parser.add_argument("--hc-csv", default=None, help="HC18-style CSV of pixel size and head circumference")
    parser.add_argument("--grid", default=None, help="write a PNG of the worst and best predictions here")
    parser.add_argument("--grid-count", type=int, default=4, help="worst and best images each in --grid (default 4)")
    parser.add_argument("--boundary-width", type=int, default=3,
                        help="boundary F-score tolerance in pixels at the original resolution (default 3)")
    parser.add_argument("--json", default=None, help="write the full report (incl. per-image rows) here")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the runner (default: backend's)")


def _print_report(report) -> None:
    m = report.metrics

    def f4(v):
        return "n/a" if v is None else f"{v:.4f}"

    print(f"{report.model}: {report.images} images ({report.split} split), metrics at original resolution")
    print(f"  pixel accuracy {f4(m['pixel_accuracy'])}   mean class accuracy {f4(m.get('mean_class_accuracy'))}   "
          f"mean IoU {f4(m['mean_iou'])}   frequency-weighted IoU {f4(m.get('frequency_weighted_iou'))}")
    print(f"  Dice (foreground, all pixels) {f4(m['mean_dice'])}   mean per-image Dice {f4(m['mean_image_dice'])}   "
          f"boundary F (foreground, {m.get('boundary_width_px')} px) {f4(m.get('mean_boundary_f'))}")
    print(f"  {'class':<16}{'IoU':>8}{'Dice':>8}{'acc':>8}{'bound F':>9}")
    for name in m["classes"]:
        print(f"  {name:<16}{f4(m['iou'][name]):>8}{f4(m['dice'][name]):>8}"
              f"{f4(m.get('class_accuracy', {}).get(name)):>8}{f4(m.get('boundary_f', {}).get(name)):>9}")
    print("  confusion matrix (rows: ground truth, columns: prediction):")
    width = max([len(str(v)) for row in m["confusion_matrix"] for v in row] + [len(n) for n in m["classes"]]) + 2
    print("  " + " " * 16 + "".join(f"{n:>{width}}" for n in m["classes"]))
    for name, row in zip(m["classes"], m["confusion_matrix"]):
        print(f"  {name:<16}" + "".join(f"{v:>{width}}" for v in row))
    if report.hc and report.hc["mean_abs_error_mm"] is None:
        print(f"  head circumference: no head found in any of the {report.images} predictions")
    elif report.hc:
        hc = report.hc
        print(f"  head circumference error: mean abs {hc['mean_abs_error_mm']:.2f} mm, median abs "
              f"{hc['median_abs_error_mm']:.2f} mm, p95 {hc['p95_abs_error_mm']:.2f} mm, bias {hc['mean_error_mm']:+.2f} mm"
              f" (ground-truth masks: {hc['gt_mask_mean_abs_error_mm']:.2f} mm; no head found in {hc['no_head_found']})")
    if report.infer_ms:
        print(f"  inference incl. pre/post: median {report.infer_ms['median']:.1f} ms, p99 {report.infer_ms['p99']:.1f} ms")


def run(args) -> int:
    from ..artifact import Artifact
    from ..errors import InputError
    from ..evaluate import evaluate

    data = Path(args.data) if args.data else None
    layout = Artifact.load(args.model).extra.get("train", {}).get("config", {}).get("layout")
    if layout == "class-folders":
        if data is None and not args.images:
            raise InputError("--data: not given, expected the folder of class folders the model was trained on")
        images, masks = args.images or data, None
    else:
        images = args.images or (data / "images" if data else None)
        masks = args.masks or (data / "masks" if data else None)
    if images is None or (masks is None and layout != "class-folders"):
        raise InputError("--data: not given, expected --data DIR (with images/ and masks/) or --images and --masks")
    hc_csv = args.hc_csv
    if hc_csv is None and data is not None and (data / "pixel_size_and_hc.csv").is_file():
        hc_csv = data / "pixel_size_and_hc.csv"
    report = evaluate(args.model, images, masks, split=args.split, hc_csv=hc_csv, grid=args.grid,
                      limit=args.limit, mask_mode=args.mask_mode, mask_pattern=args.mask_pattern, progress=True,
                      threads=args.threads, boundary_width=args.boundary_width, grid_count=args.grid_count)
    _print_report(report)
    if args.grid:
        print(f"example grid: {args.grid}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"report: {args.json}")
    return 0
