"""Measure fetal head circumference on ultrasound images with a head segmentation model.

Segments each image (default: the shipped HC18 model), fits an ellipse to the largest head region at
the image's own resolution and prints the circumference in mm. The pixel size comes from --pixel-size
or from an HC18-style CSV (--hc-csv), which also gives the reference value and the error.

Examples:
  edgeseg measure scan.png --pixel-size 0.0691
  edgeseg measure ../shared/data/hc18/images/000_HC.png --hc-csv ../shared/data/hc18/pixel_size_and_hc.csv \\
      --overlay out/000_HC_hc.png
"""

from __future__ import annotations

from pathlib import Path

HELP = "fetal head circumference (mm) from ultrasound images: segment, fit an ellipse, measure"
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "hc18_fastseg.safetensors"


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", help="ultrasound image files")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="head segmentation model (default: shipped HC18)")
    parser.add_argument("--pixel-size", type=float, default=None, help="pixel size in mm")
    parser.add_argument("--hc-csv", default=None, help="CSV with pixel size (and reference HC) per file name")
    parser.add_argument("--overlay", default=None, help="write the image with the fitted ellipse here (one image)")


def run(args) -> int:
    import cv2
    import numpy as np

    from ..apps.ultrasound import fit_head_ellipse, read_hc_csv
    from ..data import load_image
    from ..errors import InputError
    from ..evaluate import open_predictor
    from ..outputs import IMAGE_WRITE_SUFFIXES, ensure_writable, write_image

    reference = read_hc_csv(args.hc_csv) if args.hc_csv else {}
    if args.pixel_size is None and not reference:
        raise InputError("--pixel-size: not given, expected the pixel size in mm (or --hc-csv with it)")
    if args.overlay and len(args.images) != 1:
        raise InputError(f"--overlay: got {len(args.images)} images, expected exactly one")
    if args.overlay:
        ensure_writable(args.overlay, "--overlay", suffixes=IMAGE_WRITE_SUFFIXES)
    predict, _ = open_predictor(args.model)
    for name in args.images:
        path = Path(name)
        ref = reference.get(path.name)
        pixel = args.pixel_size if args.pixel_size is not None else (ref.pixel_size_mm if ref else None)
        if pixel is None:
            raise InputError(f"--hc-csv: no row for {path.name!r}, expected one (or pass --pixel-size)")
        image = load_image(path)
        labels = predict(image).argmax(0).astype(np.uint8)
        try:
            ellipse = fit_head_ellipse(labels)
        except InputError:
            print(f"{path.name}: no head found")
            continue
        hc = ellipse.perimeter * pixel
        line = f"{path.name}: HC {hc:.1f} mm (axes {ellipse.axes[0] * pixel:.1f} x {ellipse.axes[1] * pixel:.1f} mm)"
        if ref is not None:
            line += f", reference {ref.hc_mm:.1f} mm, error {hc - ref.hc_mm:+.1f} mm"
        print(line)
        if args.overlay:
            bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            box = (ellipse.center, ellipse.axes, ellipse.angle)
            cv2.ellipse(bgr, box, (0, 255, 255), 2, cv2.LINE_AA)
            cv2.putText(bgr, f"HC {hc:.1f} mm", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 255, 255), 2, cv2.LINE_AA)
            write_image(args.overlay, bgr, "--overlay")
            print(f"overlay: {args.overlay}")
    return 0
