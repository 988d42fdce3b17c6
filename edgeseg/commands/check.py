"""Compare an exported ONNX model with its PyTorch checkpoint on real images.

Runs PyTorch and ONNX Runtime on the same preprocessed images (HC18 by default when present) and
reports the max absolute/relative logit difference, argmax agreement and mIoU difference. Exits 1 when
a tolerance is exceeded (defaults: max abs 1e-4, argmax agreement 99.9 %).

Examples:
  edgeseg check edgeseg/assets/hc18_fastseg.onnx
  edgeseg check out/model.onnx --checkpoint runs/best.safetensors --images photos/ --limit 32
  edgeseg check out/model.onnx --atol 1e-3 --min-agreement 0.99 --json > parity.json
"""

from __future__ import annotations

import json
from pathlib import Path

from ._bare_onnx import add_bare_onnx_options, model_with_assumptions

HELP = "check ONNX vs PyTorch parity on real images"


def add_arguments(parser) -> None:
    parser.add_argument("artifact", type=Path, help="exported .onnx model (sidecar next to it)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="PyTorch .safetensors it came from (default: the source named in the sidecar)")
    parser.add_argument("--images", type=Path, default=None, help="folder of images (default: HC18 images)")
    parser.add_argument("--limit", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--atol", type=float, default=1e-4, help="max abs logit difference allowed (default 1e-4)")
    parser.add_argument("--min-agreement", type=float, default=0.999,
                        help="minimum argmax agreement as a fraction (default 0.999)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_bare_onnx_options(parser)


def run(args) -> int:
    from ..errors import InputError
    from ..export.check import parity_report

    if args.limit < 1:
        raise InputError(f"--limit: got {args.limit}, expected a positive number of images")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise InputError(f"--min-agreement: got {args.min_agreement}, expected a fraction in [0, 1]")
    model = model_with_assumptions(args, args.artifact)  # an Artifact for a bare ONNX given --mean/--std/...
    report = parity_report(model, checkpoint=args.checkpoint, images=args.images, limit=args.limit,
                           atol=args.atol, min_agreement=args.min_agreement)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.passed else 1
