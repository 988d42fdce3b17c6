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

import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .capture import VideoSource, camera_source, csi_source
from .dicom import DicomSource
from .errors import SourceError
from .frames import IMAGE_SUFFIXES, Source, as_bgr_uint8, load_cv2

DICOM_SUFFIXES = (".dcm", ".dicom")
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
SCHEMES = ("file", "v4l2", "csi", *NETWORK_SCHEMES)
DEFAULT_FOLDER_FPS = 30.0


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
        self._cv2 = load_cv2()
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
