"""Obtain MediaPipe's selfie segmenter from the ``mediapipe==0.10.21`` wheel (through pip) and import it.

Nothing is downloaded at run time: ``edgeseg fetch-selfie`` (this module's :func:`fetch_selfie`) runs
``pip download --no-deps mediapipe==0.10.21`` once, extracts only the two ``.tflite`` files and the
licence, checks their SHA-256 against the values pinned here, and converts them into the cache
(``$EDGESEG_HOME/models/selfie`` or ``~/.cache/edgeseg/models/selfie``)::

    selfie/
      manifest.json                      source, licence, SHA-256 of every file
      LICENSE                            Apache-2.0 text from the wheel
      tflite/selfie_segmentation.tflite  the originals (the LiteRT reference)
      selfie_general.onnx(.json)         256x256 input
      selfie_general.safetensors(.json)  the same model as a PyTorch checkpoint (fine-tunable)
      selfie_landscape.*                 144x256 input

>>> manifest = fetch_selfie()       # doctest: +SKIP
>>> selfie_home() / manifest["models"]["general"]["onnx"]   # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, InputError
# The cache's layout and checked lookup live below the artifact (edgeseg.model_cache); this module fills the cache.
from ..model_cache import (MANIFEST, MODELS, check_variant, model_stem, read_manifest,  # noqa: F401 - re-exported
                           selfie_home, sha256_of)
from ..sidecar import sidecar_path

MEDIAPIPE_VERSION = "0.10.21"
WHEEL_DIR = "mediapipe/modules/selfie_segmentation/"
LICENCE = "Apache-2.0"
CLASSES = ["background", "person"]
# Bump when the importer's output changes: caches converted by another version are converted again.
CONVERTER_VERSION = 3
# pip download targets tried in order: this interpreter's platform, then any wheel (the .tflite files are
# identical in every platform's wheel).
_PIP_TARGETS: list[list[str]] = [
    [],
    ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"],
    ["--only-binary=:all:", "--platform", "macosx_11_0_universal2", "--python-version", "3.12"],
    ["--only-binary=:all:", "--platform", "win_amd64", "--python-version", "3.12"],
]


# pip output that means the index cannot be reached (as opposed to "no wheel for this platform").
_NETWORK_ERRORS = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
                   "Name or service not known", "ProxyError", "Network is unreachable", "Read timed out")


def is_complete(home: Path | None = None) -> bool:
    """True when the manifest lists every variant and all its files exist with the recorded SHA-256."""
    home = home or selfie_home()
    manifest = read_manifest(home)
    if not manifest or set(manifest.get("models", {})) != set(MODELS):
        return False
    if manifest.get("converter_version") != CONVERTER_VERSION:
        return False
    for entry in manifest["models"].values():
        for key in ("tflite", "onnx", "checkpoint"):
            path = home / entry[key]
            if not path.is_file() or sha256_of(path) != entry[f"{key}_sha256"]:
                return False
            side = sidecar_path(path)
            if f"{key}_sidecar_sha256" in entry and (
                    not side.is_file() or sha256_of(side) != entry[f"{key}_sidecar_sha256"]):
                return False
    return True


def download_wheel(dest: Path, log: Callable[[str], None] = print) -> Path:
    """``pip download --no-deps mediapipe==0.10.21`` into ``dest``; this platform's wheel, else any platform's.

    A network failure stops at the first attempt (other platforms would fail the same way).
    """
    last_error = "no wheel"
    for attempt, extra in enumerate(_PIP_TARGETS):  # noqa: B007 - attempt is reported after the loop
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               f"mediapipe=={MEDIAPIPE_VERSION}", "-d", str(dest), *extra]
        log(f"$ {' '.join(cmd[2:])}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(dest.glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))
        if proc.returncode == 0 and wheels:
            return wheels[0]
        output = (proc.stderr or proc.stdout).strip()
        last_error = (output.splitlines() or ["no wheel"])[-1]
        if any(sign in output for sign in _NETWORK_ERRORS):
            break
    raise ArtifactError(
        f"could not download mediapipe=={MEDIAPIPE_VERSION} with pip after {attempt + 1} attempt(s) (this "
        f"platform, then others; last error: {last_error}). Check network access to PyPI, or pass --wheel PATH "
        "to a downloaded mediapipe-0.10.21 wheel."
    )


def extract_models(wheel: Path, dest: Path) -> dict[str, Path]:
    """Extract only the two selfie ``.tflite`` files (checked against the pinned SHA-256) and LICENSE."""
    dest.mkdir(parents=True, exist_ok=True)
    found = {}
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"{wheel}: not a wheel (zip) file ({exc})") from exc
    with archive:
        names = archive.namelist()
        for variant, (file, digest) in MODELS.items():
            member = WHEEL_DIR + file
            if member not in names:
                raise ArtifactError(f"{wheel.name}: has no {member}; expected mediapipe=={MEDIAPIPE_VERSION}")
            target = dest / "tflite" / file
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            actual = sha256_of(target)
            if actual != digest:
                target.unlink()
                raise ArtifactError(f"{wheel.name}: {file} has SHA-256 {actual}, expected {digest} "
                                    f"(the file pinned for mediapipe=={MEDIAPIPE_VERSION})")
            found[variant] = target
        licence = [n for n in names if n.endswith(".dist-info/LICENSE")]
        if licence:
            (dest / "LICENSE").write_bytes(archive.read(licence[0]))
    return found


def fetch_selfie(home: Path | None = None, wheel: Path | None = None, force: bool = False,
                 log: Callable[[str], None] = print, exporter: Callable[..., Path] | None = None) -> dict[str, Any]:
    """Obtain, verify and convert both selfie models into ``home``; quick no-op when already complete.

    Args:
        home: cache folder (default :func:`selfie_home`).
        wheel: a local ``mediapipe-0.10.21-*.whl`` to use instead of ``pip download``.
        force: redo everything even if the cache is complete.
        exporter: how the ONNX files are written (:func:`edgeseg.tflite.importer.import_tflite`'s ``exporter``;
            ``edgeseg fetch-selfie`` passes the build stage's full exporter).

    Returns:
        The manifest (also written to ``home/manifest.json``).
    """
    from .importer import import_tflite

    home = Path(home) if home else selfie_home()
    if not force and is_complete(home):
        log(f"selfie models already in {home}")
        return read_manifest(home)
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeseg-mediapipe-") as tmp:
        wheel_path = Path(wheel) if wheel else download_wheel(Path(tmp), log)
        if not wheel_path.is_file():
            raise InputError(f"wheel: got {str(wheel_path)!r}, expected an existing mediapipe wheel file")
        tflites = extract_models(wheel_path, home)
        wheel_name = wheel_path.name
    models = {}
    for variant, tflite in tflites.items():
        log(f"importing {tflite.name} -> {model_stem(variant)}.onnx")
        source = {"package": f"mediapipe=={MEDIAPIPE_VERSION}", "wheel": wheel_name, "licence": LICENCE}
        paths = import_tflite(tflite, home, name=model_stem(variant), classes=CLASSES,
                              extra={"mediapipe": source, "variant": variant}, exporter=exporter)
        entry = {"tflite": str(tflite.relative_to(home)), "onnx": paths["onnx"].name,
                 "checkpoint": paths["checkpoint"].name}
        for key in ("tflite", "onnx", "checkpoint"):
            entry[f"{key}_sha256"] = sha256_of(home / entry[key])
        for key in ("onnx", "checkpoint"):  # selfie_model_path checks these on every use
            entry[f"{key}_sidecar_sha256"] = sha256_of(sidecar_path(home / entry[key]))
        models[variant] = entry
    manifest = {
        "source": f"pip download --no-deps mediapipe=={MEDIAPIPE_VERSION}", "wheel": wheel_name,
        "licence": LICENCE, "licence_file": "LICENSE" if (home / "LICENSE").is_file() else None,
        "converter_version": CONVERTER_VERSION, "models": models,
    }
    (home / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log(f"selfie models ready in {home}")
    return manifest
