"""OpenCV ``VideoCapture`` sources: video files, webcams, V4L2 devices, Jetson CSI cameras, network streams.

Files: every frame in order; a file that ends before the frame count in its header is reported as truncated
or corrupt (a :class:`SourceError`), not silently treated as a normal end. Live captures (cameras, network
streams) that cannot connect at first, or stop delivering frames later, are reopened with exponential backoff
(``backoff``, doubling, at most ``max_backoff`` seconds, ``retries`` attempts); each attempt is logged and kept
in ``events``, and reconnects after a drop are counted in ``reconnects``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..errors import InputError
from .errors import SourceError
from .frames import Source, load_cv2, log

CSI_PIPELINE = (
    "nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
    "framerate={fps}/1, format=NV12 ! nvvidconv flip-method={flip} ! video/x-raw, format=BGRx ! "
    "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false"
)


class VideoSource(Source):
    """Frames from ``cv2.VideoCapture(target, api)``; ``live`` marks cameras and network streams.

    ``capture_factory(target, api) -> capture`` replaces ``cv2.VideoCapture`` (tests use a fake camera).
    """

    def __init__(self, target, *, live: bool, fps: float | None = None, loop: bool = False, realtime: bool = False,
                 api: int | None = None, retries: int = 5, backoff: float = 0.5, max_backoff: float = 8.0,
                 width: int | None = None, height: int | None = None,
                 capture_factory: Callable | None = None, uri: str | None = None):
        if retries < 0:
            raise InputError(f"retries: got {retries!r}, expected a number of reconnect attempts >= 0")
        if not backoff > 0:
            raise InputError(f"backoff: got {backoff!r}, expected a positive number of seconds")
        super().__init__(uri or str(target), fps=fps, loop=loop, realtime=realtime)
        self.target = target
        self.is_live = live or realtime
        self.reconnecting = live  # a real device or stream; a paced file is not reconnected
        self.api = api
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.requested_size = (width, height)
        self.declared_frames = 0
        self._factory = capture_factory
        self._capture = None
        self._pass_frames = 0

    # --- opening -------------------------------------------------------------------------------------
    def _new_capture(self):
        if self._factory is not None:
            return self._factory(self.target, self.api)
        cv2 = load_cv2()
        api = cv2.CAP_ANY if self.api is None else self.api
        return cv2.VideoCapture(self.target, api)

    def _open(self) -> None:
        if not self.reconnecting:
            self._connect()
            return
        try:
            self._connect()
        except SourceError as exc:  # a live source may come up later: the same backoff as after a drop
            self._connect_with_backoff(exc)

    def _backoff(self, what: str):
        """Yield attempt numbers after waiting the doubling delay (logged, kept in ``events``); stops when
        interrupted."""
        for attempt in range(1, self.retries + 1):
            delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
            message = f"{self.uri}: {what}; reconnect attempt {attempt}/{self.retries} in {delay:.1f} s"
            log.warning(message)
            self.events.append(message)
            if self._interrupted.wait(delay):
                return
            yield attempt

    def _connect_with_backoff(self, error: SourceError) -> None:
        started = time.perf_counter()
        for attempt in self._backoff("cannot connect to the live source"):
            try:
                self._connect()
            except SourceError as exc:
                error = exc
                continue
            message = f"{self.uri}: connected after {attempt} attempt(s)"
            log.warning(message)
            self.events.append(message)
            return
        if self._interrupted.is_set():
            raise SourceError(f"{self.uri}: stopped while waiting to connect to the live source")
        raise SourceError(f"{error}; {self.retries} reconnect attempts over "
                          f"{time.perf_counter() - started:.1f} s failed too")

    def _connect(self) -> None:
        capture = self._new_capture()
        if not capture.isOpened():
            capture.release()
            kind = "video" if not self.reconnecting else (
                "stream" if "://" in self.uri and not self.uri.startswith("csi://") else "camera")
            problem = None if self.reconnecting else mp4_problem(self.target)
            if problem:
                raise SourceError(f"cannot open video {self.uri!r}: {problem}")
            raise SourceError(f"cannot open {kind} {self.uri!r}: OpenCV could not open it "
                              "(wrong index/path, device busy, unsupported codec, or no permission)")
        self._configure(capture)
        self._capture = capture
        self._pass_frames = 0

    def _configure(self, capture) -> None:
        cv2 = load_cv2()
        width, height = self.requested_size
        if width and height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if self.fps and self.reconnecting:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        w, h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w > 0 and h > 0:
            self.size = (w, h)
        reported_fps = float(capture.get(cv2.CAP_PROP_FPS))
        if self.fps is None and 0 < reported_fps < 1000:
            self.fps = reported_fps
        if not self.reconnecting:
            self.declared_frames = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)

    def _close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    # --- reading -------------------------------------------------------------------------------------
    def _grab(self) -> np.ndarray | None:
        ok, image = self._capture.read()
        if not ok or image is None:
            return None
        if self.size is None:
            self.size = (image.shape[1], image.shape[0])
        self._pass_frames += 1
        return image

    def _read(self) -> np.ndarray | None:
        image = self._grab()
        if image is not None:
            return image
        if self.reconnecting:
            return self._reconnect()
        missing = self.declared_frames - self._pass_frames
        if self.declared_frames and missing > max(1, self.declared_frames // 100):
            raise SourceError(f"{self.uri}: the video stopped decoding after {self._pass_frames} of "
                              f"{self.declared_frames} frames (truncated or corrupt file)")
        return None

    def _reconnect(self) -> np.ndarray | None:
        """Reopen a live capture with exponential backoff; the next frame, or None when interrupted."""
        started = time.perf_counter()
        for attempt in self._backoff("no frame from the live source"):
            self._close()
            try:
                self._connect()
            except SourceError:
                continue
            image = self._grab()
            if image is not None:
                self.reconnects += 1
                message = f"{self.uri}: reconnected after {attempt} attempt(s)"
                log.warning(message)
                self.events.append(message)
                return image
        if self._interrupted.is_set():
            return None
        raise SourceError(f"{self.uri}: live source disconnected; {self.retries} reconnect attempts over "
                          f"{time.perf_counter() - started:.1f} s failed")

    def describe(self) -> dict:
        return {**super().describe(), "declared_frames": self.declared_frames or None}


MP4_BOXES = (b"ftyp", b"wide", b"free", b"skip", b"mdat", b"moov", b"pnot", b"uuid")


def mp4_problem(path) -> str | None:
    """Why an MP4/MOV file (ISO base media) cannot be played, read from its top-level boxes: None when it has
    its ``moov`` box (the index) or is not such a file. A recording cut off before it was finished has its
    frames (``mdat``) but not the index, which MP4 writers put at the end."""
    import os
    import struct

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset, first = 0, True
            while offset + 8 <= size:
                f.seek(offset)
                length, kind = struct.unpack(">I4s", f.read(8))
                if first and kind not in MP4_BOXES:
                    return None
                first = False
                if kind == b"moov":
                    return None
                if length == 1:
                    length = struct.unpack(">Q", f.read(8))[0]
                elif length == 0:
                    length = size - offset
                if length < 8:
                    break
                offset += length
    except (OSError, TypeError, struct.error):
        return None
    if first:
        return None
    cut = f"; the file ends inside a box, {offset - size} bytes short" if offset > size else ""
    return (f"truncated or missing index (incomplete MP4: no 'moov' box{cut}); the recording was probably "
            "cut off or stopped before its writer finished (MP4 writers put the index last)")


def camera_source(device, *, fps: float | None = None, **options) -> VideoSource:
    """A webcam by index (``0``) or a V4L2 device path (``/dev/video0``)."""
    api = None
    if isinstance(device, str):
        api = load_cv2().CAP_V4L2
    return VideoSource(device, live=True, fps=fps, api=options.pop("api", api), **options)


def csi_source(spec: str, *, fps: float | None = None, width: int | None = None, height: int | None = None,
               flip: int = 0, **options) -> VideoSource:
    """A Jetson CSI camera (``csi://0``) through GStreamer's ``nvarguscamerasrc``; needs OpenCV with GStreamer."""
    sensor = spec.strip("/") or "0"
    if not sensor.isdigit():
        raise InputError(f"source: got 'csi://{spec}', expected csi://N with a sensor number N (csi://0)")
    cv2 = load_cv2()
    if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        raise SourceError(
            f"csi://{sensor} needs OpenCV built with GStreamer, and this OpenCV ({cv2.__version__}) has none "
            "(the PyPI opencv-python wheels never do). On a Jetson use JetPack's OpenCV "
            "(`sudo apt-get install python3-opencv` and a venv made with --system-site-packages)."
        )
    pipeline = CSI_PIPELINE.format(sensor=sensor, width=width or 1280, height=height or 720,
                                   fps=int(fps or 30), flip=flip)
    return VideoSource(pipeline, live=True, fps=fps or 30, api=cv2.CAP_GSTREAMER, uri=f"csi://{sensor}", **options)
