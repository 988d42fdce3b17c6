"""The streaming loop: capture, inference and rendering in three threads joined by bounded channels.

capture thread --[frames]--> inference thread --[segmentations]--> render thread --[results]--> your loop

An ``edgeseg.Segmenter`` is split over the threads: it preprocesses in the capture thread and postprocesses
(smoothing, CRF) in the render thread, so the inference thread runs only the model; on a small CPU that is
the difference between the stream reaching the model's own rate or not. Any other callable runs whole in the
inference thread.

A live source (camera, network stream, ``realtime=True`` file) keeps only the newest frame when inference is
slower than the camera and counts the frames it dropped; a file processes every frame in order. End of stream,
``break`` in your loop, Ctrl-C and errors all stop every thread (an abort Event, joins with timeouts). A source
that fails mid-stream (corrupt or truncated file, camera gone after its reconnects) lets the frames already
captured finish, closes the sink (a valid, playable partial video) and raises the error from your loop.

>>> import edgeseg
>>> for result in edgeseg.stream("clip.mp4", "model.onnx", sink="out.mp4"):     # doctest: +SKIP
...     print(result.index, result.labels.shape, result.timings["end_to_end"])
"""

from __future__ import annotations

import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgesegError, InputError
from .channel import END, Channel
from .errors import StreamError
from .frames import Source, log
from .render import default_render
from .shield import SignalShield
from .sinks import NullSink, Sink, open_sink
from .sources import open_source
from .stats import StatusLine, StreamStats

JOIN_TIMEOUT_S = 5.0
SINK_CLOSE_TIMEOUT_S = 120.0  # an encoder flush of a long H.264 lookahead on a slow CPU, with margin
_RUNNING: weakref.WeakSet[Stream] = weakref.WeakSet()


def _shutdown_running_streams() -> None:
    """At interpreter exit, stop streams whose iteration was abandoned (not closed, not exhausted): their
    non-daemon threads would otherwise block the exit while they wait on full queues."""
    for running in list(_RUNNING):
        running.close()


if hasattr(threading, "_register_atexit"):  # runs before the interpreter joins non-daemon threads
    threading._register_atexit(_shutdown_running_streams)


@dataclass
class StreamResult:
    """One processed frame. The same record carries the frame through the threads: the capture thread creates
    it, the inference and render threads fill it in, and your loop receives it complete.

    Attributes:
        frame: (H, W, 3) BGR uint8, the captured frame.
        labels: (H, W) uint8 class per pixel. probs: (C, H, W) float32 probabilities (read from
            ``segmentation``, built on first access for two-class models).
        timings: seconds per stage: capture, pre, infer, post, crf, render, end_to_end (capture to render done).
        index: the frame's number in capture order (gaps are frames dropped by a live source).
        capture_time: ``time.perf_counter()`` at capture. image: the rendered frame (None without a renderer).
        segmentation: the segmenter's full result. dropped: frames dropped so far in this stream.
    """

    frame: np.ndarray
    labels: np.ndarray | None
    timings: dict[str, float]
    index: int
    capture_time: float
    image: np.ndarray | None = None
    segmentation: Any = None
    dropped: int = 0
    # Between the threads only (cleared when the frame is done): a Segmenter's FrameInFlight between its stages,
    # or the error its preprocessing raised in the capture thread (the inference stage raises it).
    _in_flight: Any = field(default=None, init=False, repr=False, compare=False)
    _error: BaseException | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def latency_s(self) -> float:
        return self.timings["end_to_end"]

    @property
    def probs(self) -> np.ndarray:
        return self.segmentation.probs


@dataclass
class _Failure:
    stage: str
    index: int
    error: BaseException


