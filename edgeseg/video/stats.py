"""Latency and rate bookkeeping of a stream, in constant memory, and the live status line.

Each stage keeps a count, a running mean and maximum over all frames, and the last ``window`` samples for
percentiles; so a stream that runs for days uses the same memory as one that runs for a minute. Times are in
seconds; the summary reports milliseconds.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

STAGES = ("capture", "pre", "infer", "post", "crf", "render", "end_to_end")
DEFAULT_WINDOW = 4096


class RollingStats:
    """Count, mean and max of every sample, and percentiles over the last ``window`` samples (seconds)."""

    def __init__(self, window: int = DEFAULT_WINDOW):
        self._samples = np.zeros(window, dtype=np.float64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self._samples[self.count % self._samples.size] = seconds
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def recent(self) -> np.ndarray:
        return self._samples[: min(self.count, self._samples.size)]

    def percentile(self, q: float) -> float:
        recent = self.recent()
        return float(np.percentile(recent, q)) if recent.size else float("nan")

    def summary_ms(self) -> dict:
        if not self.count:
            return {"count": 0}
        p50, p90, p99 = np.percentile(self.recent(), [50, 90, 99]) * 1e3
        return {"count": self.count, "mean": round(self.total / self.count * 1e3, 3), "p50": round(p50, 3),
                "p90": round(p90, 3), "p99": round(p99, 3), "max": round(self.max * 1e3, 3)}


class StreamStats:
    """What a stream did: frames captured/processed/dropped, per-stage latency, FPS. Thread-safe."""

    def __init__(self, window: int = DEFAULT_WINDOW):
        self._lock = threading.Lock()
        self.window = window
        self.stages = {name: RollingStats(window) for name in STAGES}
        self.captured = 0
        self.processed = 0
        self.dropped = 0
        self.started = time.perf_counter()
        self.first_done: float | None = None
        self.last_done: float | None = None
        self._done_times = np.zeros(min(window, 256), dtype=np.float64)  # for the current FPS

    def count_captured(self, capture_s: float) -> None:
        with self._lock:
            self.captured += 1
            self.stages["capture"].add(capture_s)

    def count_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n

    def count_done(self, timings: dict, done: float) -> None:
        """One frame finished rendering at ``done``; ``timings`` maps stage -> seconds."""
        with self._lock:
            for name, seconds in timings.items():
                if name in self.stages and name != "capture":
                    self.stages[name].add(float(seconds))
            self._done_times[self.processed % self._done_times.size] = done
            self.processed += 1
            self.first_done = self.first_done if self.first_done is not None else done
            self.last_done = done

    def fps(self) -> float:
        """Average frames per second from the first to the last finished frame."""
        if self.processed < 2 or self.last_done == self.first_done:
            return 0.0
        return (self.processed - 1) / (self.last_done - self.first_done)

    def current_fps(self) -> float:
        """Frames per second over the last (up to 256) finished frames."""
        n = min(self.processed, self._done_times.size)
        if n < 2:
            return 0.0
        recent = self._done_times[:n]
        span = recent.max() - recent.min()
        return (n - 1) / span if span > 0 else 0.0

    def status_line(self) -> str:
        e2e, infer = self.stages["end_to_end"], self.stages["infer"]
        return (f"frame {self.processed:>6}  {self.current_fps():6.1f} fps  "
                f"e2e p50 {e2e.percentile(50) * 1e3:6.1f} ms  infer p50 {infer.percentile(50) * 1e3:6.1f} ms  "
                f"dropped {self.dropped}")

    def summary(self) -> dict:
        with self._lock:
            wall = (self.last_done or time.perf_counter()) - self.started
            return {
                "frames_captured": self.captured,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "fps": round(self.fps(), 3),
                "wall_s": round(wall, 3),
                "latency_ms": {name: s.summary_ms() for name, s in self.stages.items()},
                "percentile_window": self.window,
            }


class StatusLine:
    """One status line rewritten in place with ``\\r`` on a terminal (stderr by default), at most ``every`` s."""

    def __init__(self, stream=None, every: float = 0.5, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.every = every
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._width = 0

    def update(self, text: str, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < self.every):
            return
        self._last = now
        self._width = max(self._width, len(text))
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()


def format_table(summary: dict) -> str:
    """The latency table of a summary (ms) as aligned plain text."""
    rows = [("stage", "p50 ms", "p99 ms", "mean ms", "max ms", "count")]
    for name, s in summary["latency_ms"].items():
        if s.get("count"):
            rows.append((name, f"{s['p50']:.2f}", f"{s['p99']:.2f}", f"{s['mean']:.2f}", f"{s['max']:.2f}",
                         str(s["count"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"frames: {summary['frames_processed']} processed, {summary['frames_dropped']} dropped, "
                 f"{summary['frames_captured']} captured; {summary['fps']:.1f} fps over {summary['wall_s']:.1f} s")
    busy = summary.get("thread_busy_fraction")
    if busy:
        lines.append("threads busy: " + ", ".join(f"{k} {v:.0%}" for k, v in busy.items())
                     + f" (bottleneck: {summary['bottleneck']})")
    return "\n".join(lines)
