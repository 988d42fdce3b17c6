"""Checkpoints: weights in ``.safetensors`` (no pickle, loading runs no code) + the JSON sidecar.

The sidecar is an :class:`edgeseg.artifact.Artifact` whose ``model`` and ``model_kwargs`` rebuild the
network through :func:`edgeseg.models.create_model`; ``preprocess``, ``classes`` and ``output_kind`` say
how to feed it and read it.

>>> model = create_model("fastseg", num_classes=2, in_channels=1)                      # doctest: +SKIP
>>> art = Artifact(path="hc18.safetensors", classes=["background", "head"],
...                preprocess=Preprocess(size=(256, 256), color="gray", mean=[0.5], std=[0.25]))
>>> save_checkpoint(model, "hc18.safetensors", art)                                    # doctest: +SKIP
>>> model, art = load_checkpoint("hc18.safetensors")                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._deps import require
from ..artifact import Artifact, Preprocess, TensorSpec
from ..errors import ArtifactError, InputError
from .registry import create_model

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _io_specs(in_channels: int, num_classes: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    return (
        [TensorSpec(INPUT_NAME, ["batch", in_channels, "height", "width"])],
        [TensorSpec(OUTPUT_NAME, ["batch", num_classes, "height", "width"])],
    )


def _default_artifact(path: Path, name: str | None, kwargs: dict | None) -> Artifact:
    """A sidecar for a checkpoint saved without one: generic class names, identity normalisation."""
    kwargs = kwargs or {}
    num_classes, in_channels = kwargs.get("num_classes", 2), kwargs.get("in_channels", 3)
    classes = ["background", "foreground"] if num_classes == 2 else [f"class_{i}" for i in range(num_classes)]
    pre = Preprocess(color="gray", mean=[0.0], std=[1.0]) if in_channels == 1 else Preprocess()
    return Artifact(path=path, classes=classes, preprocess=pre)


def _checkpoint_artifact(model, path: Path, artifact: Artifact | None) -> Artifact:
    """The sidecar to write: ``artifact`` completed with what the model knows about itself, checked."""
    name = getattr(model, "model_name", None)
    kwargs = getattr(model, "model_kwargs", None)
    if artifact is None:
        art = _default_artifact(path, name, kwargs)
    else:
        art = replace(artifact, path=path)
    if art.model and name and art.model != name:
        raise InputError(f"artifact.model: got {art.model!r}, but the model was built as {name!r}")
    if art.model_kwargs and kwargs and json.loads(json.dumps(art.model_kwargs)) != json.loads(json.dumps(kwargs)):
        raise InputError(f"artifact.model_kwargs: got {art.model_kwargs!r}, but the model was built with {kwargs!r}")
    art.model = art.model or name or ""
    art.model_kwargs = dict(art.model_kwargs or kwargs or {})
    if not art.model:
        raise InputError(
            "artifact.model: got '', expected a registry name; build the model with create_model() "
            "or set artifact.model and artifact.model_kwargs"
        )
    for key in ("num_classes", "in_channels"):
        if key not in art.model_kwargs:
            raise InputError(f"artifact.model_kwargs: missing {key!r}, expected everything create_model needs")
    try:
        json.dumps(art.model_kwargs)
    except TypeError as exc:
        raise InputError(f"artifact.model_kwargs: got {art.model_kwargs!r}, expected JSON-serialisable values "
                         f"({exc})") from exc
    num_classes, in_channels = art.model_kwargs["num_classes"], art.model_kwargs["in_channels"]
    if len(art.classes) != num_classes:
        raise InputError(f"artifact.classes: got {len(art.classes)} names {art.classes}, expected num_classes="
                         f"{num_classes}")
    # Preprocess describes frames (gray or colour); other channel counts are fed by the caller directly.
    if in_channels in (1, 3) and art.preprocess.channels != in_channels:
        raise InputError(f"artifact.preprocess.color: got {art.preprocess.color!r} ({art.preprocess.channels} "
                         f"channels), expected {in_channels} channel(s) for in_channels={in_channels}")
    if not art.inputs or not art.outputs:
        art.inputs, art.outputs = _io_specs(in_channels, num_classes)
    art.output_kind = "logits"
    if "torch" not in art.versions:
        art.versions = {**art.versions, "torch": require("torch").__version__}
    return art


def save_checkpoint(model, path: str | Path, artifact: Artifact | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (``*.safetensors``) and its sidecar ``path + ".json"``.

    Args:
        model: a ``torch.nn.Module`` from :func:`create_model` (it knows its name and kwargs), or any
            registered model when ``artifact.model`` / ``artifact.model_kwargs`` are filled in.
        path: destination, must end in ``.safetensors``.
        artifact: sidecar contents (``preprocess``, ``classes``...); model name/kwargs and the
            input/output specs ``input (batch, in_channels, height, width)`` ->
            ``logits (batch, num_classes, height, width)`` are filled in when empty.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise InputError(f"checkpoint path: got {str(path)!r}, expected a file name ending in .safetensors")
    art = _checkpoint_artifact(model, path, artifact)
    safetensors_torch = require("safetensors.torch", "writing checkpoints")
    # Shared or non-contiguous tensors cannot be written by safetensors: store independent copies.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors_torch.save_file(state, str(path), metadata={"format": "pt", "model": art.model})
    art.save()
    return path


def load_checkpoint(path: str | Path, strict: bool = True) -> tuple[Any, Artifact]:
    """Rebuild the model named in ``path``'s sidecar and load its safetensors weights (no pickle).

    Returns:
        ``(model.eval(), artifact)``; the model maps ``(N, in_channels, H, W)`` -> ``(N, C, H, W)`` logits.

    Raises:
        ArtifactError: missing file or sidecar, unknown model name, or weights that do not match the
            model (missing/unexpected names, wrong shapes), with the names listed.
    """
    path = Path(path)
    artifact = Artifact.load(path)
    if artifact.format != "safetensors":
        raise ArtifactError(f"{path}: load_checkpoint reads .safetensors checkpoints, got a {artifact.format!r} "
                            "file; use edgeseg.runtime.create_runner for exported models")
    try:
        model = create_model(artifact.model, **artifact.model_kwargs)
    except InputError as exc:
        raise ArtifactError(f"{artifact.sidecar_path}: cannot rebuild model {artifact.model!r} ({exc})") from exc
    safetensors_torch = require("safetensors.torch", "reading checkpoints")
    try:
        state = safetensors_torch.load_file(str(path))
    except (require("safetensors").SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    _check_state(path, model.state_dict(), state, strict)
    model.load_state_dict(state, strict=strict)
    return model.eval(), artifact


def _check_state(path: Path, expected: dict, found: dict, strict: bool) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in sorted(set(expected) & set(found)) if found[k].shape != expected[k].shape]
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} missing weights (first: {missing[:5]})")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected weights (first: {unexpected[:5]})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (first: {wrong[:5]})")
    if problems:
        raise ArtifactError(f"{path}: weights do not match the model in its sidecar: " + "; ".join(problems)
                            + ". Was the checkpoint saved from a different model or model_kwargs?")