class Stream:
    """A running (or ready) stream; iterate it for :class:`StreamResult`, then read :meth:`summary`.

    Build it with :func:`stream`. Iterate once. ``with`` or ``close()`` stops it early.
    """

    def __init__(self, source: Source, segmenter: Callable, *, render: Callable | None, sink: Sink,
                 queue_size: int, max_frames: int | None, status: bool | None,
                 owns: tuple[bool, bool, bool], mask_filter: Any = None):
        self.source, self.segmenter, self.render, self.sink = source, segmenter, render, sink
        self.mask_filter = mask_filter  # stabilise/refine in the render thread (MaskFilter), or None
        self.max_frames = max_frames
        self.stats = StreamStats()
        self.status = StatusLine(enabled=status) if status is not False else None
        self._owns_source, self._owns_sink, self._owns_segmenter = owns
        self._abort = threading.Event()  # stop everything now
        self._enough = threading.Event()  # max_frames reached: stop capturing, drain
        live = source.is_live
        # live: one item per hand-off, so a slow consumer makes capture drop frames instead of queueing latency
        capacity = 1 if live else queue_size
        self.frames = Channel(capacity, latest=live, abort=self._abort, name="frames")
        self.segmented = Channel(capacity, latest=False, abort=self._abort, name="segmented")
        self.results = Channel(capacity, latest=False, abort=self._abort, name="results")
        # A Segmenter's three stages spread over the threads: preprocess with capture, infer alone, postprocess
        # with render; the inference thread then only runs the model. Other callables run whole in inference.
        self._staged = _is_staged(segmenter)
        self._threads: list[threading.Thread] = []
        self._busy = {"capture": 0.0, "inference": 0.0, "render": 0.0}  # seconds of work; each thread owns its key
        self._failures: list[_Failure] = []
        self._started = False
        self._shut = False
        self._closing_sink = False  # the render thread is finishing the sink (shutdown waits for it)
        self.stopped_by: str | None = None
        self.threads_left: list[str] = []

    # --- public --------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[StreamResult]:
        if self._started:
            raise StreamError("a stream can be iterated once; call edgeseg.stream(...) again to restart")
        self._start()
        reason = "consumer"  # the caller left the for loop early (break, or an exception in its body)
        try:
            while True:
                result = self.results.get()
                if result is END:
                    break
                yield result
                if self.status:
                    self.status.update(self.stats.status_line())
            reason = "error" if self._failures else ("limit" if self._enough.is_set() else "end")
            if self._abort.is_set() and not self._failures:
                reason = "closed"
        except KeyboardInterrupt:
            reason = "interrupt"
            raise
        finally:
            self.stopped_by = self.stopped_by or reason
            self._shutdown()
        self._raise_failure()

    def run(self) -> dict:
        """Consume the whole stream (results go to the sink only) and return :meth:`summary`."""
        for _ in self:
            pass
        return self.summary()

    def close(self) -> None:
        """Stop all threads now and release what the stream opened. Idempotent."""
        self.stopped_by = self.stopped_by or "closed"
        self._shutdown()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def summary(self) -> dict:
        """Frames, FPS, per-stage latency (ms p50/p90/p99/mean/max), source, sink, errors, how it stopped."""
        data = self.stats.summary()
        data.update({
            "stopped_by": self.stopped_by,
            "source": self.source.describe(),
            "sink": self.sink.describe(),
            "events": list(self.source.events),
            "errors": [f"{f.stage} (frame {f.index}): {f.error}" for f in self._failures],
            "threads_left": list(self.threads_left),
            "queue_high_water": {c.name: c.high_water for c in (self.frames, self.segmented, self.results)},
        })
        if self.mask_filter is not None:
            data["mask_filter"] = self.mask_filter.describe()
        wall = data["wall_s"]
        if wall > 0 and data["frames_processed"]:
            # the share of the stream's time each thread was working: the one near 1.0 is the bottleneck
            data["thread_busy_fraction"] = {k: round(v / wall, 3) for k, v in self._busy.items()}
            data["bottleneck"] = max(self._busy, key=self._busy.get)
        return data

    # --- threads -------------------------------------------------------------------------------------
    def _start(self) -> None:
        self._started = True
        self.source.open()
        if hasattr(self.segmenter, "reset"):
            self.segmenter.reset()  # smoothing history of an earlier stream must not leak in
        if self.mask_filter is not None:
            self.mask_filter.reset()
        self.stats = StreamStats()
        _RUNNING.add(self)
        for name, target in (("capture", self._capture), ("inference", self._infer), ("render", self._render)):
            thread = threading.Thread(target=target, name=f"edgeseg-{name}", daemon=False)
            thread.start()
            self._threads.append(thread)

    def _fail(self, stage: str, index: int, error: BaseException, fatal: bool) -> None:
        self._failures.append(_Failure(stage, index, error))
        log.debug("%s stage failed at frame %d: %s", stage, index, error)
        if fatal:
            self._abort.set()

    def _capture(self) -> None:
        index = 0
        frames = iter(self.source)
        try:
            while not (self._abort.is_set() or self._enough.is_set()):
                if self.max_frames is not None and not self.source.is_live and index >= self.max_frames:
                    break
                try:
                    image, timestamp = next(frames)
                except StopIteration:
                    break
                capture_s = self.source.last_read_s
                self._busy["capture"] += capture_s
                self.stats.count_captured(capture_s)
                item = StreamResult(frame=image, labels=None, timings={"capture": capture_s}, index=index,
                                    capture_time=timestamp)
                if self._staged:
                    self._preprocess(item)
                dropped = self.frames.put(item)
                if dropped:
                    self.stats.count_dropped(dropped)
                index += 1
        except Exception as exc:  # noqa: BLE001 - reported to the caller after the captured frames finish
            self._fail("capture", index, exc, fatal=False)
        finally:
            frames.close()
            self.frames.close()

    def _preprocess(self, item: StreamResult) -> None:
        t0 = time.perf_counter()
        try:
            item._in_flight = self.segmenter.preprocess(item.frame)
        except Exception as exc:  # noqa: BLE001 - a bad frame fails the inference stage, as an unstaged call would
            item._error = exc
        self._busy["capture"] += time.perf_counter() - t0

    def _infer(self) -> None:
        item = None
        try:
            while (item := self.frames.get()) is not END:
                if self._enough.is_set():
                    continue
                if item._error is not None:
                    raise item._error
                t0 = time.perf_counter()
                if item._in_flight is not None:
                    self.segmenter.infer(item._in_flight)
                else:
                    item.segmentation = self.segmenter(item.frame)
                segment_s = time.perf_counter() - t0
                item.timings["infer"] = segment_s  # replaced by the segmentation's own timings when it has them
                self._busy["inference"] += segment_s
                self.segmented.put(item)
        except Exception as exc:  # noqa: BLE001
            self._fail("inference", getattr(item, "index", -1), exc, fatal=True)
        finally:
            self.segmented.close()

    def _render(self) -> None:
        item = None
        try:
            while (item := self.segmented.get()) is not END:
                if self._enough.is_set():
                    continue
                self.results.put(self._render_one(item))
                if self.max_frames is not None and self.stats.processed >= self.max_frames:
                    self._enough.set()
                    self.source.interrupt()
                if self.sink.stop_requested:  # the user closed the window
                    self.stopped_by = "user"
                    self._enough.set()
                    self.source.interrupt()
        except Exception as exc:  # noqa: BLE001
            self._fail("render", getattr(item, "index", -1), exc, fatal=True)
        finally:
            self.results.close()
            if self._owns_sink:
                self._closing_sink = True
                try:
                    self.sink.close()
                except Exception as exc:  # noqa: BLE001
                    self._fail("sink", self.sink.frames_written, exc, fatal=True)

    def _render_one(self, item: StreamResult) -> StreamResult:
        if item._in_flight is not None:
            t_post = time.perf_counter()
            item.segmentation = self.segmenter.postprocess(item._in_flight)
            item._in_flight = None  # the model input and output are not part of the result
            self._busy["render"] += time.perf_counter() - t_post
        if self.mask_filter is not None:
            t_filter = time.perf_counter()
            item.segmentation = self.mask_filter(item.frame, item.segmentation)
            self._busy["render"] += time.perf_counter() - t_filter
        seg = item.segmentation
        t0 = time.perf_counter()
        image = self.render(item.frame, seg) if self.render is not None else None
        if not isinstance(self.sink, NullSink):
            self.sink.write(image)
        labels = seg.labels  # a two-class result builds them on first read: render-stage work, timed as such
        done = time.perf_counter()
        timings = item.timings
        seg_timings = getattr(seg, "timings", None)
        if seg_timings:  # the segmenter's own per-stage split replaces the loop's one "infer" figure
            del timings["infer"]
            timings.update(seg_timings)
        timings["render"] = done - t0
        self._busy["render"] += done - t0
        timings["end_to_end"] = done - item.capture_time
        self.stats.count_done(timings, done)
        item.labels, item.image, item.dropped = labels, image, self.stats.dropped
        return item

    # --- shutdown ------------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        shield = SignalShield()  # a Ctrl-C inside Thread.join would abandon the sink's flush (see shield.py)
        with shield:
            self._stop()
        if self.stopped_by == "interrupt":  # already stopping for Ctrl-C: more of them add nothing
            shield.received = [s for s in shield.received if s != signal.SIGINT]
        shield.redeliver()

    def _stop(self) -> None:
        _RUNNING.discard(self)
        self._abort.set()
        self.source.interrupt()
        for channel in (self.frames, self.segmented, self.results):
            channel.wake()
        deadline = time.perf_counter() + JOIN_TIMEOUT_S
        for thread in self._threads:
            thread.join(max(deadline - time.perf_counter(), 0.1))
        render = next((t for t in self._threads if t.name == "edgeseg-render"), None)
        if render is not None and render.is_alive() and self._closing_sink:
            log.info("finishing %s", self.sink.uri)  # bounded work (an encoder flush): the file must be complete
            render.join(SINK_CLOSE_TIMEOUT_S)
        self.threads_left = [t.name for t in self._threads if t.is_alive()]
        if self.threads_left:
            log.error("stream threads still running after %.0f s: %s (a source read is blocking)",
                      JOIN_TIMEOUT_S, ", ".join(self.threads_left))
        if self._owns_sink and not self._threads:
            self.sink.close()  # never started: nothing else will close it
        if self._owns_source and "edgeseg-capture" not in self.threads_left:
            self.source.close()
        if self._owns_segmenter and hasattr(self.segmenter, "close") and "edgeseg-inference" not in self.threads_left:
            self.segmenter.close()
        if self.status:
            self.status.update(self.stats.status_line(), force=True)
            self.status.finish()

    def _raise_failure(self) -> None:
        if not self._failures:
            return
        first = self._failures[0]
        if isinstance(first.error, EdgesegError):
            raise first.error
        raise StreamError(f"{first.stage} stage failed at frame {first.index}: "
                          f"{type(first.error).__name__}: {first.error}") from first.error


