"""Write an FP16 or INT8 version of an FP32 ONNX artifact (precision lives in the ONNX file).

fp16: float16 weights and activations, float32 inputs/outputs, softmax/resize/reductions kept in FP32.
int8: Q/DQ ONNX (symmetric, per-channel weights) whose activation ranges are calibrated on real
images of your domain, preprocessed exactly as the sidecar says. Use images the model will see, not
your validation set. Both files run in ONNX Runtime on a CPU (measure them with
benchmarks/quantize.py) and build into TensorRT engines with `edgeseg build` on 10.3 .. 11.x.

Examples:
  edgeseg quantize edgeseg/assets/hc18_fastseg.onnx --precision fp16
  edgeseg quantize edgeseg/assets/hc18_fastseg.onnx --precision int8 \\
      --calibration ../shared/data/hc18/images --limit 64 --method percentile
  edgeseg build edgeseg/assets/hc18_fastseg.int8.onnx

Guarded (the file is written only if it meets --accept on your labelled images; the fewest layers
needed stay FP32, and the output says which and why; exit code 1 and no file when it cannot pass):
  edgeseg quantize edgeseg/assets/hc18_fastseg.onnx --precision int8 --data ../shared/data/hc18 \
      --accept "dice_drop<=0.005, hc_mm<=0.5"
"""

from __future__ import annotations

HELP = "write an FP16 or INT8 (Q/DQ, calibrated on real images) ONNX artifact"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="FP32 .onnx artifact (sidecar next to it)")
    parser.add_argument("--precision", required=True, choices=("fp16", "int8"),
                        help="fp16: weights and activations in half precision; int8: Q/DQ from --calibration images")
    parser.add_argument("-o", "--output", default=None, help="output .onnx (default MODEL.fp16.onnx / MODEL.int8.onnx)")
    calib = parser.add_argument_group("int8 calibration")
    calib.add_argument("--calibration", default=None, help="folder of real images (required for int8 without "
                       "--data; with --data: at most half of DATA/images, the rest judged on)")
    calib.add_argument("--glob", default="*.png", help="which files in --calibration (default *.png)")
    calib.add_argument("--limit", type=int, default=64, help="use N images, sampled with --seed (default 64)")
    calib.add_argument("--seed", type=int, default=0, help="seed of the calibration (and --data judging) image samples")
    calib.add_argument("--method", default=None, choices=("auto", "minmax", "entropy", "percentile"),
                       help="activation range estimate; auto (the default with --data) tries all three and "
                       "keeps the best by --accept (default without --data: percentile)")
    calib.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weight scales")
    guard = parser.add_argument_group("accuracy guard")
    guard.add_argument("--data", default=None, help="folder with images/ and masks/ (labelled images of your "
                       "domain; pixel_size_and_hc.csv too for hc_mm): judge the file against FP32 on them")
    guard.add_argument("--accept", default=None, help='acceptance rule, e.g. "miou_drop<=0.005" or '
                       '"dice_drop<=0.5%%, hc_mm<=0.5"; metrics: miou_drop, dice_drop, boundary_f_drop, hc_mm '
                       "(default with --data: miou_drop<=0.005)")
    guard.add_argument("--eval-limit", type=int, default=64, help="judge on N labelled images (default 64; 0: all)")
    guard.add_argument("--search", default="bisect", choices=("bisect", "sensitivity"),
                       help="how layers to keep in FP32 are found: bisect the graph order (default, fewest "
                       "trials) or rank every layer by its damage when reduced alone first")
    guard.add_argument("--max-kept", type=float, default=0.5,
                       help="give up when more than this share of layers must stay FP32 (default 0.5)")
    guard.add_argument("--hc-csv", default=None, help="head circumference references (default DATA/pixel_size_and_hc.csv)")
    guard.add_argument("--no-progress", action="store_true", help="no progress bar")


def calibration_images(folder, pattern: str, limit: int, seed: int):
    """``limit`` image paths sampled (reproducibly) from ``folder``/``pattern``."""
    from pathlib import Path

    import numpy as np

    from edgeseg.errors import InputError

    root = Path(folder)
    files = sorted(root.glob(pattern))
    if not files:
        raise InputError(f"--calibration: no files match {pattern!r} in {root}; expected real images")
    if limit < 1:
        raise InputError(f"--limit: got {limit}, expected a positive number of images")
    if len(files) > limit:
        pick = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
        files = [files[i] for i in sorted(pick)]
    return files


