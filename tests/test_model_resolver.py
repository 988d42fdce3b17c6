"""One model-name resolver for the CLI and Python (issue 16 item 10), and the cached selfie model's SHA-256
re-checked on use (item 7). A real cache in tmp_path (EDGESEG_HOME): the shipped HC18 ONNX stands in for the
selfie model, with a manifest holding its real SHA-256 as `edgeseg fetch-selfie` writes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import ArtifactError

ASSET = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "hc18_fastseg.onnx"
cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A selfie cache as fetch-selfie leaves it (manifest with the model's and sidecar's SHA-256)."""
    from edgeseg.tflite.importer import sha256_of
    from edgeseg.tflite.mediapipe import CONVERTER_VERSION

    home = tmp_path / "home"
    folder = home / "models" / "selfie"
    folder.mkdir(parents=True)
    model = folder / "selfie_general.onnx"
    shutil.copy(ASSET, model)
    shutil.copy(ASSET.with_name(ASSET.name + ".json"), folder / "selfie_general.onnx.json")
    entry = {"onnx": model.name, "onnx_sha256": sha256_of(model),
             "onnx_sidecar_sha256": sha256_of(folder / "selfie_general.onnx.json")}
    manifest = {"converter_version": CONVERTER_VERSION, "models": {"general": entry}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("EDGESEG_HOME", str(home))
    return folder


@pytest.fixture
def frames(tmp_path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    return folder


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGESEG_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_stream_accepts_the_selfie_name_like_the_cli(cache, frames):
    import edgeseg
    from edgeseg.pipeline import Segmenter

    results = list(edgeseg.stream(str(frames), "selfie", fps=10))
    assert len(results) == 3 and results[0].labels.shape == (48, 64)
    with Segmenter("selfie") as seg:
        assert seg.artifact.path == cache / "selfie_general.onnx"


def test_cli_and_python_use_one_resolver(cache, frames):
    from edgeseg.apps.selfie import selfie_model_path
    from edgeseg.artifact import resolve_model
    from edgeseg.commands import run

    cached = cache / "selfie_general.onnx"
    assert run.resolve_model("selfie") == resolve_model("selfie") == selfie_model_path() == cached
    assert resolve_model("some/model.onnx") == Path("some/model.onnx")
    proc = _cli("run", "--model", "selfie", "--source", str(frames), "--sink", "null", "--quiet", "--fps", "10",
                home=cache.parents[1])
    assert proc.returncode == 0, proc.stderr


def test_unknown_name_lists_the_model_names():
    from edgeseg.artifact import Artifact

    with pytest.raises(ArtifactError, match=r"model file not found: selfy .*\['selfie', 'selfie-landscape'\]"):
        Artifact.load("selfy")


@pytest.mark.parametrize("damaged", ["selfie_general.onnx", "selfie_general.onnx.json"])
def test_modified_cache_is_refused_in_python_and_cli(cache, frames, damaged):
    import edgeseg
    from edgeseg.apps.selfie import selfie_model_path

    selfie_model_path()  # verified once in this process
    with open(cache / damaged, "ab") as f:
        f.write(b" ")
    with pytest.raises(ArtifactError, match=r"modified or damaged\. Run `edgeseg fetch-selfie --force`"):
        selfie_model_path()
    with pytest.raises(ArtifactError, match="edgeseg fetch-selfie --force"):
        edgeseg.stream(str(frames), "selfie")
    proc = _cli("run", "--model", "selfie", "--source", str(frames), "--sink", "null", "--quiet",
                home=cache.parents[1])
    assert proc.returncode == 2
    assert "edgeseg fetch-selfie --force" in proc.stderr and str(cache / damaged) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cache_without_recorded_hash_is_refused(cache):
    from edgeseg.apps.selfie import selfie_model_path

    (cache / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"does not record its SHA-256.*edgeseg fetch-selfie --force"):
        selfie_model_path()


def test_hash_is_computed_once_per_process_until_the_file_changes(cache, monkeypatch):
    from edgeseg import model_cache

    hashed = []

    def counting(path):
        hashed.append(Path(path).name)
        return real(path)

    real = model_cache.sha256_of
    monkeypatch.setattr(model_cache, "sha256_of", counting)
    monkeypatch.setattr(model_cache, "_VERIFIED", {})
    for _ in range(3):
        model_cache.selfie_model_path()
    assert sorted(hashed) == ["selfie_general.onnx", "selfie_general.onnx.json"]
    model = cache / "selfie_general.onnx"
    model.write_bytes(model.read_bytes())  # same content, new mtime: hashed again, still valid
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    model_cache.selfie_model_path()
    assert hashed.count("selfie_general.onnx") == 2
