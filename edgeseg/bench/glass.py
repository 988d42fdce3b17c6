"""Glass to glass: frames from a real source through every stage to a sink, each stage timed per frame.

Stages (seconds per frame): ``capture`` (read + decode, pacing waits excluded), ``pre``, ``infer``, ``post``,
``crf`` (with --crf), ``upsample`` (a two-class result's frame-size labels, built on first read), ``effect`` (the
overlay render), ``sink`` (encode/write or display), ``end_to_end`` (pre to labels, as in the in-memory bench) and
``glass_to_glass``: from the frame's capture timestamp to the end of its sink write. The timestamp is taken when
the source hands over the decoded frame (as in ``edgeseg run``), so ``capture`` is not part of it. No stage copies
to a device on the CPU runners; a GPU runner's copies are inside ``infer``.

The stages run one after another in one thread, so every frame's numbers add up and nothing waits in a queue.
``edgeseg run`` overlaps capture, inference and render in three threads: its frame rate is higher and its
latency includes queueing (its summary reports that per stage).
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from .measure import (DEFAULT_FRAME_SIZE, _artifact_at_size, _block_counts, _check_run_options, _iterations,
                      _progress, _result, _segmenter)

GLASS_STAGES = ("capture", "pre", "infer", "post", "crf", "upsample", "effect", "sink", "end_to_end",
                "glass_to_glass")


def run_glass(artifact_path, source, sink="null", backend: str = "auto", size=None, iterations: int | None = 200,
              duration: float | None = None, warmup: int = 10, crf=False, threads: int | None = None,
              blocks: int | None = None, progress: bool = True):
    """Benchmark ``artifact_path`` on frames read live from ``source`` (a file loops at its end), rendered with
    the segmenter's overlay and written to ``sink`` (``"null"``, a video file, a folder or ``"window"``).
    Returns a :class:`~edgeseg.bench.result.BenchResult` with the stages of :data:`GLASS_STAGES`."""
    from ..video import open_sink, open_source
    from ..video.render import default_render

    blocks = _check_run_options(1, warmup, iterations, duration, blocks)
    artifact = _artifact_at_size(artifact_path, size)
    seg = _segmenter(artifact, backend, crf, threads)
    src = open_source(source, loop=True)
    try:
        src.open()
        out = open_sink(sink, fps=src.fps)
        timer = _GlassTimer(seg, src, out, default_render(seg))
        try:
            timer.run(warmup, None, timed=False)
            bar = _progress(iterations, duration, progress)
            for count in _block_counts(iterations, blocks):
                timer.run(count, duration / blocks if duration else None, bar=bar)
            if bar is not None:
                bar.close()
        finally:
            out.close()
        samples = {k: v for k, v in timer.samples.items() if k != "crf" or any(v)}
        if not samples["end_to_end"]:
            raise InputError(f"--source: {source!r} gave no frames, expected a readable video, image folder or camera")
        config = {"warmup": warmup, "iterations": iterations, "duration": duration, "crf": bool(crf),
                  "threads": getattr(seg.runner, "threads", None) or threads, "blocks": blocks,
                  "frame_size": list(timer.frame_size or DEFAULT_FRAME_SIZE), "source": str(source),
                  "source_fps": src.fps, "sink": out.describe(), "mode": "glass_to_glass"}
    finally:
        src.close()
        seg.close()
    return _result(artifact_path, artifact, seg, samples, {k: list(timer.sizes) for k in samples}, 1, config)


class _GlassTimer:
    def __init__(self, seg, source, sink, render):
        self.seg, self.sink, self.render = seg, sink, render
        self.source = source
        self.frames = iter(source)
        self.samples: dict[str, list[float]] = {stage: [] for stage in GLASS_STAGES}
        self.sizes: list[int] = []
        self.frame_size: tuple[int, int] | None = None

    def run(self, iterations, duration, timed: bool = True, bar=None) -> None:
        n = 0
        for _ in _iterations(iterations, duration):
            try:
                image, stamp = next(self.frames)
            except StopIteration:
                break
            times = self._one(image, stamp)
            if timed:
                for stage, value in times.items():
                    self.samples[stage].append(value)
                n += 1
                if bar is not None:
                    bar.update(1)
        if timed and n:
            self.sizes.append(n)

    def _one(self, image: np.ndarray, stamp: float) -> dict[str, float]:
        self.frame_size = tuple(image.shape[:2])
        capture = float(getattr(self.source, "last_read_s", 0.0))
        t0 = time.perf_counter()
        result = self.seg.postprocess(self.seg.infer(self.seg.preprocess(image)))
        t1 = time.perf_counter()
        result.labels  # noqa: B018 - a two-class result builds its frame-size planes here
        t2 = time.perf_counter()
        shown = self.render(image, result) if self.render is not None else image
        t3 = time.perf_counter()
        self.sink.write(shown)
        t4 = time.perf_counter()
        timings = result.timings
        return {"capture": capture, "pre": timings["pre"], "infer": timings["infer"], "post": timings["post"],
                "crf": timings.get("crf", 0.0), "upsample": t2 - t1, "effect": t3 - t2, "sink": t4 - t3,
                "end_to_end": t2 - t0, "glass_to_glass": t4 - stamp}


def glass_table(result) -> str:
    """p50 / p99 per stage in ms, in pipeline order; share: of the glass-to-glass median (capture is before it)."""
    stages = result.stages
    total = stages["glass_to_glass"]["median"]
    lines = [f"glass to glass: {result.config.get('source')} -> {result.config.get('sink', {}).get('uri')} "
             f"(stages in sequence, one thread)",
             f"{'stage':<16}{'p50 ms':>9}{'p99 ms':>9}{'share':>8}"]
    for stage in GLASS_STAGES:
        if stage in stages:
            s = stages[stage]
            inside = stage not in ("capture", "end_to_end", "glass_to_glass")  # capture ends at the timestamp
            share = f"{100 * s['median'] / total:7.0f}%" if inside else ""
            lines.append(f"{stage:<16}{s['median'] * 1e3:9.2f}{s['p99'] * 1e3:9.2f}{share:>8}")
    return "\n".join(lines)


def is_glass(result) -> bool:
    return result.config.get("mode") == "glass_to_glass"

