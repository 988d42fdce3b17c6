"""Run one benchmark: the whole frame through the Segmenter (pre, infer, post, CRF) plus model-only batches.

Frames are a real video or image folder when ``source`` is given, else a fixed synthetic camera frame
(seeded noise over gradients) of ``frame_size``; the same frames are used for every configuration. Each frame's
post (and end to end) includes reading its labels: a two-class result builds its frame-size planes on first read.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..artifact import Artifact
from ..errors import InputError
from . import environment
from .result import BenchResult

DEFAULT_FRAME_SIZE = (480, 640)  # a VGA camera


def synthetic_frames(size: tuple[int, int], count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Deterministic BGR uint8 frames with structure (gradients) and texture (noise)."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(count):
        base = np.stack([(xx * 255 // max(w - 1, 1) + 17 * i) % 256, (yy * 255 // max(h - 1, 1)),
                         ((xx + yy) * 127 // max(h + w - 2, 1) + 31 * i) % 256], axis=-1)
        noise = rng.integers(-20, 21, size=(h, w, 3))
        frames.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return frames


def source_frames(uri: str, count: int = 32) -> list[np.ndarray]:
    """Up to ``count`` frames from a video file, image folder or camera, through edgeseg.stream."""
    from ..stream import open_source

    frames = []
    with open_source(uri) as source:
        for item in source:
            frame = item[0] if isinstance(item, tuple) else getattr(item, "frame", item)
            frames.append(np.ascontiguousarray(frame))
            if len(frames) >= count:
                break
    if not frames:
        raise InputError(f"source: {uri!r} gave no frames, expected a readable video, image folder or camera")
    return frames


def _artifact_at_size(path: str | Path, size: tuple[int, int] | None) -> Artifact:
    artifact = Artifact.load(path)
    if size is None or tuple(size) == tuple(artifact.preprocess.size):
        return artifact
    for spec in artifact.inputs:
        fixed = [d for d in spec.shape[2:] if isinstance(d, int)]
        if fixed and tuple(spec.shape[2:]) != tuple(size):
            raise InputError(
                f"--size: got {size[0]}x{size[1]}, but {Path(path).name} has a fixed input "
                f"{spec.shape[2]}x{spec.shape[3]}; export it with dynamic height/width to sweep sizes"
            )
    artifact.preprocess = replace(artifact.preprocess, size=tuple(size))
    return artifact


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


def _gpu_peak_mb() -> float | None:
    if "cupy" in sys.modules:
        try:
            pool = sys.modules["cupy"].get_default_memory_pool()
            return pool.total_bytes() / 2**20
        except Exception:  # noqa: BLE001 - no device: nothing to report
            pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def _iterations(iterations: int | None, duration: float | None) -> Iterator[int]:
    """0, 1, 2, ... until ``iterations`` runs or ``duration`` seconds have passed."""
    deadline = time.perf_counter() + duration if duration else None
    i = 0
    while (iterations is None or i < iterations) and (deadline is None or time.perf_counter() < deadline):
        yield i
        i += 1


def run_benchmark(
    artifact_path: str | Path,
    backend: str = "auto",
    size: tuple[int, int] | None = None,
    batch: int = 1,
    iterations: int | None = 200,
    duration: float | None = None,
    warmup: int = 10,
    crf: bool | dict = False,
    threads: int | None = None,
    frames: list[np.ndarray] | None = None,
    progress: bool = True,
) -> BenchResult:
    """Benchmark one artifact on one backend; nothing is written until every run finished.

    Args:
        artifact_path: a model file with its sidecar (``.onnx``, ``.safetensors``, ``.engine``).
        size: model input (H, W); defaults to the sidecar's ``preprocess.size``.
        batch: 1 measures the whole frame (pre, infer, post, CRF, end to end); above 1 adds model-only
            batched inference (``infer_batch``), whose throughput counts ``batch`` frames per run.
        iterations / duration: stop after N timed runs or S seconds, whichever comes first.
    """
    from ..pipeline import Segmenter

    if batch < 1:
        raise InputError(f"--batch: got {batch}, expected a positive integer")
    if warmup < 0:
        raise InputError(f"--warmup: got {warmup}, expected 0 or more")
    if iterations is None and duration is None:
        raise InputError("--iterations/--duration: expected at least one of them")
    if iterations is not None and iterations < 2:
        raise InputError(f"--iterations: got {iterations}, expected at least 2 (percentiles need samples)")
    artifact = _artifact_at_size(artifact_path, size)
    frames = frames or synthetic_frames(DEFAULT_FRAME_SIZE)
    seg = Segmenter(artifact, backend=backend, crf=crf or None, threads=threads)
    try:
        samples = _measure_pipeline(seg, frames, iterations, duration, warmup, progress)
        if batch > 1:
            samples["infer_batch"] = _measure_batch(seg, frames, batch, iterations, duration, warmup)
        runner = seg.runner
        input_size = tuple(artifact.preprocess.size)
        threads_used = getattr(runner, "threads", None) or threads
    finally:
        seg.close()
    return BenchResult(
        artifact=str(artifact_path), model=artifact.model or Path(artifact_path).stem, backend=runner.backend,
        input_size=input_size, batch=batch, samples=samples, precision=artifact.precision,
        config={"warmup": warmup, "iterations": iterations, "duration": duration, "crf": bool(crf),
                "threads": threads_used, "frame_size": list(frames[0].shape[:2]), "frames": len(frames)},
        environment=environment.capture({"runner_threads": threads_used}),
        memory={"peak_rss_mb": round(_peak_rss_mb(), 1), "gpu_peak_mb": _gpu_peak_mb()},
    )


def _measure_pipeline(seg, frames, iterations, duration, warmup, progress) -> dict[str, list[float]]:
    for i in range(warmup):
        seg(frames[i % len(frames)]).labels  # noqa: B018 - warm the labels route too
    samples: dict[str, list[float]] = {"pre": [], "infer": [], "post": [], "crf": [], "end_to_end": []}
    device: list[float] = []
    bar = _progress(iterations, duration, progress)
    for i in _iterations(iterations, duration):
        frame = frames[i % len(frames)]
        start = time.perf_counter()
        result = seg(frame)
        built = time.perf_counter()
        result.labels  # noqa: B018 - a two-class result upsamples on first read: part of the frame's post
        done = time.perf_counter()
        samples["end_to_end"].append(done - start)
        for stage in ("pre", "infer", "post", "crf"):
            samples[stage].append(float(result.timings.get(stage, 0.0)) + (done - built if stage == "post" else 0.0))
        device_s = getattr(seg.runner, "last_device_latency_s", None)
        if device_s is not None:
            device.append(float(device_s))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not any(samples["crf"]):
        del samples["crf"]
    if device:
        samples["device_infer"] = device
    return samples


def _measure_batch(seg, frames, batch, iterations, duration, warmup) -> list[float]:
    blob = np.concatenate([seg.preprocessor(frames[i % len(frames)])[0] for i in range(batch)], axis=0)
    feed = {seg.input_name: blob}
    try:
        seg.runner.infer(feed)
    except InputError as exc:
        raise InputError(f"--batch {batch}: the model does not take this batch size ({exc})") from exc
    for _ in range(warmup):
        seg.runner.infer(feed)
    times = []
    for _ in _iterations(iterations, duration):
        start = time.perf_counter()
        seg.runner.infer(feed)
        times.append(time.perf_counter() - start)
    return times


def _progress(iterations: int | None, duration: float | None, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=iterations, desc="bench", unit="frame", leave=False,
                disable=not sys.stderr.isatty(), postfix=f"max {duration:.0f}s" if duration else None)