def run(args) -> int:
    from edgeseg.errors import InputError
    from edgeseg.export.quantize import quantize

    if args.data or args.accept:
        return run_guarded(args)
    if args.precision == "fp16":
        artifact = quantize(args.model, "fp16", args.output)
    else:
        if not args.calibration:
            raise InputError("--calibration: required for --precision int8, expected a folder of real images")
        images = calibration_images(args.calibration, args.glob, args.limit, args.seed)
        artifact = quantize(args.model, "int8", args.output, calibration=images, method=args.method or "percentile",
                            per_channel=not args.per_tensor)
    _print_written(artifact)
    return 0


def _print_written(artifact) -> None:
    info = artifact.extra.get("quantization", {})
    print(f"wrote {artifact.path} ({artifact.path.stat().st_size / 1e6:.2f} MB, {artifact.precision}) "
          f"and {artifact.sidecar_path.name}")
    if "calibration_samples" in info:
        print(f"  calibrated on {info['calibration_samples']} images from {info.get('calibration_source')}")
    if info.get("fp32_ops"):
        print(f"  kept in FP32: {', '.join(info['fp32_ops'])}")


def run_guarded(args) -> int:
    """``--data``/``--accept``: write the file only if it passes; print the verdict, per-class IoU and kept layers."""
    import sys
    from pathlib import Path

    from edgeseg.errors import InputError
    from edgeseg.export.precision_guard import guard_quantize

    if not args.data:
        raise InputError(f"--accept: got {args.accept!r} without --data; expected --data DIR with the labelled "
                         "images (images/, masks/) to judge the file on")
    if args.eval_limit < 0:
        raise InputError(f"--eval-limit: got {args.eval_limit}, expected 0 (all) or a positive number of images")
    calibration = None
    if args.precision == "int8" and args.calibration:
        calibration = calibration_images(args.calibration, args.glob, args.limit, args.seed)
    elif args.precision == "int8":  # from the labelled images: at most half, the rest is judged on
        folder = Path(args.data) / "images"
        half = max(1, len(list(folder.glob(args.glob))) // 2)
        calibration = calibration_images(folder, args.glob, min(args.limit, half), args.seed)
    result = guard_quantize(args.model, args.precision, args.data, args.accept or "miou_drop<=0.005", args.output,
                            calibration=calibration, method=args.method or "auto", search=args.search,
                            max_kept=args.max_kept, limit=args.eval_limit or None, seed=args.seed,
                            per_channel=not args.per_tensor, hc_csv=args.hc_csv, progress=not args.no_progress)
    for line in report_lines(result):
        print(line)
    if not result.passed:
        print(f"edgeseg quantize: {result.message}", file=sys.stderr)
        return 1
    _print_written(result.artifact)
    return 0


def report_lines(result) -> list[str]:
    """The guard's verdict as a few lines: rule, calibration choice, metrics and per-class IoU, kept layers."""
    report = result.report
    lines = [f"accept {', '.join(report['accept'])}: judged on {report['images']} labelled images of "
             f"{report['data']} (ONNX Runtime CPU{', Q/DQ computed as written' if result.precision == 'int8' else ''})"]
    calib = report.get("calibration")
    if calib:
        tried = "; ".join(f"{m} ({_fmt_worst(row, report)})" for m, row in calib["methods"].items())
        lines.append(f"calibration: {tried} -> {calib['chosen']}")
    columns = [("FP32", report["fp32"]), (result.precision.upper(), report["unguarded"])]
    if "guarded" in report and report["guarded"]["kept"]:
        columns.append(("guarded", report["guarded"]))
    lines.append(f"  {'':<18}" + "".join(f"{name:>10}" for name, _ in columns))
    for key, label in (("miou", "mIoU"), ("dice", "Dice"), ("boundary_f", "boundary F"), ("hc_mm_mean", "HC mean mm")):
        if key in report["fp32"]:
            lines.append(f"  {label:<18}" + "".join(f"{_num(row.get(key)):>10}" for _, row in columns))
    for name in report["fp32"]["iou"]:
        lines.append(f"  {'IoU ' + name:<18}" + "".join(f"{_num(row['iou'].get(name)):>10}" for _, row in columns))
    verdict = "passes" if report["unguarded"]["passed"] else "FAILS"
    lines.append(f"{result.precision.upper()} as is {verdict}: {_fmt_worst(report['unguarded'], report)}")
    if result.passed and result.kept:
        lines.append(f"kept in FP32: {len(result.kept)} of {report['layers']} layers "
                     f"({100 * report['kept_share']:.1f}%), {report['trials']} trials:")
        lines.extend(f"  {k['layer']}: {k['why']}" for k in result.kept)
    return lines


def _fmt_worst(row: dict, report: dict) -> str:
    return ", ".join(f"{rule.split('<')[0]} {row[rule.split('<')[0]]:.4g}" for rule in report["accept"])


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"
