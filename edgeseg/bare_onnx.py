"""A default sidecar for an ONNX segmentation model that has none (a third-party model), read from its graph.

The graph gives the input's name, dtype, layout, channels and (when fixed) size, the output's name and channel
count (-> number of classes) and, when the ``onnx`` package is installed, whether the last op is a Softmax or
Sigmoid (-> probabilities). What a graph cannot say is assumed and announced in one line on the ``edgeseg``
logger: colour order (RGB for 3 channels), normalisation (``mean`` 0, ``std`` 1: ``x = pixel / 255``), class
names, and the size of a model with dynamic height/width (512x512). Override any of them::

    art = Artifact.from_onnx("deeplab.onnx", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                             classes=["background", "person"], size=(520, 520))
    seg = edgeseg.Segmenter(art)

The CLI takes the same as ``--mean``, ``--std``, ``--color``, ``--classes``, ``--input-size``, ``--output-kind``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .errors import ArtifactError, InputError
from .sidecar import COLOR_ORDERS, OUTPUT_KINDS, Preprocess, TensorSpec, class_count_problems, sidecar_path

DEFAULT_SIZE = (512, 512)  # for a graph with dynamic height/width
_PROB_OPS = {"Softmax", "Sigmoid"}
_PASS_THROUGH = {"Resize", "Upsample", "Identity", "Cast", "Slice"}  # ops after the activation that keep its meaning
_ONNX_TYPES = {1: "float32", 10: "float16", 11: "float64"}
_ANNOUNCED: set[tuple] = set()
log = logging.getLogger("edgeseg")


def fields_from_onnx(path: str | Path, *, classes: list[str] | None = None, mean: list[float] | None = None,
                     std: list[float] | None = None, color: str | None = None, size: tuple[int, int] | None = None,
                     output_kind: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The sidecar fields of a bare ``.onnx`` (keyword arguments of :class:`edgeseg.artifact.Artifact` less
    ``path``): read from the graph, the rest from these arguments or assumed; and the list of what was assumed.

    Raises :class:`ArtifactError` when the graph is not an NCHW image -> per-class-score model edgeseg can feed,
    naming what it found. :meth:`edgeseg.artifact.Artifact.from_onnx` validates the fields and announces.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ArtifactError(f"sidecar not found: {sidecar_path(path)}. Only an .onnx model can be used without its "
                            "sidecar (edgeseg reads its inputs and outputs from the graph)")
    if color is not None and color not in COLOR_ORDERS:
        raise InputError(f"color: got {color!r}, expected one of {COLOR_ORDERS}")
    if output_kind is not None and output_kind not in OUTPUT_KINDS:
        raise InputError(f"output_kind: got {output_kind!r}, expected one of {OUTPUT_KINDS}")
    try:
        inp, out, last_op = _read_graph(path)
        channels = _input_channels(path, inp, color)
    except ArtifactError as exc:
        raise ArtifactError(f"{exc} (no sidecar {sidecar_path(path).name} next to it, so edgeseg read the graph; "
                            "write the sidecar with `edgeseg export` or fix the model)") from exc
    assumed: list[str] = []
    if color is None:
        color = "gray" if channels == 1 else "rgb"
        if channels == 3:
            assumed.append("color rgb")
    height, width = inp.shape[2], inp.shape[3]
    if size is None:
        if isinstance(height, int) and isinstance(width, int):
            size = (height, width)
        else:
            size = DEFAULT_SIZE
            assumed.append(f"size {size[0]}x{size[1]} (dynamic in the graph)")
    if mean is None or std is None:
        mean = [0.0] * (1 if color == "gray" else 3) if mean is None else mean
        std = [1.0] * len(mean) if std is None else std
        assumed.append(f"mean {_numbers(mean)} std {_numbers(std)} (x = (pixel / 255 - mean) / std)")
    classes = _classes(path, out, classes, assumed)
    if output_kind is None:
        output_kind = "probs" if last_op in _PROB_OPS else "logits"
        if last_op is None:
            assumed.append("output logits (install onnx to read the graph's last op)")
    fields = {"inputs": [inp], "outputs": [out], "classes": classes, "output_kind": output_kind,
              "preprocess": Preprocess(size=tuple(size), color=color, mean=list(mean), std=list(std)),
              "extra": {"sidecar": "inferred from the ONNX graph"}}
    return fields, assumed


def _read_graph(path: Path) -> tuple[TensorSpec, TensorSpec, str | None]:
    """(first image input, first output, op type that produces the output or None when unknown)."""
    try:
        import onnx
    except ImportError:
        return _read_with_onnxruntime(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a damaged file
        raise ArtifactError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [_spec(v) for v in graph.input if v.name not in weights]
    outputs = [_spec(v) for v in graph.output]
    if not inputs or not outputs:
        raise ArtifactError(f"{path}: the graph has {len(inputs)} input(s) and {len(outputs)} output(s), expected "
                            "an image input and a per-class score output")
    producers = {name: node for node in graph.node for name in node.output}
    node = producers.get(outputs[0].name)
    for _ in range(8):  # walk back over resizes and casts to the activation
        if node is None or node.op_type not in _PASS_THROUGH:
            break
        node = producers.get(node.input[0])
    return inputs[0], outputs[0], node.op_type if node is not None else None


def _read_with_onnxruntime(path: Path) -> tuple[TensorSpec, TensorSpec, None]:
    from ._deps import require

    ort = require("onnxruntime", "reading an ONNX model without its sidecar")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise ArtifactError(f"{path}: ONNX Runtime cannot load this model ({type(exc).__name__}: {exc})") from exc
    return TensorSpec.from_ort(session.get_inputs()[0]), TensorSpec.from_ort(session.get_outputs()[0]), None


def _spec(value) -> TensorSpec:
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return TensorSpec(value.name, dims, _ONNX_TYPES.get(tensor.elem_type, f"onnx type {tensor.elem_type}"))


def _input_channels(path: Path, inp: TensorSpec, color: str | None) -> int:
    shape = inp.shape
    if inp.dtype not in ("float32", "float16"):
        raise ArtifactError(f"{path.name}: input {inp.name!r} is {inp.dtype}, expected float32 or float16 "
                            "(edgeseg feeds normalised float images)")
    if len(shape) != 4:
        raise ArtifactError(f"{path.name}: input {inp.name!r} has shape {shape}, expected 4 dims (batch, channels, "
                            "height, width)")
    if shape[1] not in (1, 3) and shape[3] in (1, 3):
        raise ArtifactError(f"{path.name}: input {inp.name!r} has shape {shape}, channels last (NHWC); edgeseg feeds "
                            "NCHW (batch, channels, height, width): export the model with a channels-first input")
    wanted = None if color is None else (1 if color == "gray" else 3)
    if isinstance(shape[1], int):
        if shape[1] not in (1, 3):
            raise ArtifactError(f"{path.name}: input {inp.name!r} has {shape[1]} channels, expected 1 (gray) or 3 "
                                "(colour)")
        if wanted is not None and wanted != shape[1]:
            raise InputError(f"color: got {color!r} ({wanted} channel(s)), but input {inp.name!r} of {path.name} "
                             f"takes {shape[1]}")
        return shape[1]
    return wanted or 3


def _classes(path: Path, out: TensorSpec, classes: list[str] | None, assumed: list[str]) -> list[str]:
    if len(out.shape) != 4:
        raise ArtifactError(f"{path.name}: output {out.name!r} has shape {out.shape}, expected per-class scores "
                            "(batch, classes, height, width); a model that ends in ArgMax must be exported without it")
    channels = out.shape[1]
    if classes is not None:
        problems = class_count_problems(channels, len(classes), f"output {out.name!r} of {path.name}")
        if problems:
            raise InputError(f"classes: {problems[0]}")
        return list(classes)
    if not isinstance(channels, int):
        raise InputError(f"classes: output {out.name!r} of {path.name} has a dynamic channel count "
                         f"({channels!r}), so the class names must be given (--classes a,b,... or classes=[...])")
    count = 2 if channels == 1 else channels
    names = ["background", "foreground"] if count == 2 else ["background"] + [f"class_{i}" for i in range(1, count)]
    assumed.append(f"classes {', '.join(names) if count <= 4 else f'background, class_1..class_{count - 1}'}")
    return names


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def announce(path: str | Path, fields: dict[str, Any], assumed: list[str]) -> None:
    """Log one line (once per model and assumptions) saying what :func:`fields_from_onnx` read and assumed."""
    path = Path(path)
    key = (str(path.resolve()), tuple(assumed))
    if key in _ANNOUNCED:
        return
    _ANNOUNCED.add(key)
    inp, out = fields["inputs"][0], fields["outputs"][0]
    read = (f"input {inp.name!r} ({', '.join(map(str, inp.shape))}) {inp.dtype}, output {out.name!r} "
            f"{out.shape[1]} channel(s) {fields['output_kind']}")
    guess = "; assumed " + ", ".join(assumed) if assumed else ""
    hint = (" (set with --color/--mean/--std/--classes/--input-size/--output-kind, Artifact.from_onnx(...), or a "
            f"sidecar {sidecar_path(path).name})") if assumed else ""
    log.warning("edgeseg: %s has no sidecar; read %s%s%s", path.name, read, guess, hint)
