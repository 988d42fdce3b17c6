"""File digests behind the engine and runtime-cache paths: one SHA-256 implementation, and an engine hashed once
per process until its file changes."""

import hashlib
import os

import pytest

from edgeseg import model_cache
from edgeseg.runtime import engine_fit
from edgeseg.runtime.tensorrt_env import GpuInfo

GPU = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture
def reads(monkeypatch, tmp_path):
    """Names of the files engine_fit hashed (through its SHA-256 reader), with the engine cache under tmp_path."""
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    seen = []
    real = engine_fit.sha256_of

    def counting(*paths):
        seen.append([os.path.basename(p) for p in paths])
        return real(*paths)

    monkeypatch.setattr(engine_fit, "sha256_of", counting)
    return seen


def test_file_digest_covers_the_external_data_file(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"graph" * 300_000)  # more than one 1 MB block
    assert engine_fit.file_digest(model) == hashlib.sha256(b"graph" * 300_000).hexdigest()
    (tmp_path / "m.onnx.data").write_bytes(b"weights")
    assert engine_fit.file_digest(model) == hashlib.sha256(b"graph" * 300_000 + b"weights").hexdigest()
    assert model_cache.sha256_of(model) == hashlib.sha256(b"graph" * 300_000).hexdigest()


def test_runtime_cache_path_hashes_an_unchanged_engine_once(tmp_path, reads):
    engine = tmp_path / "seg.engine"
    engine.write_bytes(b"plan-one")
    paths = {engine_fit.runtime_cache_path(engine, GPU) for _ in range(3)}
    paths.add(engine_fit.runtime_cache_path(tmp_path / "." / "seg.engine", GPU))  # same file, other spelling
    assert len(paths) == 1
    assert hashlib.sha256(b"plan-one").hexdigest()[:16] in paths.pop().name
    assert reads == [["seg.engine"]]


def test_a_rewritten_engine_is_hashed_again(tmp_path, reads):
    engine = tmp_path / "seg.engine"
    engine.write_bytes(b"plan-one")
    first = engine_fit.runtime_cache_path(engine, GPU)
    engine.write_bytes(b"plan-two")  # same size: only the mtime tells it changed
    stat = engine.stat()
    os.utime(engine, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = engine_fit.runtime_cache_path(engine, GPU)
    assert hashlib.sha256(b"plan-one").hexdigest()[:16] in first.name
    assert hashlib.sha256(b"plan-two").hexdigest()[:16] in second.name
    assert first != second
    assert reads == [["seg.engine"], ["seg.engine"]]
