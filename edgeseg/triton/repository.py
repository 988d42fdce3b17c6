"""Triton model repository for an edgeseg artifact: versioned folders and a validated ``config.pbtxt``.

Layout written by :func:`write_repository` (Triton's model repository convention)::

    REPO/<name>/config.pbtxt           platform onnxruntime_onnx | tensorrt_plan, I/O, batching, instances
    REPO/<name>/<version>/model.onnx   (or model.plan for a TensorRT engine)
    REPO/<name>/<version>/model.onnx.json   the edgeseg sidecar, for clients (preprocess, classes)

Input/output names, dims and dtypes come from the sidecar (``Artifact.inputs/outputs``). A dynamic
leading ``batch`` axis becomes Triton's implicit batch dim (``max_batch_size > 0``); any other dynamic
axis (``"height"``) becomes ``-1``. The text is checked by parsing it with Triton's own model-config
protobuf (``tritonclient.grpc.model_config_pb2``) when tritonclient is installed.

>>> from edgeseg.triton.repository import write_repository
>>> write_repository("edgeseg/assets/hc18_fastseg.onnx", "repo/", max_batch_size=8)   # doctest: +SKIP
PosixPath('repo/hc18_fastseg/config.pbtxt')
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .._deps import available, require
from ..artifact import Artifact, TensorSpec
from ..errors import ArtifactError, InputError

PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "engine": ("tensorrt_plan", "model.plan")}
INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU", "KIND_AUTO")
# NumPy dtype name -> Triton model-config data type
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
                "int32": "TYPE_INT32", "int16": "TYPE_INT16", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8",
                "uint16": "TYPE_UINT16", "bool": "TYPE_BOOL"}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Tensor names go into config.pbtxt between quotes: refuse anything that could end the string (ONNX-style
# names such as "input:0" or "model/conv_1" pass).
_TENSOR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/\-]*$")


@dataclass
class TritonModelConfig:
    """What goes into one ``config.pbtxt``. ``to_pbtxt()`` renders it; dims exclude the batch dim.

    Attributes:
        name: model name on the server (folder name).
        platform: ``"onnxruntime_onnx"`` or ``"tensorrt_plan"``.
        max_batch_size: 0 when the model has no batch axis Triton may use, else the largest batch.
        inputs / outputs: ``(name, triton data type, dims)``; ``-1`` marks a dynamic dim.
        dynamic_batching: enable Triton's dynamic batcher (needs ``max_batch_size > 0``).
        preferred_batch_sizes / max_queue_delay_us: dynamic batcher settings.
        instance_kind / instance_count: one ``instance_group`` entry (``KIND_CPU``, ``KIND_GPU``).
        gpus: GPU ids for ``KIND_GPU`` (empty: all).
    """

    name: str
    platform: str
    max_batch_size: int
    inputs: list[tuple[str, str, list[int]]]
    outputs: list[tuple[str, str, list[int]]]
    dynamic_batching: bool = True
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_delay_us: int = 100
    instance_kind: str = "KIND_CPU"
    instance_count: int = 1
    gpus: list[int] = field(default_factory=list)

    def to_pbtxt(self) -> str:
        lines = [f'name: "{self.name}"', f'platform: "{self.platform}"', f"max_batch_size: {self.max_batch_size}"]
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            for name, dtype, dims in tensors:
                lines += [f"{kind} [", "  {", f'    name: "{name}"', f"    data_type: {dtype}",
                          f"    dims: [ {', '.join(str(d) for d in dims)} ]", "  }", "]"]
        if self.dynamic_batching and self.max_batch_size > 0:
            lines.append("dynamic_batching {")
            if self.preferred_batch_sizes:
                lines.append(f"  preferred_batch_size: [ {', '.join(str(b) for b in self.preferred_batch_sizes)} ]")
            lines += [f"  max_queue_delay_microseconds: {self.max_queue_delay_us}", "}"]
        lines += ["instance_group [", "  {", f"    count: {self.instance_count}", f"    kind: {self.instance_kind}"]
        if self.gpus and self.instance_kind == "KIND_GPU":
            lines.append(f"    gpus: [ {', '.join(str(g) for g in self.gpus)} ]")
        lines += ["  }", "]"]
        return "\n".join(lines) + "\n"


def triton_config_from_artifact(artifact: Artifact, name: str | None = None, max_batch_size: int = 8,
                                dynamic_batching: bool = True, preferred_batch_sizes: list[int] | None = None,
                                max_queue_delay_us: int = 100, instance_kind: str | None = None,
                                instance_count: int = 1, gpus: list[int] | None = None) -> TritonModelConfig:
    """Build the Triton config of ``artifact`` (an ``.onnx`` or ``.engine`` with its sidecar).

    Args:
        name: model name on the server (default: the model file's stem).
        max_batch_size: largest batch when the sidecar's inputs have a dynamic leading ``batch`` axis
            (ignored, 0 in the config, when the batch axis is fixed; capped by a TensorRT engine's profile).
        preferred_batch_sizes: dynamic batcher's preferred sizes (default: powers of two from 2 up to
            the max; a size of 1 would let the batcher dispatch single requests at once).
        instance_kind: ``"KIND_CPU"`` / ``"KIND_GPU"`` (default: GPU for engines, CPU for ONNX).
    """
    fmt = artifact.format
    if fmt not in PLATFORMS:
        raise InputError(f"artifact: {artifact.path.name} is a {fmt!r} file, expected an .onnx or .engine/.plan "
                         "(export it first: `edgeseg export`)")
    name = name or artifact.path.stem
    if not _NAME.match(name) or set(name) == {"."}:
        raise InputError(f"name: got {name!r}, expected letters, digits, '_', '-' or '.' (a folder name, "
                         "not '.' or '..')")
    if not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise InputError(f"max_batch_size: got {max_batch_size!r}, expected an int >= 1")
    if not isinstance(instance_count, int) or instance_count < 1:
        raise InputError(f"instance_count: got {instance_count!r}, expected an int >= 1")
    if not isinstance(max_queue_delay_us, int) or max_queue_delay_us < 0:
        raise InputError(f"max_queue_delay_us: got {max_queue_delay_us!r}, expected an int >= 0")
    kind = instance_kind or ("KIND_GPU" if fmt == "engine" else "KIND_CPU")
    if kind not in INSTANCE_KINDS:
        raise InputError(f"instance_kind: got {kind!r}, expected one of {INSTANCE_KINDS}")
    if fmt == "engine" and kind == "KIND_CPU":
        raise InputError("instance_kind: got 'KIND_CPU' for a TensorRT engine, expected 'KIND_GPU' (plans run on GPUs)")
    if not artifact.inputs or not artifact.outputs:
        raise ArtifactError(f"{artifact.sidecar_path}: the sidecar lists no inputs/outputs; re-export the model "
                            "so that Triton's config can name them")
    batched = all(_is_batch_axis(spec) for spec in artifact.inputs + artifact.outputs)
    if batched:
        max_batch_size = min(max_batch_size, _engine_max_batch(artifact) or max_batch_size)
    else:
        max_batch_size = 0
    if preferred_batch_sizes is None:
        preferred_batch_sizes = [b for b in (2, 4, 8, 16, 32, 64) if b <= max_batch_size] if batched else []
    bad = [b for b in preferred_batch_sizes if not isinstance(b, int) or not 1 <= b <= max(max_batch_size, 1)]
    if bad:
        raise InputError(f"preferred_batch_sizes: got {preferred_batch_sizes!r}, expected ints in "
                         f"[1, max_batch_size={max_batch_size}]")
    return TritonModelConfig(
        name=name, platform=PLATFORMS[fmt][0], max_batch_size=max_batch_size,
        inputs=[_tensor(artifact, spec, batched) for spec in artifact.inputs],
        outputs=[_tensor(artifact, spec, batched) for spec in artifact.outputs],
        dynamic_batching=dynamic_batching and batched, preferred_batch_sizes=list(preferred_batch_sizes),
        max_queue_delay_us=max_queue_delay_us, instance_kind=kind, instance_count=instance_count,
        gpus=list(gpus or []),
    )


def parse_config(text: str):
    """Parse ``config.pbtxt`` text with Triton's ``ModelConfig`` protobuf; raise :class:`ArtifactError` if invalid."""
    model_config_pb2 = require("tritonclient.grpc.model_config_pb2", "checking Triton model configs")
    text_format = require("google.protobuf.text_format", "checking Triton model configs")
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ArtifactError(f"config.pbtxt does not parse as Triton's ModelConfig: {exc}") from exc


def check_config(text: str) -> None:
    """Parse ``text`` (see :func:`parse_config`) and check what Triton checks when it loads the model."""
    config = parse_config(text)
    where = f"config.pbtxt of {config.name!r}"
    if config.platform not in {p for p, _ in PLATFORMS.values()}:
        raise ArtifactError(f"{where}: platform {config.platform!r}, expected one of {sorted(PLATFORMS.values())}")
    if not config.input or not config.output:
        raise ArtifactError(f"{where}: needs at least one input and one output")
    for tensor in list(config.input) + list(config.output):
        if not tensor.dims or any(d == 0 or d < -1 for d in tensor.dims):
            raise ArtifactError(f"{where}: tensor {tensor.name!r} has dims {list(tensor.dims)}, expected "
                                "positive sizes or -1")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size < 1:
            raise ArtifactError(f"{where}: dynamic_batching needs max_batch_size >= 1, got {config.max_batch_size}")
        too_big = [b for b in config.dynamic_batching.preferred_batch_size if b > config.max_batch_size]
        if too_big:
            raise ArtifactError(f"{where}: preferred_batch_size {too_big} exceeds max_batch_size {config.max_batch_size}")


def write_repository(artifact_path: str | Path | Artifact, repo_dir: str | Path, name: str | None = None,
                     version: int = 1, overwrite: bool = False, validate: bool | None = None, **options) -> Path:
    """Write ``repo_dir/<name>/config.pbtxt`` and ``repo_dir/<name>/<version>/model.{onnx,plan}`` (+ sidecar).

    Args:
        artifact_path: ``model.onnx`` / ``model.engine`` with its sidecar, or its Artifact.
        repo_dir: the model repository folder (created; other models in it are left alone).
        version: the numeric version folder.
        overwrite: replace an existing ``<name>/<version>`` (else :class:`InputError`).
        validate: parse with Triton's protobuf (``None``: when tritonclient is installed).
        **options: :func:`triton_config_from_artifact` options (``max_batch_size``, ``dynamic_batching``,
            ``preferred_batch_sizes``, ``max_queue_delay_us``, ``instance_kind``, ``instance_count``, ``gpus``).

    Returns the path of the written ``config.pbtxt``.
    """
    artifact = artifact_path if isinstance(artifact_path, Artifact) else Artifact.load(artifact_path)
    if not isinstance(version, int) or version < 1:
        raise InputError(f"version: got {version!r}, expected an int >= 1")
    config = triton_config_from_artifact(artifact, name=name, **options)
    text = config.to_pbtxt()
    if validate or (validate is None and available("tritonclient.grpc.model_config_pb2")):
        check_config(text)
    model_dir = Path(repo_dir) / config.name
    version_dir = model_dir / str(version)
    if version_dir.exists() and any(version_dir.iterdir()) and not overwrite:
        raise InputError(f"repo_dir: {version_dir} already holds a model, expected an empty place "
                         "(pass overwrite=True / --overwrite, or another version)")
    version_dir.mkdir(parents=True, exist_ok=True)
    file_name = PLATFORMS[artifact.format][1]
    shutil.copyfile(artifact.path, version_dir / file_name)
    side = artifact.to_dict()
    side["file"] = file_name
    (version_dir / (file_name + ".json")).write_text(json.dumps(side, indent=2) + "\n", encoding="utf-8")
    config_path = model_dir / "config.pbtxt"
    config_path.write_text(text, encoding="utf-8")
    return config_path


def _is_batch_axis(spec: TensorSpec) -> bool:
    return len(spec.shape) >= 2 and isinstance(spec.shape[0], str) and spec.shape[0].lower() in ("batch", "n", "b")


def _tensor(artifact: Artifact, spec: TensorSpec, batched: bool) -> tuple[str, str, list[int]]:
    if spec.dtype not in TRITON_TYPES:
        raise ArtifactError(f"{artifact.sidecar_path}: tensor {spec.name!r} has dtype {spec.dtype!r}, expected "
                            f"one of {sorted(TRITON_TYPES)} for Triton")
    if not isinstance(spec.name, str) or not _TENSOR_NAME.match(spec.name):
        raise ArtifactError(f"{artifact.sidecar_path}: tensor name {spec.name!r}, expected letters, digits and "
                            "'_', '.', ':', '/', '-' (no quotes, spaces or newlines) for Triton's config.pbtxt")
    shape = spec.shape[1:] if batched else spec.shape
    dims = [d if isinstance(d, int) and d > 0 else -1 for d in shape]
    return spec.name, TRITON_TYPES[spec.dtype], dims


def _engine_max_batch(artifact: Artifact) -> int | None:
    """Largest batch an engine's optimization profiles allow (None when unknown or not an engine)."""
    profiles = (artifact.engine or {}).get("profiles") or {}
    maxima = [int(shapes[2][0]) for shapes in profiles.values() if len(shapes) == 3 and shapes[2]]
    return min(maxima) if maxima else None
