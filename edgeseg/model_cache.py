"""The cache of fetched models, below :mod:`edgeseg.artifact`: where ``edgeseg fetch-selfie`` puts MediaPipe's
selfie segmenter, its manifest, and the checked lookup behind the model name ``"selfie"``.

Only paths, JSON and hashes: no model code, so :func:`edgeseg.artifact.resolve_model` can use it.
:mod:`edgeseg.tflite.mediapipe` fills the cache; :mod:`edgeseg.apps.selfie` re-exports
:func:`selfie_model_path`.

>>> selfie_model_path("general")          # doctest: +SKIP
PosixPath('/home/me/.cache/edgeseg/models/selfie/selfie_general.onnx')
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import ArtifactError, InputError
from .sidecar import sidecar_path

__all__ = ["MANIFEST", "MODELS", "check_variant", "model_stem", "read_manifest", "selfie_home", "selfie_model_path",
           "sha256_of"]

MANIFEST = "manifest.json"
# variant -> (file in the mediapipe 0.10.21 wheel, pinned SHA-256 of that file)
MODELS = {
    "general": ("selfie_segmentation.tflite", "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"),
    "landscape": ("selfie_segmentation_landscape.tflite",
                  "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd"),
}


def sha256_of(path: str | Path, *more: str | Path) -> str:
    """Hex SHA-256 of a file (followed by the files in ``more``, as if concatenated), read in 1 MB blocks."""
    digest = hashlib.sha256()
    for name in (path, *more):
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def selfie_home() -> Path:
    """The selfie model cache: ``$EDGESEG_HOME/models/selfie`` or ``~/.cache/edgeseg/models/selfie``."""
    root = os.environ.get("EDGESEG_HOME")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "edgeseg"
    return base / "models" / "selfie"


def check_variant(variant: str) -> str:
    if variant not in MODELS:
        raise InputError(f"variant: got {variant!r}, expected one of {sorted(MODELS)}")
    return variant


def model_stem(variant: str) -> str:
    return f"selfie_{check_variant(variant)}"


def read_manifest(home: Path | None = None) -> dict[str, Any] | None:
    path = (home or selfie_home()) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def selfie_model_path(variant: str = "general", fmt: str = "onnx") -> Path:
    """Path of the imported selfie model in the cache (``fmt``: ``"onnx"`` or ``"safetensors"``), checked.

    Raises :class:`ArtifactError` saying to run ``edgeseg fetch-selfie`` when it is not there, or when the file
    (or its sidecar) no longer has the SHA-256 that ``fetch-selfie`` recorded in the cache's manifest.
    """
    check_variant(variant)
    if fmt not in ("onnx", "safetensors", "tflite"):
        raise InputError(f"fmt: got {fmt!r}, expected 'onnx', 'safetensors' or 'tflite'")
    home = selfie_home()
    path = home / "tflite" / MODELS[variant][0] if fmt == "tflite" else home / f"{model_stem(variant)}.{fmt}"
    if not path.is_file():
        raise ArtifactError(
            f"selfie model {variant!r} not found at {path}. Run `edgeseg fetch-selfie` once to obtain MediaPipe's "
            "selfie segmenter (through pip, Apache-2.0) and convert it (set EDGESEG_HOME to change the cache)."
        )
    for file, digest in _expected_digests(home, variant, fmt, path).items():
        _verify(file, digest)
    return path


# path -> (size, mtime_ns) when its SHA-256 last matched. Hashing the cached model (a few hundred KB, ~1 ms) on
# every use is cheap but it is resolved several times per run (CLI, stream, Segmenter); a file whose size and
# mtime are unchanged since this process hashed it is not hashed again, and any rewrite changes the mtime.
_VERIFIED: dict[Path, tuple[int, int]] = {}


def _expected_digests(home: Path, variant: str, fmt: str, path: Path) -> dict[Path, str]:
    """File -> SHA-256 that fetch-selfie recorded (the model, and its sidecar when the manifest lists it)."""
    if fmt == "tflite":
        return {path: MODELS[variant][1]}
    key = "onnx" if fmt == "onnx" else "checkpoint"
    entry = ((read_manifest(home) or {}).get("models") or {}).get(variant) or {}
    if not isinstance(entry.get(f"{key}_sha256"), str):
        raise ArtifactError(f"selfie model {path}: the cache's {home / MANIFEST} does not record its SHA-256, so it "
                            "cannot be checked. Run `edgeseg fetch-selfie --force` to obtain and convert it again.")
    digests = {path: entry[f"{key}_sha256"]}
    if isinstance(entry.get(f"{key}_sidecar_sha256"), str):
        digests[sidecar_path(path)] = entry[f"{key}_sidecar_sha256"]
    return digests


def _verify(path: Path, expected: str) -> None:
    try:
        stat = path.stat()
    except OSError as exc:
        raise ArtifactError(f"selfie model file {path} cannot be read ({exc}). Run `edgeseg fetch-selfie --force` "
                            "to obtain it again.") from exc
    stamp = (stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(path) == stamp:
        return
    actual = sha256_of(path)
    if actual != expected:
        _VERIFIED.pop(path, None)
        raise ArtifactError(
            f"selfie model file {path} has SHA-256 {actual[:16]}..., expected {expected[:16]}... as recorded by "
            "`edgeseg fetch-selfie`: the cached file was modified or damaged. Run `edgeseg fetch-selfie --force` "
            "to obtain and convert it again."
        )
    _VERIFIED[path] = stamp
