"""Run one benchmark: the whole frame through the Segmenter (pre, infer, post, CRF) plus model-only batches.

Frames are a real video or image folder when ``source`` is given, else a fixed synthetic camera frame
(seeded noise over gradients) of ``frame_size``; the same frames are used for every configuration. Each frame's
post (and end to end) includes reading its labels: a two-class result builds its frame-size planes on first read.
"""

from __future__ import annotations

import resource
import sys
import time
import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..artifact import Artifact
from ..errors import InputError
from ..sizes import artifact_multiple, check_size
from . import environment
from .result import BenchResult
from .stats import DEFAULT_BLOCKS

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
    from ..video import open_source

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
    check_size(size, "--size", artifact_multiple(artifact), artifact.model)  # the rule train and export follow
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
    blocks: int | None = None,
) -> BenchResult:
    """Benchmark one artifact on one backend; nothing is written until every run finished.

    Args:
        artifact_path: a model file with its sidecar (``.onnx``, ``.safetensors``, ``.engine``).
        size: model input (H, W); defaults to the sidecar's ``preprocess.size``.
        batch: 1 measures the whole frame (pre, infer, post, CRF, end to end); above 1 adds model-only
            batched inference (``infer_batch``), whose throughput counts ``batch`` frames per run.
        iterations / duration: stop after N timed runs or S seconds, whichever comes first.
        blocks: the timed runs are recorded as this many consecutive blocks (``bench compare`` tests across
            block medians, not across autocorrelated iterations); None: 10, fewer when ``iterations`` < 20.
    """
    blocks = _check_run_options(batch, warmup, iterations, duration, blocks)
    artifact = _artifact_at_size(artifact_path, size)
    frames = frames or synthetic_frames(DEFAULT_FRAME_SIZE)
    seg = _segmenter(artifact, backend, crf, threads)
    try:
        timer = FrameTimer(seg, frames)
        timer.warm(warmup)
        bar = _progress(iterations, duration, progress)
        for count in _block_counts(iterations, blocks):
            timer.block(count, duration / blocks if duration else None, bar)
        if bar is not None:
            bar.close()
        samples, block_sizes = timer.result()
        if batch > 1:
            samples["infer_batch"], block_sizes["infer_batch"] = _measure_batch(
                seg, frames, batch, iterations, duration, warmup, blocks)
        threads_used = getattr(seg.runner, "threads", None) or threads
    finally:
        seg.close()
    return _result(artifact_path, artifact, seg, samples, block_sizes, batch,
                   {"warmup": warmup, "iterations": iterations, "duration": duration, "crf": bool(crf),
                    "threads": threads_used, "frame_size": list(frames[0].shape[:2]), "frames": len(frames),
                    "blocks": blocks})