def _as_segmenter(model, backend: str, crf, smooth, threads) -> tuple[Callable, bool]:
    """(segmenter, created_here): a path/Artifact/Runner becomes a Segmenter; a callable is used as it is."""
    from ..pipeline import Segmenter

    is_model_ref = isinstance(model, (str, Path)) or type(model).__name__ == "Artifact" or (
        hasattr(model, "infer") and not isinstance(model, Segmenter))  # a Runner
    if is_model_ref:
        return Segmenter(model, backend=backend, crf=crf, smooth=smooth, threads=threads), True
    if not callable(model):
        raise InputError(f"model: got {type(model).__name__}, expected a model path, an Artifact, a Runner or a "
                         "Segmenter (a callable frame -> Segmentation)")
    if crf not in (None, False) or threads is not None or backend != "auto":
        raise InputError("crf/threads/backend: these configure a Segmenter built from a model path; you passed a "
                         "ready segmenter, so set them on it: Segmenter(model, crf=..., threads=..., backend=...)")
    if smooth is not None:
        if not hasattr(model, "smooth"):
            raise InputError(f"smooth: got {smooth!r}, but {type(model).__name__} has no `smooth` setting")
        if not (isinstance(smooth, (int, float)) and 0.0 <= smooth < 1.0):
            raise InputError(f"smooth: got {smooth!r}, expected None or a number in [0, 1)")
        model.smooth = smooth
    return model, False


