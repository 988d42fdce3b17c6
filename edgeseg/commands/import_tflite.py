"""Import a TFLite image model (float or float16 weights) into edgeseg: a PyTorch checkpoint + sidecar,
and an ONNX artifact, ready for `edgeseg` runners, the Segmenter, fine-tuning and TensorRT.

No TensorFlow is needed: the flatbuffer is read with the `tflite` schema package and each operator
(CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, MediaPipe's Convolution2DTransposeBias, HARD_SWISH, pooling,
MEAN, RESIZE_*, ADD/MUL/..., LOGISTIC, SOFTMAX, RELU*, CONCATENATION, PAD) becomes its PyTorch equivalent with
TensorFlow's SAME padding and NHWC weights converted exactly. An unsupported operator stops the import
with its name and index.

Examples:
  edgeseg import-tflite selfie_segmentation.tflite -o models/ --classes background,person
  edgeseg import-tflite model.tflite -o out/ --name mymodel --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5
  edgeseg import-tflite model.tflite -o out/ --no-onnx        # checkpoint only (no ONNX export)
"""

from __future__ import annotations

HELP = "import a .tflite model as an edgeseg checkpoint + ONNX artifact"
NAME = "import-tflite"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="the .tflite file")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--name", help="file stem of the outputs (default: the .tflite name)")
    parser.add_argument("--classes", help="comma-separated class names (2 for a one-channel mask output)")
    parser.add_argument("--color", choices=["rgb", "bgr", "gray"], help="channel order the model expects "
                        "(default rgb, or gray for 1 channel)")
    parser.add_argument("--mean", help="per-channel mean after /255, comma-separated (default 0)")
    parser.add_argument("--std", help="per-channel std after /255, comma-separated (default 1)")
    parser.add_argument("--no-onnx", action="store_true", help="write the PyTorch checkpoint only")


def _floats(field: str, text: str | None):
    from ..errors import InputError

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise InputError(f"--{field}: got {text!r}, expected comma-separated numbers") from exc


def onnx_exporter():
    """The build stage's exporter for imported graphs (onnxslim, checks, dynamic batch), or None (the importer's
    plain export) where ``edgeseg.export`` is not installed."""
    try:
        from edgeseg.export.onnx_export import onnx_from_imported
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("edgeseg.export"):
            raise
        return None
    return onnx_from_imported


def run(args) -> int:
    from ..artifact import Preprocess
    from ..tflite.convert import graph_from_tflite
    from ..tflite.importer import import_tflite
    from ..tflite.reader import read_tflite

    preprocess = None
    if args.color or args.mean or args.std:
        graph, _ = graph_from_tflite(read_tflite(args.model))
        _, channels, height, width = graph["inputs"][0]["shape"]
        color = args.color or ("gray" if channels == 1 else "rgb")
        n = 1 if color == "gray" else 3
        preprocess = Preprocess(size=(height, width), color=color, mean=_floats("mean", args.mean) or [0.0] * n,
                                std=_floats("std", args.std) or [1.0] * n)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    paths = import_tflite(args.model, args.output, name=args.name, classes=classes, preprocess=preprocess,
                          onnx=not args.no_onnx, exporter=onnx_exporter())
    for kind, path in paths.items():
        print(f"{kind:<10} {path}  (+ {path.name}.json)")
    return 0