def run_interleaved(
    artifact_a: Any,
    artifact_b: Any,
    backend: str = "auto",
    size: tuple[int, int] | None = None,
    iterations: int | None = 200,
    duration: float | None = None,
    warmup: int = 10,
    crf: bool | dict = False,
    threads: int | None = None,
    frames: list[np.ndarray] | None = None,
    blocks: int | None = None,
    block_warmup: int = 1,
    progress: bool = True,
    wrap: Any = None,
    pause: float = 0.001,
    reload_every: int = 2,
) -> tuple[BenchResult, BenchResult]:
    """Benchmark two artifacts in one process, alternating blocks A B B A A B ... (``iterations`` each).

    Both models see the same frames. Load, clock and thermal drift over the run hit the two blocks of a pair
    alike, so the paired comparison of block medians cancels it; the A B / B A alternation also cancels a linear
    drift within a pair and any advantage of running first. ``artifact_a``/``artifact_b`` are paths or ready
    :class:`~edgeseg.pipeline.Segmenter` objects (used as given and not closed here). ``wrap(role, runner)``
    may replace the runner built for a path ("A" or "B"), e.g. to inject a known slowdown. ``pause``: an
    untimed idle of 0 to ``pause`` seconds (seeded random) before each frame; on a loaded machine it keeps the
    frame loop from running in lockstep with the scheduler, which otherwise preempts the same stage of every frame
    and biases one model's blocks more than the other's. ``reload_every``: rebuild both models' sessions every
    this many pairs (0: never), alternating which is built first; a session's memory layout makes it a few
    percent faster or slower for its whole life, so one session per model would turn that luck into a
    systematic difference the blocks cannot see.
    """
    blocks = _check_run_options(1, warmup, iterations, duration, blocks)
    if isinstance(reload_every, bool) or not isinstance(reload_every, int) or reload_every < 0:
        raise InputError(f"--reload-every: got {reload_every!r}, expected 0 (never) or a positive number of pairs")
    if block_warmup < 0:
        raise InputError(f"--block-warmup: got {block_warmup}, expected 0 or more")
    frames = frames or synthetic_frames(DEFAULT_FRAME_SIZE)
    opened, timers, artifacts = [], [], []
    try:
        for role, given in zip("AB", (artifact_a, artifact_b)):
            if hasattr(given, "runner"):
                seg, artifact = given, given.artifact
            else:
                artifact = _artifact_at_size(given, size)
                seg = _segmenter(artifact, backend, crf, threads, partial(wrap, role) if wrap else None)
                opened.append(seg)
            artifacts.append(artifact)
            timers.append(FrameTimer(seg, frames, pause=pause))
        if len(opened) == 2:
            # ONNX Runtime on a 2-core Xeon: of two sessions created back to back, the first ran 2-4 % slower
            # (18 of 18 A/A runs); building the first again after the second removed that.
            opened[0].runner.deactivate()
            opened[0].runner.activate()
        # Every pair of pairs runs A B B A: B's second block follows its own first. A's first block must follow
        # A's own warm-up for the same advantage, so A warms last (without this B measured 1 % faster in A/A).
        for timer in timers[::-1]:
            timer.warm(warmup)
        bar = _progress(2 * iterations if iterations else None, duration, progress)
        per_block = duration / (2 * blocks) if duration else None
        order = []
        for k, count in enumerate(_block_counts(iterations, blocks)):
            if reload_every and k and k % reload_every == 0 and len(opened) == 2:
                epoch = k // reload_every
                for seg in (opened if epoch % 2 == 0 else opened[::-1]):
                    seg.runner.deactivate()
                    seg.runner.activate()
                for timer in timers[::-1]:
                    timer.warm(max(block_warmup, 2))
            for role in ("AB" if k % 2 == 0 else "BA"):
                timer = timers[role == "B"]
                timer.warm(block_warmup)  # the other model just ran: refill caches before timing
                timer.block(count, per_block, bar)
                order.append(role)
        if bar is not None:
            bar.close()
        run_id = uuid.uuid4().hex[:12]
        results = []
        for role, given, artifact, timer in zip("AB", (artifact_a, artifact_b), artifacts, timers):
            samples, block_sizes = timer.result()
            threads_used = getattr(timer.seg.runner, "threads", None) or threads
            results.append(_result(
                str(artifact.path) if hasattr(given, "runner") else given, artifact, timer.seg,
                samples, block_sizes, 1,
                {"warmup": warmup, "iterations": iterations, "duration": duration, "crf": bool(crf),
                 "threads": threads_used, "frame_size": list(frames[0].shape[:2]), "frames": len(frames),
                 "blocks": blocks, "block_warmup": block_warmup, "pause": pause, "reload_every": reload_every,
                 "interleave": {"id": run_id, "role": role, "order": "".join(order)}}))
    finally:
        for seg in opened:
            seg.close()
    return results[0], results[1]


