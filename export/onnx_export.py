"""PyTorch -> ONNX: the dynamo exporter, dynamic batch/height/width where the model allows, onnxslim,
``onnx.checker`` and the artifact sidecar.

>>> from edgeseg.export.onnx_export import onnx_from_torch
>>> model, art = load_checkpoint("hc18_fastseg.safetensors")          # doctest: +SKIP
>>> onnx_art = onnx_from_torch(model, art, "out/hc18_fastseg.onnx")   # doctest: +SKIP
>>> onnx_art.inputs[0].shape                                          # doctest: +SKIP
['batch', 1, 'height', 'width']
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import platform
import re
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg._deps import require
from edgeseg.artifact import Artifact, Preprocess
from edgeseg.errors import ArtifactError, InputError
from .slim import conv_from_conv_transpose

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 19
MAX_SIDE = 4096
log = logging.getLogger(__name__)


class ExportWarning(UserWarning):
    """The export went through with a compromise (static shapes, unsimplified graph); the message says why."""


class ExportError(ArtifactError):
    """The exporter could not turn the model into ONNX (the message carries the exporter's reason)."""


STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def custom_translation_table() -> dict:
    """Translations of edgeseg's custom ops for the dynamo exporter on the current route:
    :func:`edgeseg.ops.onnx_translations.translation_table` (DeformConv, RoiAlign: standard ONNX ops, or
    edgeseg's plugin nodes on the ``plugin`` route; NMS; the CRF-as-RNN layer's ``edgeseg.DenseCRF`` node, a
    custom-domain node for the TensorRT plugin that ONNX Runtime runs only with edgeseg's op library)."""
    from edgeseg.ops.onnx_translations import translation_table

    return translation_table()


def custom_domains(proto) -> list[str]:
    """Non-standard op domains used by the graph (nodes ONNX Runtime cannot run without a custom op)."""
    return sorted({n.domain for n in proto.graph.node if n.domain not in STANDARD_DOMAINS})


def input_multiple(model: Any) -> int:
    """Side lengths the model accepts must be multiples of this (``model.input_multiple``, default 1)."""
    value = getattr(model, "input_multiple", 1) or 1
    if not isinstance(value, int) or value < 1:
        raise InputError(f"model.input_multiple: got {value!r}, expected a positive int")
    return value


def fixed_input_size(model: Any) -> tuple[int, int] | None:
    """(H, W) for models that only take one size (``model.fixed_input_size``), else None."""
    size = getattr(model, "fixed_input_size", None)
    return tuple(size) if size else None


def example_size(model: Any, artifact: Artifact) -> tuple[int, int]:
    """The size traced at: the fixed size, else the preprocess size rounded up to ``input_multiple``."""
    fixed = fixed_input_size(model)
    if fixed:
        return fixed
    m = input_multiple(model)
    return tuple(-(-s // m) * m for s in artifact.preprocess.size)


def onnx_from_torch(model: Any, artifact: Artifact | None, out_path: str | Path, opset: int = DEFAULT_OPSET,
                    dynamic: bool = True, simplify: bool = True, route: str = "native") -> Artifact:
    """Export ``model`` to ``out_path`` (``.onnx``) and write its sidecar; return the new Artifact.

    Args:
        model: ``nn.Module`` mapping ``(N, C, H, W)`` float32 -> logits ``(N, K, H, W)``.
        artifact: the checkpoint's sidecar (preprocess, classes, output_kind, model, model_kwargs);
            ``None`` builds a default one from ``model.model_kwargs``.
        opset: ONNX opset (19+ for DeformConv).
        dynamic: dynamic batch/height/width (``height``/``width`` step by ``model.input_multiple``);
            falls back to static with a warning saying why when the model does not allow it.
        simplify: run onnxslim (constant folding, fusion); skipped with a warning if it fails.
        route: the ONNX form of edgeseg's custom ops, recorded in the sidecar (``extra.export.route``):
            ``native`` (ONNX DeformConv/RoiAlign, the DenseCRF node), ``decomposed`` (standard ops
            TensorRT-RTX and TensorRT 8.x parse; the graph stops before a CRF, which runs after the
            engine) or ``plugin`` (edgeseg's TensorRT plugin nodes); see :mod:`edgeseg.ops.routes`.
            ``auto``: ``decomposed`` where TensorRT-RTX is the TensorRT library here, else ``native``
            (:func:`~edgeseg.ops.routes.resolve_route`; the sidecar says why in ``extra.export.route_auto``).
    """
    from edgeseg.ops.routes import export_route, resolve_route

    requested = route
    route, why = resolve_route(route)
    torch = require("torch", "ONNX export")
    onnx = require("onnx", "ONNX export")
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise InputError(f"out_path: got {str(out_path)!r}, expected a file name ending in .onnx")
    if not isinstance(opset, int) or opset < 16:
        raise InputError(f"opset: got {opset!r}, expected an int >= 16 (19+ for DeformConv)")
    artifact = artifact or _artifact_from_model(model)
    if artifact.model in ("maskrcnn", "fcis", "bottomup"):  # instance outputs, post-processing in the graph
        from edgeseg.instances.export import export_artifact

        with export_route(route):
            export_artifact(model, artifact, out_path, opset=opset)
        exported = Artifact.load(out_path)
        exported.extra = {**exported.extra, "export": {**exported.extra.get("export", {}), "route": route}}
        if requested == "auto":
            exported.extra["export"]["route_auto"] = why
        exported.save()
        return exported
    channels = int(artifact.model_kwargs.get("in_channels", artifact.preprocess.channels))
    model = model.eval()
    size = example_size(model, artifact)
    if size != tuple(artifact.preprocess.size):
        warnings.warn(f"preprocess.size {tuple(artifact.preprocess.size)} changed to {size} in the ONNX sidecar: "
                      f"{type(model).__name__} needs " + (f"exactly {size}" if fixed_input_size(model) else
                                                         f"sides that are multiples of {input_multiple(model)}"),
                      ExportWarning, stacklevel=2)
    if dynamic and fixed_input_size(model):
        warnings.warn(f"{type(model).__name__} takes only {size[0]}x{size[1]} inputs (fixed_input_size): "
                      "height/width exported static, batch dynamic", ExportWarning, stacklevel=2)
    with export_route(route):
        proto, dims = _export_with_fallback(torch, model, channels, size, opset, dynamic, _engine_part(model, route))
    proto, rewritten = conv_from_conv_transpose(proto)
    if rewritten:
        log.info("rewrote %d stride-1 ConvTranspose nodes as Conv", rewritten)
    if simplify:
        proto = _slim(proto)
    _name_dims(proto, dims, fixed=fixed_input_size(model) is not None)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected the exported graph: {_reason(exc)}") from exc
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out_path))
    return _write_sidecar(artifact, out_path, proto, opset, dims, size, input_multiple(model), route,
                          _after_engine(model, route), why if requested == "auto" else None)


def onnx_from_imported(model: Any, artifact: Artifact, onnx_path: str | Path) -> Path:
    """An imported TFLite graph (fixed input size) -> ONNX through :func:`onnx_from_torch` at the importer's
    opset, batch dynamic: the ``exporter`` the CLI passes to :func:`edgeseg.tflite.importer.import_tflite`."""
    from edgeseg.tflite.importer import ONNX_OPSET

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # expected: imported graphs have a fixed input size (batch stays dynamic)
        warnings.filterwarnings("ignore", message=r".*takes only .* inputs \(fixed_input_size\)")
        return onnx_from_torch(model, artifact, onnx_path, opset=ONNX_OPSET).path


def _export_with_fallback(torch, model, channels: int, size: tuple[int, int], opset: int, dynamic: bool,
                          reference=None):
    """(proto, "dynamic" | "static"): dynamic shapes when they export and run right (against ``reference``,
    the module the graph computes; default ``model``), else static."""
    proto, dims = None, None
    if dynamic:
        try:
            proto, dims = _export(torch, model, channels, size, opset, dynamic=True), "dynamic"
            _check_other_size(proto, reference or model, channels, size)
        except Exception as exc:  # noqa: BLE001 - any exporter/runtime failure means: fall back to static
            warnings.warn(f"dynamic shapes failed for {type(model).__name__} ({_reason(exc)}); "
                          f"exporting static {size[0]}x{size[1]}, batch 1", ExportWarning, stacklevel=2)
            proto = None
    if proto is None:
        try:
            proto, dims = _export(torch, model, channels, size, opset, dynamic=False), "static"
        except Exception as exc:
            raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {_reason(exc)}") from exc
    return proto, dims


def _engine_part(model: Any, route: str):
    """The module a ``decomposed`` graph computes when the model leaves a stage to run after the engine."""
    part = getattr(model, "engine_part", None)
    return part() if route == "decomposed" and callable(part) else None


def _after_engine(model: Any, route: str) -> dict | None:
    """The stage a ``decomposed`` graph leaves to run after the engine (the CRF of ``deeplabv3_crf``), or None."""
    stage = getattr(model, "after_engine_stage", None)
    return stage() if route == "decomposed" and callable(stage) else None


to_onnx = onnx_from_torch  # the name the issue uses: edgeseg.export.to_onnx(model, artifact, out_path)


def onnx_from_checkpoint(checkpoint: str | Path, out_path: str | Path | None = None, **options: Any) -> Artifact:
    """Load a ``.safetensors`` checkpoint (zoo sidecar) and export it; ``out_path`` defaults to ``<stem>.onnx``."""
    from edgeseg.models import load_checkpoint

    checkpoint = Path(checkpoint)
    model, artifact = load_checkpoint(checkpoint)
    out_path = Path(out_path) if out_path else checkpoint.with_suffix(".onnx")
    return onnx_from_torch(model, artifact, out_path, **options)


# --- steps -------------------------------------------------------------------------------------------
def _export(torch, model, channels: int, size: tuple[int, int], opset: int, dynamic: bool):
    h, w = size
    batch = 2 if dynamic else 1   # torch.export specialises size-1 dims, so trace a dynamic batch at 2
    m = input_multiple(model)
    if dynamic and m > 1 and not fixed_input_size(model):  # likewise a side of one block (m * Dim == m): two
        h, w = max(h, 2 * m), max(w, 2 * m)
    x = torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(0))
    kwargs: dict[str, Any] = {"dynamo": True, "opset_version": opset, "input_names": [INPUT_NAME],
                              "output_names": [OUTPUT_NAME], "verbose": False, "optimize": True}
    table = custom_translation_table()
    if table:
        kwargs["custom_translation_table"] = table
    if dynamic:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=1024), **_spatial_dims(torch, model)},)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(model, (x,), **kwargs)
    return program.model_proto


