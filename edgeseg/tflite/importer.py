"""``.tflite`` -> edgeseg checkpoint (safetensors + sidecar) and ONNX artifact.

>>> paths = import_tflite("selfie_segmentation.tflite", "out/", classes=["background", "person"])  # doctest: +SKIP
>>> paths["checkpoint"], paths["onnx"]                                                               # doctest: +SKIP
(PosixPath('out/selfie_segmentation.safetensors'), PosixPath('out/selfie_segmentation.onnx'))
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._deps import require
from ..artifact import Artifact, Preprocess, TensorSpec
from ..errors import InputError
from ..model_cache import sha256_of
from .convert import graph_from_tflite
from .reader import read_tflite

INPUT_NAME = "input"
ONNX_OPSET = 18  # the dynamo exporter emits at least 18 (asking for 17 still yields 18)


def _output_kind(graph: dict[str, Any]) -> str:
    """``probs`` when the graph ends in a sigmoid (as MediaPipe's segmenters do) or a softmax, else ``logits``."""
    last = {node["output"]: node for node in graph["nodes"]}.get(graph["outputs"][0]["tensor"], {})
    if last.get("op") == "softmax":
        return "probs"
    return "probs" if last.get("op") == "activation" and last["attrs"]["kind"] == "sigmoid" else "logits"


def artifact_for_graph(path: Path, graph: dict[str, Any], classes: list[str] | None = None,
                       preprocess: Preprocess | None = None, output_kind: str | None = None,
                       extra: dict[str, Any] | None = None) -> Artifact:
    """The sidecar of an imported graph: (batch, C, H, W) input, (batch, K, H, W) output named by its kind.

    A one-channel output is a foreground map: ``classes`` then has 2 names and ``num_classes`` is 2.
    """
    (_, c_in, height, width), (_, c_out, out_h, out_w) = graph["inputs"][0]["shape"], graph["outputs"][0]["shape"]
    kind = output_kind or _output_kind(graph)
    n_classes = 2 if c_out == 1 else c_out
    classes = list(classes) if classes else (
        ["background", "foreground"] if n_classes == 2 else [f"class_{i}" for i in range(n_classes)])
    if len(classes) != n_classes:
        raise InputError(f"classes: got {len(classes)} names {classes}, expected {n_classes} for a model with "
                         f"{c_out} output channel(s)")
    if preprocess is None:
        # MediaPipe's selfie graph (ImageToTensorCalculator: keep_aspect_ratio false, float range [0, 1]) feeds
        # RGB scaled to [0, 1], stretched to the model size.
        color = "gray" if c_in == 1 else "rgb"
        preprocess = Preprocess(size=(height, width), resize="stretch", color=color,
                                mean=[0.0] * (1 if c_in == 1 else 3), std=[1.0] * (1 if c_in == 1 else 3))
    if tuple(preprocess.size) != (height, width):
        raise InputError(f"preprocess.size: got {tuple(preprocess.size)}, expected the graph's input size "
                         f"{(height, width)}")
    return Artifact(
        path=path, model="tflite_graph",
        model_kwargs={"num_classes": n_classes, "in_channels": c_in, "graph": graph},
        inputs=[TensorSpec(INPUT_NAME, ["batch", c_in, height, width])],
        outputs=[TensorSpec(kind, ["batch", c_out, out_h, out_w])],
        preprocess=preprocess, classes=classes, output_kind=kind, extra=dict(extra or {}),
    )


def import_tflite(tflite_path: str | Path, out_dir: str | Path, name: str | None = None,
                  classes: list[str] | None = None, preprocess: Preprocess | None = None,
                  onnx: bool = True, extra: dict[str, Any] | None = None,
                  exporter: Callable[[Any, Artifact, Path], Path] | None = None) -> dict[str, Path]:
    """Convert ``tflite_path`` into ``out_dir/<name>.safetensors`` (+ sidecar) and ``<name>.onnx`` (+ sidecar).

    Args:
        tflite_path: a float (or float16-weight) TFLite image model.
        out_dir: destination folder (created).
        name: file stem; default the ``.tflite`` stem.
        classes: class names (2 for a one-channel foreground output).
        preprocess: how frames become the input; default RGB in [0, 1] stretched to the input size.
        onnx: also export ONNX (needs the ``workstation`` extra: torch, onnx, onnxscript).
        extra: merged into the sidecars' ``extra`` (provenance, licence).
        exporter: writes the ONNX, ``exporter(model, artifact, onnx_path) -> onnx_path``; default
            :func:`onnx_from_module` (plain dynamo export, batch 1). ``edgeseg import-tflite`` and
            ``edgeseg fetch-selfie`` pass the build stage's :func:`edgeseg.export.onnx_export.onnx_from_imported`
            (onnxslim, ``onnx.checker``, dynamic batch); the library does not import ``edgeseg.export``.

    Returns:
        ``{"checkpoint": Path, "onnx": Path}`` (``onnx`` only when exported).
    """
    torch = require("torch", "importing TFLite models")
    from ..models import create_model, save_checkpoint

    tflite_path, out_dir = Path(tflite_path), Path(out_dir)
    graph, weights = graph_from_tflite(read_tflite(tflite_path))
    name = name or tflite_path.stem
    provenance = {"source": {"file": tflite_path.name, "sha256": sha256_of(tflite_path)}, **(extra or {})}
    ckpt = out_dir / f"{name}.safetensors"
    artifact = artifact_for_graph(ckpt, graph, classes, preprocess, extra=provenance)
    model = create_model("tflite_graph", **artifact.model_kwargs)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, ckpt, artifact)
    artifact.versions = Artifact.load(ckpt).versions
    artifact.save()  # save_checkpoint writes output_kind "logits"; an imported sigmoid graph gives probs
    paths = {"checkpoint": ckpt}
    if onnx:
        paths["onnx"] = (exporter or onnx_from_module)(model, artifact, out_dir / f"{name}.onnx")
    return paths


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints progress to stdout and logs optional-op warnings; keep the CLI output clean."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def onnx_from_module(model, artifact: Artifact, onnx_path: str | Path) -> Path:
    """Export the imported module to ONNX (opset 18, fixed input size) and write its sidecar."""
    torch = require("torch", "ONNX export")
    onnx = require("onnx", "ONNX export")
    onnx_path = Path(onnx_path)
    spec = artifact.inputs[0]
    example = torch.rand(*[d if isinstance(d, int) else 1 for d in spec.shape])
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporter():
        exported = torch.onnx.export(
            model, (example,), dynamo=True, input_names=[spec.name], output_names=[artifact.outputs[0].name],
            opset_version=ONNX_OPSET, verbose=False,
        )
    exported.save(str(onnx_path))
    onnx.checker.check_model(str(onnx_path))
    versions = {**artifact.versions, "onnx": onnx.__version__}
    static = [{"name": t.name, "shape": [d if isinstance(d, int) else 1 for d in t.shape], "dtype": t.dtype}
              for t in artifact.inputs + artifact.outputs]
    onnx_artifact = artifact.with_path(onnx_path, opset=ONNX_OPSET, versions=versions,
                                       inputs=static[:1], outputs=static[1:])
    onnx_artifact.save()
    return onnx_path
