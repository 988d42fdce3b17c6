"""Video sources opened from a URI: cameras, network streams, video files, image folders, DICOM cines.

A source is an iterable of :class:`CapturedFrame` ``(image, timestamp)``: ``image`` is a BGR uint8 array of
shape (H, W, 3), ``timestamp`` is ``time.perf_counter()`` when the frame was captured. It has ``is_live``
(a camera or network stream: frames keep coming whether or not anyone reads them), ``fps`` and ``size``
(``(width, height)`` in pixels, OpenCV's order), and closes when used with ``with``.

>>> from edgeseg.video import open_source
>>> with open_source("video.mp4") as source:          # doctest: +SKIP
...     for image, timestamp in source:
...         print(image.shape, timestamp)
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from .errors import SourceError

log = logging.getLogger("edgeseg.video")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
DICOM_SUFFIXES = (".dcm", ".dicom")
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
SCHEMES = ("file", "v4l2", "csi", *NETWORK_SCHEMES)
DEFAULT_FOLDER_FPS = 30.0


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
    cv2 = _cv2()
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


class FrameSource(Source):
    """Frames already in memory: a sequence of BGR uint8 (H, W, 3) arrays (tests, benchmarks, synthetic input).

    >>> frames = [np.zeros((48, 64, 3), np.uint8)] * 10
    >>> source = FrameSource(frames, fps=30, loop=True)
    """

    def __init__(self, frames, *, fps: float | None = 30.0, loop: bool = False, realtime: bool = False,
                 live: bool = False, uri: str = "<frames>"):
        super().__init__(uri, fps=fps, loop=loop, realtime=realtime)
        self._frames = [as_bgr_uint8(np.asarray(f), f"{uri}[{i}]") for i, f in enumerate(frames)]
        if not self._frames:
            raise InputError("frames: got an empty sequence, expected at least one (H, W, 3) uint8 frame")
        h, w = self._frames[0].shape[:2]
        self.size = (w, h)
        self.is_live = live or realtime
        self._next = 0

    def _open(self) -> None:
        self._next = 0

    def _read(self) -> np.ndarray | None:
        if self._next >= len(self._frames):
            return None
        self._next += 1
        return self._frames[self._next - 1]


class ImageFolderSource(Source):
    """Every image in a folder, sorted by name, played at ``fps`` (default 30). All images share one size."""

    def __init__(self, folder: str | Path, *, fps: float | None = None, loop: bool = False, realtime: bool = False):
        super().__init__(str(folder), fps=fps or DEFAULT_FOLDER_FPS, loop=loop, realtime=realtime)
        self.folder = Path(folder)
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{self.folder}: no images found, expected files ending in {', '.join(IMAGE_SUFFIXES)}")
        self._next = 0

    def _open(self) -> None:
        self._cv2 = _cv2()
        self._next = 0

    def _read(self) -> np.ndarray | None:
        if self._next >= len(self.files):
            return None
        path = self.files[self._next]
        self._next += 1
        image = self._cv2.imread(str(path), self._cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{path}: cannot read this image (corrupt or unsupported format)")
        size = (image.shape[1], image.shape[0])
        if self.size is None:
            self.size = size
        elif size != self.size:
            raise SourceError(f"{path}: image size is {size[0]}x{size[1]}, expected {self.size[0]}x{self.size[1]} "
                              "like the folder's first image (a stream has one frame size)")
        return image


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _cv2():
    from .._deps import require

    return require("cv2", "video and image sources and sinks")


def open_source(uri, loop: bool = False, fps: float | None = None, *, realtime: bool = False, **options) -> Source:
    """Open a video source from a URI (see the table); returns a :class:`Source` (use it with ``with``).

    =================================  ==========================================================
    ``0``, ``"0"``                     webcam index (OpenCV)
    ``/dev/video0``, ``v4l2:///dev/video0``  V4L2 camera
    ``csi://0``                        Jetson CSI camera (GStreamer ``nvarguscamerasrc``)
    ``rtsp://``, ``rtmp://``, ``http(s)://``  network stream (live)
    ``clip.mp4``, ``file:///clip.avi``  video file, every frame in order
    ``frames/``                        folder of images, sorted by name, at ``fps`` (default 30)
    ``cine.dcm``                       DICOM file (a cine loop or one image)
    =================================  ==========================================================

    ``loop`` restarts a file at its end; ``fps`` overrides the frame rate (required meaning for folders);
    ``realtime`` paces a file at ``fps`` like a camera. A :class:`Source` passes through unchanged.
    Camera options (``retries``, ``backoff``, ``width``, ``height``) go to :class:`~edgeseg.video.capture.VideoSource`.

    >>> with open_source("clip.mp4") as source:        # doctest: +SKIP
    ...     for image, timestamp in source: ...
    """
    from .capture import VideoSource, camera_source, csi_source
    from .dicom import DicomSource

    if isinstance(uri, Source):
        return uri
    if isinstance(uri, int) or (isinstance(uri, str) and uri.strip().isdigit()):
        return camera_source(int(uri), fps=fps, **options)
    if isinstance(uri, Path):
        uri = str(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise InputError(f"source: got {uri!r}, expected a camera index, a URI or a path (see `edgeseg run --help`)")
    uri = uri.strip()
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", uri)
    scheme = match.group(1).lower() if match else None
    if scheme is None and re.match(r"^/dev/video\d+$", uri):
        scheme, rest = "v4l2", uri
    elif scheme is not None:
        rest = match.group(2)
    if scheme == "v4l2":
        return camera_source(rest if rest.startswith("/") else f"/dev/{rest}", fps=fps, **options)
    if scheme == "csi":
        return csi_source(rest, fps=fps, **options)
    if scheme in NETWORK_SCHEMES:
        return VideoSource(uri, live=True, fps=fps, **options)
    if scheme not in (None, "file"):
        raise InputError(f"source: unknown scheme {scheme + '://'!r} in {uri!r}, expected one of "
                         f"{', '.join(s + '://' for s in SCHEMES)}, a camera index, a file or a folder")
    path = Path(rest if scheme == "file" else uri).expanduser()
    if not path.exists():
        raise SourceError(f"source file not found: {path}")
    if path.is_dir():
        return ImageFolderSource(path, fps=fps, loop=loop, realtime=realtime)
    if _is_dicom(path):
        return DicomSource(path, fps=fps, loop=loop, realtime=realtime)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"source: {path} is a single image, expected a video, a folder of images or a DICOM cine "
                         "(use `edgeseg.Segmenter` directly for one image)")
    return VideoSource(str(path), live=False, fps=fps, loop=loop, realtime=realtime, **options)
