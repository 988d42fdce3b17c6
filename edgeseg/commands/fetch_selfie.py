"""Obtain MediaPipe's selfie segmenter (Apache-2.0) and convert it for edgeseg, once.

Runs `pip download --no-deps mediapipe==0.10.21` (this platform's wheel, else any platform's: the
model files are identical), extracts only selfie_segmentation.tflite (256x256) and
selfie_segmentation_landscape.tflite (144x256), checks their pinned SHA-256, records them and the licence
in manifest.json, and imports both (PyTorch checkpoint + ONNX) into the cache:
$EDGESEG_HOME/models/selfie, or ~/.cache/edgeseg/models/selfie. Quick no-op when already done.

Examples:
  edgeseg fetch-selfie
  edgeseg fetch-selfie --wheel ~/Downloads/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl
  EDGESEG_HOME=/opt/edgeseg edgeseg fetch-selfie --force
"""

from __future__ import annotations

HELP = "obtain MediaPipe's selfie segmenter through pip and convert it (once)"
NAME = "fetch-selfie"


def add_arguments(parser) -> None:
    parser.add_argument("--wheel", help="use this local mediapipe-0.10.21 wheel instead of pip download")
    parser.add_argument("--home", help="cache folder (default $EDGESEG_HOME/models/selfie or "
                        "~/.cache/edgeseg/models/selfie)")
    parser.add_argument("--force", action="store_true", help="download and convert again")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run(args) -> int:
    import json
    from pathlib import Path

    from ..tflite.mediapipe import fetch_selfie, selfie_home
    from .import_tflite import onnx_exporter

    home = Path(args.home).expanduser() if args.home else selfie_home()
    manifest = fetch_selfie(home=home, wheel=Path(args.wheel).expanduser() if args.wheel else None,
                            force=args.force, exporter=onnx_exporter())
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        for variant, entry in manifest["models"].items():
            print(f"{variant:<10} {home / entry['onnx']}  sha256(tflite)={entry['tflite_sha256'][:16]}...")
    return 0