def _spatial_dims(torch, model) -> dict[int, Any]:
    if fixed_input_size(model):
        return {}
    m = input_multiple(model)
    if m == 1:
        return {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    Dim = torch.export.Dim
    return {2: m * Dim("height_blocks", min=1, max=MAX_SIDE // m), 3: m * Dim("width_blocks", min=1, max=MAX_SIDE // m)}


def _check_other_size(proto, model, channels: int, size: tuple[int, int]) -> None:
    """Run the dynamic graph at another batch and size in ONNX Runtime and compare with PyTorch.

    Catches graphs that export "dynamic" but bake a traced size in (fixed pooling grids, reshapes).
    """
    torch = require("torch")
    ort = require("onnxruntime", "checking dynamic shapes")
    if custom_domains(proto):   # e.g. edgeseg.DenseCRF: runs in TensorRT (plugin), not in ONNX Runtime
        return
    m = input_multiple(model)
    h, w = size if fixed_input_size(model) else (size[0] + 2 * m, size[1] + m)
    x = torch.randn(3, channels, h, w, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    if got.shape != want.shape:
        raise ExportError(f"at input {tuple(x.shape)} ONNX gives {got.shape}, PyTorch {want.shape}")
    err = float(np.abs(got - want).max())
    if err > 1e-3:
        raise ExportError(f"at input {tuple(x.shape)} ONNX differs from PyTorch by {err:.2e} (a size is baked in)")


def _slim(proto):
    try:
        onnxslim = require("onnxslim", "graph simplification")
        with _quiet():
            slimmed = onnxslim.slim(proto)
    except Exception as exc:  # noqa: BLE001 - simplification is an optimisation; keep the unslimmed graph
        warnings.warn(f"onnxslim failed ({_reason(exc)}); keeping the unsimplified graph", ExportWarning, stacklevel=3)
        return proto
    return slimmed if slimmed is not None else proto


def _name_dims(proto, dims: str, fixed: bool) -> None:
    """Give the symbolic dims of the graph input/output readable names: batch, height, width."""
    if dims != "dynamic":
        return
    names = {0: "batch"} if fixed else {0: "batch", 2: "height", 3: "width"}
    for value in (proto.graph.input[0], proto.graph.output[0]):
        for axis, name in names.items():
            dim = value.type.tensor_type.shape.dim[axis]
            if not dim.HasField("dim_value"):
                dim.dim_param = name


def _graph_shape(value) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def _write_sidecar(artifact: Artifact, out_path: Path, proto, opset: int, dims: str, size, multiple: int,
                   route: str = "native", after_engine: dict | None = None, route_auto: str | None = None) -> Artifact:
    inputs = [{"name": v.name, "shape": _graph_shape(v), "dtype": "float32"} for v in proto.graph.input]
    outputs = [{"name": v.name, "shape": _graph_shape(v), "dtype": "float32"} for v in proto.graph.output]
    extra = dict(artifact.extra)
    extra["export"] = {"shapes": dims, "traced_size": list(size), "input_multiple": multiple,
                       "source": _relative_source(artifact.path, out_path), "route": route}
    if route_auto:
        extra["export"]["route_auto"] = route_auto
    if after_engine:
        extra["export"]["after_engine"] = after_engine
    if custom_domains(proto):
        extra["export"]["custom_domains"] = custom_domains(proto)
    grid_nodes = sampling_grid_nodes(proto)
    if grid_nodes:
        extra["export"]["fp32_nodes"] = grid_nodes
    preprocess = {**asdict(artifact.preprocess), "size": list(size)}
    exported = artifact.with_path(out_path, inputs=inputs, outputs=outputs, opset=opset, precision="fp32",
                                  versions=_versions(), engine=None, extra=extra, preprocess=preprocess)
    exported.save()
    return exported


#: ops that compute sampling coordinates (shapes, index arithmetic); the walk stops at anything else (a Conv)
_COORDINATE_OPS = {"Add", "Sub", "Mul", "Div", "Cast", "Range", "Reshape", "Concat", "Unsqueeze", "Squeeze", "Slice",
                   "Gather", "Shape", "Expand", "Transpose", "Constant", "ConstantOfShape", "Identity"}


def sampling_grid_nodes(proto) -> list[str]:
    """Names of the nodes that compute ``GridSample`` grids (the decomposed DeformConv/RoIAlign coordinates).

    Recorded as ``extra.export.fp32_nodes``: in FP16 a pixel coordinate near 256 is off by up to 1/16 px
    and a normalised one by 1/2048 of the side, so ``edgeseg quantize`` keeps these nodes in FP32.
    """
    producer = {out: node for node in proto.graph.node for out in node.output}
    found: dict[str, None] = {}
    stack = [node.input[1] for node in proto.graph.node if node.op_type == "GridSample" and len(node.input) > 1]
    while stack:
        node = producer.get(stack.pop())
        if node is None or not node.name or node.name in found or node.op_type not in _COORDINATE_OPS:
            continue
        found[node.name] = None
        stack.extend(node.input)
    return sorted(found)


def _relative_source(source: Path, out_path: Path) -> str:
    """The checkpoint's path relative to the ONNX file's folder (so a moved pair still finds each other)."""
    if not source.exists():
        return source.name
    return os.path.relpath(source.resolve(), out_path.resolve().parent)


def _versions() -> dict[str, str]:
    from edgeseg import __version__

    versions = {"edgeseg": __version__, "python": platform.python_version()}
    for name in ("torch", "onnx", "onnxruntime", "onnxslim", "onnxscript"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            continue
    return versions


def _artifact_from_model(model) -> Artifact:
    kwargs = dict(getattr(model, "model_kwargs", {}) or {})
    if "num_classes" not in kwargs or "in_channels" not in kwargs:
        raise InputError("artifact: got None and the model carries no model_kwargs with num_classes/in_channels; "
                         "pass the checkpoint's Artifact (load_checkpoint returns it)")
    k, c = kwargs["num_classes"], kwargs["in_channels"]
    classes = ["background", "foreground"] if k == 2 else [f"class_{i}" for i in range(k)]
    pre = Preprocess(color="gray", mean=[0.0], std=[1.0]) if c == 1 else Preprocess()
    return Artifact(path=Path(f"{getattr(model, 'model_name', 'model')}.safetensors"),
                    model=getattr(model, "model_name", ""), model_kwargs=kwargs, classes=classes, preprocess=pre)


def _reason(exc: BaseException) -> str:
    """The root cause in one or two lines (the exporter wraps it in pages of advice and colour codes)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip(" -") for line in text.strip().splitlines() if line.strip()]
    detail = " / ".join(lines[:2])[:500]
    return f"{type(exc).__name__}: {detail}"


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints and registration warnings (errors still raise)."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch._guards", "torch.fx", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
