"""The bottom of the video package: the :class:`Source` base class, the :class:`CapturedFrame` record, BGR
conversion and the OpenCV loader. Sources (files, folders, cameras, DICOM), sinks and renderers import from
here; nothing here imports them (no loop between the source kinds and their base).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from .errors import SourceError

log = logging.getLogger("edgeseg.video")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def load_cv2():
    """The ``cv2`` module; raises :class:`~edgeseg.errors.MissingDependencyError` naming the extra without it."""
    from .._deps import require

    return require("cv2", "video and image sources and sinks")


class CapturedFrame(NamedTuple):
    """One frame: ``image`` BGR uint8 (H, W, 3); ``timestamp`` ``time.perf_counter()`` at capture."""

    image: np.ndarray
    timestamp: float


class Source:
    """Base class: subclasses implement ``_open()``, ``_read() -> image | None`` (None at end) and ``_close()``.

    ``loop=True`` restarts a finite source at its end; ``realtime=True`` paces a finite source at ``fps`` like a
    camera and marks it live (so the streaming loop drops frames when inference is slower than ``fps``).
    """

    is_live: bool = False

    def __init__(self, uri: str, *, fps: float | None = None, loop: bool = False, realtime: bool = False):
        if fps is not None and not fps > 0:
            raise InputError(f"fps: got {fps!r}, expected a positive number of frames per second")
        self.uri = uri
        self.fps = float(fps) if fps else None
        self.loop = loop
        self.realtime = realtime
        self.size: tuple[int, int] | None = None
        self.frames_read = 0
        self.reconnects = 0
        self.last_read_s = 0.0  # seconds the last frame took to read/decode (pacing waits excluded)
        self.events: list[str] = []  # reconnects and other things worth reporting, in order
        self._interrupted = threading.Event()
        self._opened = False
        if realtime:
            self.is_live = True

    # --- subclass interface ------------------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> np.ndarray | None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _rewind(self) -> None:
        self._close()
        self._open()

    # --- public --------------------------------------------------------------------------------------
    def open(self) -> Source:
        if not self._opened:
            self._open()
            self._opened = True
        return self

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._close()

    def interrupt(self) -> None:
        """Ask a running iteration (and any reconnect backoff) to stop soon; safe from another thread."""
        self._interrupted.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    def __enter__(self) -> Source:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[CapturedFrame]:
        self.open()
        pace_start, paced = time.perf_counter(), 0
        frames_this_pass = 0
        while not self._interrupted.is_set():
            t0 = time.perf_counter()
            image = self._read()
            self.last_read_s = time.perf_counter() - t0
            if image is None:
                if not self.loop or self._interrupted.is_set():
                    return
                if frames_this_pass == 0:
                    raise SourceError(f"{self.uri}: no frames to loop over")
                self._rewind()
                frames_this_pass = 0
                continue
            if self.realtime and self.fps:
                paced += 1
                delay = pace_start + paced / self.fps - time.perf_counter()
                if delay > 0 and self._interrupted.wait(delay):
                    return
            frames_this_pass += 1
            self.frames_read += 1
            yield CapturedFrame(image, time.perf_counter())

    def describe(self) -> dict:
        """Facts for a summary: uri, kind, live, fps, size, frames read, reconnects."""
        return {"uri": self.uri, "kind": type(self).__name__, "live": self.is_live, "fps": self.fps,
                "size": list(self.size) if self.size else None, "frames_read": self.frames_read,
                "reconnects": self.reconnects, "loop": self.loop}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, live={self.is_live}, fps={self.fps}, size={self.size})"


def as_bgr_uint8(image: np.ndarray, where: str) -> np.ndarray:
    """(H, W) gray or (H, W, 1|3|4) -> (H, W, 3) BGR uint8; other dtypes/shapes raise naming ``where``."""
    if image.dtype != np.uint8:
        raise SourceError(f"{where}: frame dtype is {image.dtype}, expected uint8")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return gray_to_bgr(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    raise SourceError(f"{where}: frame shape is {image.shape}, expected (H, W) or (H, W, 3)")


def gray_to_bgr(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 1) uint8 -> (H, W, 3) with B = G = R (OpenCV: 20x faster than ``np.repeat``)."""
    cv2 = load_cv2()
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