def stream(source, model, *, sink=None, render=None, smooth: float | None = None, crf=None,
           backend: str = "auto", threads: int | None = None, loop: bool = False, fps: float | None = None,
           realtime: bool = False, max_frames: int | None = None, queue_size: int = 4,
           status: bool | None = False, sink_options: dict | None = None, stabilize=None,
           refine=None) -> Stream:
    """Segment a video stream: ``for result in edgeseg.stream(source, model): ...``.

    Args:
        source: a URI or path for :func:`open_source` (``0``, ``/dev/video0``, ``csi://0``, ``rtsp://...``,
            ``clip.mp4``, ``frames/``, ``cine.dcm``) or an open :class:`Source` (then you close it).
        model: a model path, :class:`~edgeseg.artifact.Artifact` or Runner (a Segmenter is built with
            ``backend``, ``crf``, ``smooth``, ``threads``), or a ready Segmenter / any callable
            ``(H, W, 3) uint8 frame -> object with labels (H, W), probs (C, H, W), timings``.
        sink: where rendered frames go: None (nowhere), a URI for :func:`open_sink` (``out.mp4``, ``frames/``,
            ``window``) or an open :class:`Sink` (then you close it). ``sink_options`` go to :func:`open_sink`
            (e.g. ``{"preset": "ultrafast"}`` for a fast H.264 encode).
        render: ``(frame, segmentation) -> (H, W, 3) uint8`` image for the sink; default the segmenter's
            ``overlay`` (for an ``edgeseg.Segmenter``, the identical but faster
            :class:`~edgeseg.video.render.Overlay`); ``False`` renders nothing (``result.image`` is None;
            needs ``sink=None``).
        smooth: EMA weight in [0, 1) for probabilities across frames (Segmenter ``smooth``).
        stabilize: ``"none"``, ``"ema"``, ``"motion"`` or a :class:`~edgeseg.stabilize.Stabilizer`: temporal
            filter run in the render thread on any segmenter's result (``motion`` averages only where the image
            is still: no ghosting). Not together with ``smooth``.
        refine: ``"none"`` or ``"guided"`` (or a :class:`~edgeseg.refine.GuidedUpsampler`): upsample the
            probabilities to frame size with the fast guided filter, so mask edges follow the frame's edges.
        loop, fps, realtime: for :func:`open_source` (``realtime`` paces a file like a live camera).
        max_frames: stop after this many processed frames. queue_size: capacity of each file-mode queue (live: 1).
        status: live status line on stderr (None: when stderr is a terminal).

    Returns a :class:`Stream`: iterate it for :class:`StreamResult`; ``summary()`` afterwards.
    """
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise InputError(f"max_frames: got {max_frames!r}, expected a positive integer or None")
    if not isinstance(queue_size, int) or queue_size < 1:
        raise InputError(f"queue_size: got {queue_size!r}, expected a positive integer")
    mask_filter = _mask_filter(stabilize, refine, smooth)
    owns_source = not isinstance(source, Source)
    src = open_source(source, loop=loop, fps=fps, realtime=realtime)
    segmenter, owns_segmenter = None, False
    try:
        src.open()  # fails now, not in a thread, when the source cannot open; and sets fps/size for the sink
        segmenter, owns_segmenter = _as_segmenter(model, backend, crf, smooth, threads)
        if render is None:
            render = default_render(segmenter)
        elif render is False:
            render = None
        elif not callable(render):
            raise InputError(f"render: got {render!r}, expected None, False or a callable (frame, seg) -> image")
        owns_sink = not isinstance(sink, Sink)
        out = open_sink(sink, fps=src.fps, size=None, **(sink_options or {}))
        if render is None and not isinstance(out, NullSink):
            raise InputError(f"render: nothing renders frames for sink {out.uri!r}; pass a render callable "
                             "or use a segmenter with an overlay()")
    except BaseException:
        if owns_source:
            src.close()
        if owns_segmenter and hasattr(segmenter, "close"):
            segmenter.close()
        raise
    return Stream(src, segmenter, render=render, sink=out, queue_size=queue_size, max_frames=max_frames,
                  status=status, owns=(owns_source, owns_sink, owns_segmenter), mask_filter=mask_filter)


def _mask_filter(stabilize, refine, smooth):
    """A MaskFilter for the render stage, or None when neither option asks for one."""
    if stabilize in (None, "none") and refine in (None, "none"):
        return None
    from .maskfilter import MaskFilter

    mask_filter = MaskFilter(stabilize, refine)
    if mask_filter.stabilizer.active and smooth is not None:
        raise InputError(f"smooth/stabilize: got smooth={smooth!r} and stabilize={mask_filter.stabilizer.mode!r}, "
                         "expected one temporal filter (stabilize='ema' is the same EMA: Stabilizer('ema', alpha=...))")
    return mask_filter if mask_filter.active else None


def _is_staged(segmenter: Any) -> bool:
    from ..pipeline import Segmenter

    return isinstance(segmenter, Segmenter)
