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
"""

from __future__ import annotations

HELP = "write an FP16 or INT8 (Q/DQ, calibrated on real images) ONNX artifact"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="FP32 .onnx artifact (sidecar next to it)")
    parser.add_argument("--precision", required=True, choices=("fp16", "int8"))
    parser.add_argument("-o", "--output", default=None, help="output .onnx (default MODEL.fp16.onnx / MODEL.int8.onnx)")
    calib = parser.add_argument_group("int8 calibration")
    calib.add_argument("--calibration", default=None, help="folder of real images (required for int8)")
    calib.add_argument("--glob", default="*.png", help="which files in --calibration (default *.png)")
    calib.add_argument("--limit", type=int, default=64, help="use N images, sampled with --seed (default 64)")
    calib.add_argument("--seed", type=int, default=0)
    calib.add_argument("--method", default="percentile", choices=("minmax", "entropy", "percentile"),
                       help="activation range estimate (default percentile)")
    calib.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weight scales")


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

    if args.precision == "fp16":
        artifact = quantize(args.model, "fp16", args.output)
    else:
        if not args.calibration:
            raise InputError("--calibration: required for --precision int8, expected a folder of real images")
        images = calibration_images(args.calibration, args.glob, args.limit, args.seed)
        artifact = quantize(args.model, "int8", args.output, calibration=images, method=args.method,
                            per_channel=not args.per_tensor)
    info = artifact.extra.get("quantization", {})
    print(f"wrote {artifact.path} ({artifact.path.stat().st_size / 1e6:.2f} MB, {artifact.precision}) "
          f"and {artifact.sidecar_path.name}")
    if "calibration_samples" in info:
        print(f"  calibrated on {info['calibration_samples']} images from {info.get('calibration_source')}")
    if info.get("fp32_ops"):
        print(f"  kept in FP32: {', '.join(info['fp32_ops'])}")
    return 0
