"""The step a ``decomposed`` export leaves after the engine, read from the sidecar and run by the Segmenter.

``edgeseg export --route decomposed`` stops a graph before an op TensorRT-RTX (and TensorRT 8.x) cannot
build and records the rest in the sidecar's ``extra.export.after_engine``. For a semantic model that is
the dense CRF of ``deeplabv3_crf``: the engine outputs the backbone's logits and
:func:`finish_dense_crf` turns them into the log probabilities the native graph (with its
``edgeseg.DenseCRF`` node) outputs. :func:`after_engine_step` reads the sidecar once;
:class:`~edgeseg.pipeline.Segmenter` calls the step on every frame, so ``edgeseg run`` on the engine or
the decomposed ONNX gives the native graph's masks. Instance splits (``maskrcnn_post``: a host ONNX
graph) are run by :class:`~edgeseg.instances.predict.InstanceDecoder` instead.

NumPy only (CuPy arrays stay on the GPU): a runtime-only install without PyTorch runs it.

>>> step = after_engine_step(Artifact.load("deeplabv3_crf.decomposed.onnx"))   # doctest: +SKIP
>>> log_q = step(logits, network_input)                                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from .artifact import Artifact
from .errors import ArtifactError, InputError

#: stages the semantic Segmenter runs; the instance decoder runs ``maskrcnn_post``
SEMANTIC_STAGES = ("dense_crf",)
INSTANCE_STAGES = ("maskrcnn_post",)


def after_engine_stage(artifact: Artifact) -> dict[str, Any] | None:
    """The sidecar's ``extra.export.after_engine`` (a dict), or None when the graph is the whole model."""
    stage = (artifact.extra.get("export") or {}).get("after_engine")
    if stage is None:
        return None
    if not isinstance(stage, dict) or not isinstance(stage.get("stage"), str):
        raise ArtifactError(f"{artifact.sidecar_path}: extra.export.after_engine is {stage!r}, expected a dict "
                            "with a 'stage' name (re-export with edgeseg export --route decomposed)")
    return stage


def finish_dense_crf(stage: dict[str, Any], logits, network_input):
    """Run a ``dense_crf`` stage: the engine's logits (N, C, H, W) and the network input (N, K, H, W), both
    NumPy or both CuPy -> log Q (N, C, H, W) float32, what the native graph's ``edgeseg.DenseCRF`` node gives.

    The image is the network input with the preprocessing inverted, ``(input * std + mean) * scale`` rounded
    to uint8; the mean field starts from softmax(logits) (unary energy -logits), as the CRF-as-RNN layer.
    """
    from .ops.crf import dense_crf
    from .ops.permutohedral import array_modules

    if stage.get("stage") != "dense_crf":
        raise InputError(f"after_engine.stage: got {stage.get('stage')!r}, expected 'dense_crf'")
    xp = array_modules(logits)[0]
    logits, network_input = xp.asarray(logits, dtype=xp.float32), xp.asarray(network_input, dtype=xp.float32)
    if logits.ndim != 4 or network_input.ndim != 4 or logits.shape[0] != network_input.shape[0] \
            or logits.shape[2:] != network_input.shape[2:]:
        raise InputError(f"logits, network_input: got shapes {logits.shape} and {network_input.shape}, expected "
                         "(N, C, H, W) and (N, K, H, W) of the same N, H, W")
    image = stage["image"]
    mean = xp.asarray(image["mean"], dtype=xp.float32).reshape(1, -1, 1, 1)
    std = xp.asarray(image["std"], dtype=xp.float32).reshape(1, -1, 1, 1)
    pixels = xp.clip(xp.rint((network_input * std + mean) * image["scale"]), 0, 255).astype(xp.uint8)
    out = xp.empty_like(logits)
    for i in range(logits.shape[0]):
        refined = dense_crf(-logits[i], pixels[i].transpose(1, 2, 0), unary="energy", **stage["params"])
        out[i] = xp.log(xp.maximum(refined, xp.finfo(xp.float32).tiny))
    return out


def _check_dense_crf(artifact: Artifact, stage: dict[str, Any]) -> None:
    where = f"{artifact.sidecar_path}: extra.export.after_engine"
    image = stage.get("image")
    if not isinstance(stage.get("params"), dict):
        raise ArtifactError(f"{where}.params is {stage.get('params')!r}, expected a dict of dense_crf parameters")
    if not isinstance(image, dict) or not all(k in image for k in ("mean", "std", "scale")):
        raise ArtifactError(f"{where}.image is {image!r}, expected a dict with 'mean', 'std' and 'scale'")
    channels = artifact.inputs[0].shape[1] if artifact.inputs and len(artifact.inputs[0].shape) == 4 else None
    if isinstance(channels, int) and not (len(image["mean"]) == len(image["std"]) == channels):
        raise ArtifactError(f"{where}.image has {len(image['mean'])} means and {len(image['std'])} stds, expected "
                            f"{channels} each (input {artifact.inputs[0].name!r} has {channels} channels)")
    wanted = stage.get("engine_output")
    if wanted is not None and artifact.outputs and wanted != artifact.outputs[0].name:
        raise ArtifactError(f"{where}.engine_output is {wanted!r}, but the graph's first output is "
                            f"{artifact.outputs[0].name!r}; expected the same name")


def after_engine_step(artifact: Artifact) -> Callable[[Any, Any], Any] | None:
    """The callable ``step(output, network_input) -> output`` a semantic model's sidecar asks to run after the
    engine, or None when there is none. Raises :class:`ArtifactError` for a stage this runtime does not know."""
    stage = after_engine_stage(artifact)
    if stage is None or stage["stage"] in INSTANCE_STAGES:
        return None
    if stage["stage"] not in SEMANTIC_STAGES:
        raise ArtifactError(f"{artifact.sidecar_path}: extra.export.after_engine.stage is {stage['stage']!r}, "
                            f"expected one of {', '.join(SEMANTIC_STAGES + INSTANCE_STAGES)} (a newer edgeseg "
                            "exported it?)")
    _check_dense_crf(artifact, stage)
    return partial(finish_dense_crf, stage)
