"""A cache of built engines, keyed by what makes two engines interchangeable.

Keys: ONNX hash, library flavour and version, GPU or compute-capability targets, precision and build
options, so a device builds each engine once. Whether an engine fits this machine (plan header, GPU)
is :mod:`edgeseg.runtime.engine_fit`; GPU identity and version parsing are
:mod:`edgeseg.runtime.tensorrt_env` (both re-exported here under their old names).

>>> cache = EngineCache()                                         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeseg.artifact import Artifact
from edgeseg.runtime.engine_fit import (  # noqa: F401 - old home of these names
    PLAN_TAG,
    PLAN_TAGS,
    RTX_PLAN_TAG,
    check_engine_compatible,
    engines_dir,
    file_digest,
    plan_library,
    read_plan_version,
    runtime_cache_path,
)
from edgeseg.runtime.tensorrt_env import GpuInfo, gpu_info, parse_version  # noqa: F401 - old home


# --- the cache ------------------------------------------------------------------------------------
def cache_key(onnx_sha256: str, gpu: GpuInfo | None, trt_version: str, precision: str, options: dict[str, Any],
              flavour: str = "tensorrt", targets: Sequence[str] = ()) -> str:
    """A file-name-safe key: what makes two engines interchangeable (the ONNX, the library's flavour and
    version, the GPU or the compute-capability targets, precision and build options)."""
    blob = json.dumps(
        {"onnx": onnx_sha256, "gpu": gpu.name if gpu else None, "cc": gpu.compute_capability if gpu else None,
         "flavour": flavour, "targets": list(targets), "trt": trt_version, "precision": precision,
         "options": options},
        sort_keys=True, default=str,
    )
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    ccs = list(targets) or ([gpu.compute_capability] if gpu else [])
    sm = "sm" + "_".join(cc.replace(".", "") for cc in ccs)
    library = "trt" if flavour == "tensorrt" else flavour
    return f"{precision}-{sm}-{library}{trt_version}-{digest}"


def timing_cache_path(gpu: GpuInfo, trt_version: str) -> Path:
    """One timing cache per GPU model and TensorRT version (caches carry device properties)."""
    safe = "".join(ch if ch.isalnum() else "_" for ch in gpu.name)
    return engines_dir() / f"timing-{safe}-sm{gpu.compute_capability.replace('.', '')}-trt{trt_version}.cache"


class EngineCache:
    """Built engines under ``root`` (default :func:`engines_dir`), one ``<stem>-<key>.engine`` per key.

    >>> cache = EngineCache()                                         # doctest: +SKIP
    >>> cache.lookup("hc18_fastseg", key) or build_into(cache.path_for("hc18_fastseg", key))   # doctest: +SKIP
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else engines_dir()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, stem: str, key: str) -> Path:
        return self.root / f"{stem}-{key}.engine"

    def lookup(self, stem: str, key: str) -> Path | None:
        """The cached engine for ``key`` when both it and its sidecar exist, else None."""
        path = self.path_for(stem, key)
        if path.exists() and Artifact(path).sidecar_path.exists():
            return path
        return None

    def entries(self) -> list[Path]:
        return sorted(self.root.glob("*.engine"))
