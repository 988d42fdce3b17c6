"""Does an engine fit this machine: the plan header's library and version, the GPU it was built for, and
where engines and TensorRT-RTX runtime caches live.

The building version is read straight from the plan header (no deserialization, no TensorRT needed)
and compared with the running library and GPU (:func:`check_engine_compatible`). The runner needs this
to load an engine; the builder's cache (``edgeseg.export.engine_cache``) keys on the same facts.

>>> read_plan_version(Path("model.engine").read_bytes())      # doctest: +SKIP
(10, 3, 0, 30)
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

from ..artifact import Artifact
from ..errors import ArtifactError
from ..model_cache import sha256_of
from .tensorrt_env import GpuInfo, parse_version

PLAN_TAG = 0x74727466  # first little-endian uint32 of every standard TensorRT plan ("ftrt")
RTX_PLAN_TAG = 0x74727476  # ... and of every TensorRT-RTX plan ("vtrt"), same layout otherwise
PLAN_TAGS = {PLAN_TAG: "tensorrt", RTX_PLAN_TAG: "rtx"}
_PLAN_HEADER_BYTES = 28


def read_plan_version(data: bytes) -> tuple[int, int, int, int] | None:
    """The TensorRT version that built a serialized engine, read from its header.

    Layout (trtexec's ``--getPlanVersionOnly``): uint32 tag (``0x74727466``; TensorRT-RTX ``0x74727476``),
    then a uint32 that is 0 for the layout whose bytes 24..27 hold (major, minor, patch, build). Returns None for another layout
    (e.g. a version-compatible plan); raises :class:`ArtifactError` when the bytes are not a plan.
    """
    plan_library(data)
    layout = struct.unpack_from("<I", data, 4)[0]
    if layout != 0:
        return None
    return tuple(data[24:28])  # type: ignore[return-value]


def plan_library(data: bytes) -> str:
    """``"tensorrt"`` or ``"rtx"``: which TensorRT library wrote this plan, from its tag."""
    if len(data) < _PLAN_HEADER_BYTES:
        raise ArtifactError(f"engine file is {len(data)} bytes, too short to be a TensorRT plan")
    tag = struct.unpack_from("<I", data, 0)[0]
    if tag not in PLAN_TAGS:
        raise ArtifactError(
            f"engine file does not start with a TensorRT plan tag (got 0x{tag:08x}, expected 0x{PLAN_TAG:08x} or "
            f"0x{RTX_PLAN_TAG:08x} for TensorRT-RTX); it is not a serialized TensorRT engine"
        )
    return PLAN_TAGS[tag]


def check_engine_compatible(artifact: Artifact, plan_header: bytes, trt_version: str, gpu: GpuInfo,
                            flavour: str = "tensorrt") -> None:
    """Refuse an engine built by another TensorRT library or version, or for another GPU, with the command
    to rebuild it.

    ``plan_header``: at least the first 28 bytes of the engine file. ``trt_version``: the running library's
    ``__version__``; ``flavour``: which library runs (``"tensorrt"`` or ``"rtx"``). ``gpu``: the running
    device (:func:`gpu_info`). TensorRT-RTX engines run on every compute capability they were built for
    (the sidecar's ``target_compute_capabilities``).
    """
    rebuild = _rebuild_hint(artifact)
    info = artifact.engine or {}
    built_by = plan_library(plan_header)
    if built_by != flavour:
        raise ArtifactError(
            f"{artifact.path} was built with the {built_by!r} TensorRT library but this runner uses {flavour!r}; "
            f"an engine loads only in the library that built it. {rebuild} (or run it with flavour={built_by!r})"
        )
    built = read_plan_version(plan_header)
    running = parse_version(trt_version)
    if built is not None and tuple(built[: len(running)]) != running[:4]:
        raise ArtifactError(
            f"{artifact.path} was built with TensorRT {'.'.join(map(str, built))} but this machine runs "
            f"TensorRT {trt_version}; engines only load on the exact version that built them. {rebuild}"
        )
    recorded = info.get("tensorrt")
    if built is None and recorded and parse_version(recorded)[:3] != running[:3]:
        raise ArtifactError(
            f"{artifact.path} was built with TensorRT {recorded} (sidecar) but this machine runs TensorRT "
            f"{trt_version}. {rebuild}"
        )
    if info.get("hardware_compatibility"):
        return
    targets = info.get("target_compute_capabilities") or ([info["compute_capability"]] if info.get("compute_capability") else [])
    if not targets or gpu.compute_capability in targets:
        return
    if info.get("gpu"):  # built on (and for) one GPU
        raise ArtifactError(
            f"{artifact.path} was built for {info['gpu']} (compute capability {targets[0]}) but this "
            f"device is {gpu.name} (compute capability {gpu.compute_capability}); engines do not move between "
            f"GPU architectures. {rebuild}"
        )
    raise ArtifactError(  # built ahead of time for a list of targets (TensorRT-RTX)
        f"{artifact.path} was built for compute capabilities {targets} but this device is {gpu.name} (compute "
        f"capability {gpu.compute_capability}). Rebuild it for this GPU: `edgeseg build {_onnx_name(artifact)} "
        f"--flavour {built_by} --compute-capability current`."
    )


def _onnx_name(artifact: Artifact) -> str:
    return (artifact.engine or {}).get("onnx") or artifact.path.with_suffix(".onnx").name


def _rebuild_hint(artifact: Artifact) -> str:
    return f"Rebuild it on this device: `edgeseg build {_onnx_name(artifact)}`."


# --- where engines and their caches live ------------------------------------------------------------
def file_digest(path: str | Path) -> str:
    """SHA-256 of a model file (and of its external-data file ``<name>.data`` when present)."""
    path = Path(path)
    external = path.with_name(path.name + ".data")
    return sha256_of(path, *([external] if external.exists() else []))


def engine_digest(engine_path: str | Path) -> str:
    """SHA-256 of an engine file, hashed once per process per (path, size, mtime): a rewritten file is hashed again."""
    path = Path(engine_path).resolve()
    stat = path.stat()
    return _engine_digest(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _engine_digest(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_of(path)  # a TensorRT plan is one file (no external data)


def engines_dir() -> Path:
    """``$EDGESEG_CACHE/engines`` (default ``~/.cache/edgeseg/engines``)."""
    root = Path(os.environ.get("EDGESEG_CACHE", Path.home() / ".cache" / "edgeseg")) / "engines"
    root.mkdir(parents=True, exist_ok=True)
    return root


def runtime_cache_path(engine_path: Path, gpu: GpuInfo) -> Path:
    """Where TensorRT-RTX keeps the kernels it compiled just in time for one engine on one GPU model."""
    safe = "".join(ch if ch.isalnum() else "_" for ch in gpu.name)
    digest = engine_digest(engine_path)[:16]
    return engines_dir() / f"runtime-{Path(engine_path).stem}-{digest}-{safe}.cache"
