"""Measure fetal head circumference on ultrasound images with a head segmentation model.

Segments each image and its mirror (default: the shipped HC18 model), averages the two head
probabilities, fits an ellipse to the skull outline of the largest head region at the image's own
resolution (contour points on the image edge are not skull and are left out) and prints the
circumference in mm with an interval: HC +- half-width, from where the model puts the outline at
probability 0.1 and 0.9. A measurement not to trust is flagged (cut_by_border, poor_fit,
unsure_boundary); with --fail-on-flag the command then exits with 3.
The pixel size comes from --pixel-size or from an HC18-style CSV (--hc-csv), which also gives the
reference value and the error. --json writes every measurement, interval and flag; --mask writes the
head as the filled fitted ellipse (HC18 annotates heads that way; on its validation split this mask's Dice
is higher than the model's own: benchmarks/hc18_eval.py).

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
    parser.add_argument("--mask", default=None,
                        help="write the head mask (filled fitted ellipse, 0/255) here (one image)")
    parser.add_argument("--no-tta", action="store_true", help="no mirrored second pass (half the time, wider errors)")
    parser.add_argument("--fail-on-flag", action="store_true", help="exit with 3 when a measurement is flagged")
    parser.add_argument("--json", default=None, help="write the measurements (HC, interval, flags) to this JSON file")


def run(args) -> int:
    import cv2
    import numpy as np

    from ..apps.ultrasound import head_probability, measure_head, read_hc_csv
    from ..data import load_image
    from ..errors import InputError
    from ..evaluate import open_predictor
    from ..outputs import IMAGE_WRITE_SUFFIXES, ensure_writable, write_image, write_json

    reference = read_hc_csv(args.hc_csv) if args.hc_csv else {}
    if args.pixel_size is None and not reference:
        raise InputError("--pixel-size: not given, expected the pixel size in mm (or --hc-csv with it)")
    if args.overlay and len(args.images) != 1:
        raise InputError(f"--overlay: got {len(args.images)} images, expected exactly one")
    if args.overlay:
        ensure_writable(args.overlay, "--overlay", suffixes=IMAGE_WRITE_SUFFIXES)
    if args.mask and len(args.images) != 1:
        raise InputError(f"--mask: got {len(args.images)} images, expected exactly one")
    if args.mask:
        ensure_writable(args.mask, "--mask", suffixes=IMAGE_WRITE_SUFFIXES)
    if args.json:
        ensure_writable(args.json, "--json")
    predict, artifact = open_predictor(args.model)
    records, any_flag = [], False
    for name in args.images:
        path = Path(name)
        ref = reference.get(path.name)
        pixel = args.pixel_size if args.pixel_size is not None else (ref.pixel_size_mm if ref else None)
        if pixel is None:
            raise InputError(f"--hc-csv: no row for {path.name!r}, expected one (or pass --pixel-size)")
        image = load_image(path)
        prob = head_probability(predict(image), artifact.output_kind)
        if not args.no_tta:
            mirrored = head_probability(predict(np.ascontiguousarray(image[:, ::-1])), artifact.output_kind)
            prob = (prob + mirrored[:, ::-1]) / 2
        record = {"file": path.name, "pixel_size_mm": pixel}
        try:
            m = measure_head(prob, pixel)
        except InputError:
            print(f"{path.name}: no head found")
            records.append({**record, "hc_mm": None, "flags": ["no_head"]})
            any_flag = True
            continue
        ellipse = m.ellipse
        line = (f"{path.name}: HC {m.hc_mm:.1f} mm +- {m.half_width_mm:.1f} "
                f"(axes {ellipse.axes[0] * pixel:.1f} x {ellipse.axes[1] * pixel:.1f} mm)")
        record.update(hc_mm=m.hc_mm, interval_mm=list(m.interval_mm), axes_mm=[a * pixel for a in ellipse.axes],
                      border_fraction=m.border_fraction, fit_residual_mm=m.residual_mm,
                      boundary_width_mm=m.boundary_width_mm, flags=list(m.flags))
        if ref is not None:
            line += f", reference {ref.hc_mm:.1f} mm, error {m.hc_mm - ref.hc_mm:+.1f} mm"
            record.update(reference_mm=ref.hc_mm, error_mm=m.hc_mm - ref.hc_mm)
        if m.flags:
            line += f"  CHECK: {', '.join(m.flags)}"
            any_flag = True
        print(line)
        records.append(record)
        if args.mask:
            write_image(args.mask, ellipse.mask(prob.shape).astype(np.uint8) * 255, "--mask")
            print(f"mask: {args.mask}")
        if args.overlay:
            bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            colour = (0, 255, 255) if m.trusted else (0, 0, 255)
            cv2.ellipse(bgr, (ellipse.center, ellipse.axes, ellipse.angle), colour, 2, cv2.LINE_AA)
            cv2.putText(bgr, m.describe(), (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 2, cv2.LINE_AA)
            write_image(args.overlay, bgr, "--overlay")
            print(f"overlay: {args.overlay}")
    if args.json:
        write_json(args.json, {"model": str(args.model), "measurements": records})
    return 3 if any_flag and args.fail_on_flag else 0
