"""Options for an ONNX model without its sidecar (run, bench, check): what its graph cannot say."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..sizes import parse_size

FLAGS = ("mean", "std", "color", "classes", "input_size", "output_kind")


def add_bare_onnx_options(parser, input_size: bool = True) -> None:
    """``--mean/--std/--color/--classes/--output-kind`` (and ``--input-size``) for a bare .onnx."""
    group = parser.add_argument_group(
        "ONNX model without a sidecar", "edgeseg reads inputs, outputs and classes count from the graph and assumes "
        "the rest (printed in one line); these set it instead. Refused for a model that has its sidecar.")
    group.add_argument("--mean", metavar="M[,M,M]", help="per-channel mean of pixel/255 (default 0)")
    group.add_argument("--std", metavar="S[,S,S]", help="per-channel std of pixel/255 (default 1)")
    group.add_argument("--color", choices=("rgb", "bgr", "gray"), help="channel order the model takes (default: rgb "
                       "for 3 channels)")
    group.add_argument("--classes", metavar="NAME,NAME,...", help="class names, class 0 first (default background, "
                       "class_1, ...)")
    if input_size:
        group.add_argument("--input-size", metavar="HxW", help="model input size when the graph's is dynamic "
                           "(default 512x512)")
    group.add_argument("--output-kind", choices=("logits", "probs"), help="what the output holds (default: probs "
                       "when the graph ends in Softmax/Sigmoid, else logits)")


def model_with_assumptions(args, model):
    """``model`` unchanged without these options, else the bare ONNX's Artifact built with them."""
    given = {name: getattr(args, name, None) for name in FLAGS if getattr(args, name, None) is not None}
    if not given:
        return model
    from ..artifact import Artifact, sidecar_path

    flags = ", ".join("--" + name.replace("_", "-") for name in given)
    path = Path(model)
    if sidecar_path(path).exists():
        raise InputError(f"{flags}: for an ONNX model without a sidecar, but {path} has {sidecar_path(path).name}, "
                         "which says how to feed it; edit that file instead")
    assume = {"color": given.get("color"), "output_kind": given.get("output_kind")}
    for name in ("mean", "std"):
        if name in given:
            assume[name] = _numbers(given[name], "--" + name)
    if "classes" in given:
        assume["classes"] = [c.strip() for c in given["classes"].split(",")]
        if not all(assume["classes"]):
            raise InputError(f"--classes: got {given['classes']!r}, expected comma-separated non-empty names")
    if "input_size" in given:
        assume["size"] = parse_size(given["input_size"], "--input-size")
    return Artifact.from_onnx(path, **{k: v for k, v in assume.items() if v is not None})


def _numbers(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{flag}: got {text!r}, expected comma-separated numbers such as 0.485,0.456,0.406") from None