def _check_run_options(batch, warmup, iterations, duration, blocks) -> int:
    """Validate the options; return the number of blocks (``blocks`` None: the default that fits)."""
    if batch < 1:
        raise InputError(f"--batch: got {batch}, expected a positive integer")
    if warmup < 0:
        raise InputError(f"--warmup: got {warmup}, expected 0 or more")
    if iterations is None and duration is None:
        raise InputError("--iterations/--duration: expected at least one of them")
    if iterations is not None and iterations < 2:
        raise InputError(f"--iterations: got {iterations}, expected at least 2 (percentiles need samples)")
    if blocks is None:
        return min(DEFAULT_BLOCKS, iterations // 2) if iterations is not None else DEFAULT_BLOCKS
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise InputError(f"--blocks: got {blocks!r}, expected a positive integer")
    if iterations is not None and iterations < 2 * blocks:
        raise InputError(f"--blocks: {blocks} blocks of {iterations} iterations leave fewer than 2 per block; "
                         f"use at most {iterations // 2} blocks or more iterations")
    return blocks


def _block_counts(iterations: int | None, blocks: int) -> list[int | None]:
    if iterations is None:
        return [None] * blocks
    return [int(n) for n in np.diff(np.linspace(0, iterations, blocks + 1).round().astype(int))]


def _segmenter(artifact: Artifact, backend: str, crf, threads, wrap=None):
    from ..pipeline import Segmenter

    if wrap is None:
        return Segmenter(artifact, backend=backend, crf=crf or None, threads=threads)
    from ..runtime import create_runner

    options = {"threads": threads} if threads is not None else {}
    return Segmenter(wrap(create_runner(artifact, backend=backend, **options)), crf=crf or None)


def _result(artifact_path, artifact, seg, samples, block_sizes, batch, config) -> BenchResult:
    return BenchResult(
        artifact=str(artifact_path), model=artifact.model or Path(artifact_path).stem, backend=seg.runner.backend,
        input_size=tuple(artifact.preprocess.size), batch=batch, samples=samples, precision=artifact.precision,
        config=config, environment=environment.capture({"runner_threads": config["threads"]}),
        memory={"peak_rss_mb": round(_peak_rss_mb(), 1), "gpu_peak_mb": _gpu_peak_mb()}, blocks=block_sizes,
    )


class FrameTimer:
    """Times whole frames through one Segmenter, block by block; every stage gets one sample per frame."""

    STAGES = ("pre", "infer", "post", "crf", "end_to_end")

    def __init__(self, seg, frames: list[np.ndarray], pause: float = 0.0, seed: int = 0):
        if not 0 <= pause <= 1:
            raise InputError(f"--pause-ms: got {pause * 1e3:g}, expected 0 to 1000 ms")
        self.seg, self.frames, self.pause = seg, frames, pause
        self._rng = np.random.default_rng(seed)
        self.samples: dict[str, list[float]] = {stage: [] for stage in self.STAGES}
        self.device: list[float] = []
        self.sizes: list[int] = []
        self._next = 0

    def warm(self, count: int) -> None:
        for i in range(count):
            self.seg(self.frames[i % len(self.frames)]).labels  # noqa: B018 - warm the labels route too

    def block(self, iterations: int | None, duration: float | None, bar=None) -> None:
        """Time one block of frames (continuing through the frame list where the last block stopped)."""
        n = 0
        for _ in _iterations(iterations, duration):
            if self.pause:
                time.sleep(self._rng.uniform(0, self.pause))
            self._time(self.frames[self._next % len(self.frames)])
            self._next += 1
            n += 1
            if bar is not None:
                bar.update(1)
        if n:
            self.sizes.append(n)

    def _time(self, frame: np.ndarray) -> None:
        start = time.perf_counter()
        result = self.seg(frame)
        built = time.perf_counter()
        result.labels  # noqa: B018 - a two-class result upsamples on first read: part of the frame's post
        done = time.perf_counter()
        self.samples["end_to_end"].append(done - start)
        for stage in ("pre", "infer", "post", "crf"):
            self.samples[stage].append(float(result.timings.get(stage, 0.0)) + (done - built if stage == "post" else 0.0))
        device_s = getattr(self.seg.runner, "last_device_latency_s", None)
        if device_s is not None:
            self.device.append(float(device_s))

    def result(self) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
        samples = {k: list(v) for k, v in self.samples.items()}
        if not any(samples["crf"]):
            del samples["crf"]
        if len(self.device) == len(samples["end_to_end"]):
            samples["device_infer"] = list(self.device)
        return samples, {stage: list(self.sizes) for stage in samples}


def _measure_batch(seg, frames, batch, iterations, duration, warmup, blocks) -> tuple[list[float], list[int]]:
    blob = np.concatenate([seg.preprocessor(frames[i % len(frames)])[0] for i in range(batch)], axis=0)
    feed = {seg.input_name: blob}
    try:
        seg.runner.infer(feed)
    except InputError as exc:
        raise InputError(f"--batch {batch}: the model does not take this batch size ({exc})") from exc
    for _ in range(warmup):
        seg.runner.infer(feed)
    times, sizes = [], []
    for count in _block_counts(iterations, blocks):
        n = 0
        for _ in _iterations(count, duration / blocks if duration else None):
            start = time.perf_counter()
            seg.runner.infer(feed)
            times.append(time.perf_counter() - start)
            n += 1
        if n:
            sizes.append(n)
    return times, sizes


def _progress(iterations: int | None, duration: float | None, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=iterations, desc="bench", unit="frame", leave=False,
                disable=not sys.stderr.isatty(), postfix=f"max {duration:.0f}s" if duration else None)
