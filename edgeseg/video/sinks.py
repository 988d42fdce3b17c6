"""Where rendered frames go: a window, a video file, a folder of images, or nowhere.

A sink takes BGR uint8 frames of shape (H, W, 3) through ``write(image)`` and finishes its output on
``close()`` (a video file is valid and playable after ``close``, also when the stream stopped early).
``size`` is ``(width, height)``; when None it is taken from the first frame, and every later frame must match.

>>> from edgeseg.video import open_sink
>>> with open_sink("out.mp4", fps=30, size=(640, 480)) as sink:   # doctest: +SKIP
...     sink.write(image)
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError
from .errors import SinkError
from .frames import IMAGE_SUFFIXES, gray_to_bgr, load_cv2, log

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi")
CODECS = ("h264", "mp4v", "mjpg")
# libx264 speed presets, fastest first. CPU per 640x480 frame on one Xeon core (benchmarks/stream.py notes):
# ultrafast 1.8 ms, superfast 3.0 ms, veryfast 4.2 ms (files about 3x smaller than ultrafast).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
NULL_URIS = ("null", "null://", "none", "")
WINDOW_URIS = ("window", "display", "display://", "display://0")


class Sink:
    """Base class: subclasses implement ``_open()`` (called at the first frame), ``_write(image)``, ``_close()``."""

    def __init__(self, uri: str, fps: float | None = None, size: tuple[int, int] | None = None):
        if fps is not None and not fps > 0:
            raise InputError(f"fps: got {fps!r}, expected a positive number of frames per second")
        if size is not None and (len(size) != 2 or any(int(s) <= 0 for s in size)):
            raise InputError(f"size: got {size!r}, expected (width, height) in pixels")
        self.uri = uri
        self.fps = float(fps) if fps else 30.0
        self.size = (int(size[0]), int(size[1])) if size is not None else None
        self.frames_written = 0
        self.stop_requested = False  # a window sets this when the user presses q or Esc
        self._opened = False
        self._closed = False

    def _open(self) -> None:
        pass

    def _write(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def write(self, image: np.ndarray) -> None:
        """Append one BGR uint8 (H, W, 3) frame (a gray (H, W) frame is expanded to 3 channels)."""
        if self._closed:
            raise SinkError(f"{self.uri}: sink is closed")
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise InputError(f"image: dtype {image.dtype} for sink {self.uri!r}, expected uint8")
        if image.ndim == 2:
            image = gray_to_bgr(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"image: shape {image.shape} for sink {self.uri!r}, expected (H, W, 3) BGR")
        size = (image.shape[1], image.shape[0])
        if self.size is None:
            self.size = size
        elif size != self.size:
            raise InputError(f"image: size {size[0]}x{size[1]} for sink {self.uri!r}, expected "
                             f"{self.size[0]}x{self.size[1]} (a sink keeps one frame size)")
        if not self._opened:
            self._open()
            self._opened = True
        self._write(np.ascontiguousarray(image))
        self.frames_written += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._opened:
            self._close()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        return {"uri": self.uri, "kind": type(self).__name__, "fps": self.fps,
                "size": list(self.size) if self.size else None, "frames_written": self.frames_written}


class NullSink(Sink):
    """Discards frames (benchmarks, or when you only want the results in Python)."""

    def _write(self, image: np.ndarray) -> None:
        pass


class WindowSink(Sink):
    """An OpenCV window; pressing q or Esc sets ``stop_requested``. Needs a display and OpenCV with a GUI."""

    def __init__(self, uri: str = "window", fps: float | None = None, size=None, title: str = "edgeseg"):
        super().__init__(uri, fps, size)
        self.title = title
        self._cv2 = load_cv2()
        problem = window_problem(self._cv2)
        if problem:
            raise SinkError(f"cannot open a window: {problem}. Write to a file instead (--sink out.mp4)")

    def _open(self) -> None:
        self._cv2.namedWindow(self.title, self._cv2.WINDOW_NORMAL)

    def _write(self, image: np.ndarray) -> None:
        self._cv2.imshow(self.title, image)
        if self._cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop_requested = True

    def _close(self) -> None:
        self._cv2.destroyWindow(self.title)
        self._cv2.waitKey(1)


def window_problem(cv2) -> str | None:
    """Why a window cannot open here (no GUI in this OpenCV build, or no display), or None."""
    gui = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                if line.strip().startswith("GUI:")), "")
    if gui.upper() == "NONE":
        return (f"this OpenCV ({cv2.__version__}) was built without a GUI (opencv-python-headless); "
                "install opencv-python for windows")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    return None


class VideoFileSink(Sink):
    """A video file. ``codec="h264"`` (default for .mp4/.mov/.mkv when PyAV is installed) encodes with libx264
    through PyAV; otherwise OpenCV writes ``mp4v`` (.mp4/.mov/.mkv) or ``mjpg`` (.avi). H.264 needs even sizes:
    an odd width or height is padded by one replicated pixel, with a warning.

    ``crf`` (0-51, lower is better quality) and ``preset`` (:data:`X264_PRESETS`) tune libx264: on a small CPU
    the encoder can cost more than the model, and ``preset="ultrafast"`` keeps up at about 2.3x less CPU."""

    def __init__(self, path: str | Path, fps: float | None = None, size=None, codec: str | None = None,
                 crf: int = 23, preset: str = "veryfast"):
        super().__init__(str(path), fps, size)
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise InputError(f"sink: {path} has suffix {suffix!r}, expected one of {', '.join(VIDEO_SUFFIXES)}")
        if codec is None:
            codec = "mjpg" if suffix == ".avi" else ("h264" if _has_pyav() else "mp4v")
        codec = codec.lower()
        if codec not in CODECS:
            raise InputError(f"codec: got {codec!r}, expected one of {CODECS}")
        if codec == "h264" and not _has_pyav():
            raise SinkError("codec 'h264' needs PyAV (pip install 'edgeseg[extras]' provides av); "
                            "or choose codec 'mp4v'")
        if preset not in X264_PRESETS:
            raise InputError(f"preset: got {preset!r}, expected one of {', '.join(X264_PRESETS)}")
        if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
            raise InputError(f"crf: got {crf!r}, expected an integer 0-51 (H.264 quality, lower is better)")
        if not self.path.parent.exists():
            raise SinkError(f"sink folder does not exist: {self.path.parent}")
        self.codec, self.crf, self.preset = codec, crf, preset
        self._pad = (0, 0)

    def _open(self) -> None:
        width, height = self.size
        if self.codec == "h264":
            import av

            self._pad = (width % 2, height % 2)
            if any(self._pad):
                log.warning("%s: H.264 needs even sizes; padding %dx%d frames to %dx%d", self.path, width, height,
                            width + self._pad[0], height + self._pad[1])
            rate = Fraction(self.fps).limit_denominator(1001)
            self._container = av.open(str(self.path), "w")
            self._stream = self._container.add_stream(
                "libx264", rate=rate, options={"crf": str(self.crf), "preset": self.preset})
            self._stream.width, self._stream.height = width + self._pad[0], height + self._pad[1]
            self._stream.pix_fmt = "yuv420p"
            self._av = av
        else:
            cv2 = load_cv2()
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.codec == "mp4v" else "MJPG"))
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise SinkError(f"cannot write video {self.path} with codec {self.codec!r} (OpenCV refused)")

    def _write(self, image: np.ndarray) -> None:
        if self.codec != "h264":
            self._writer.write(image)
            return
        if any(self._pad):
            image = np.pad(image, ((0, self._pad[1]), (0, self._pad[0]), (0, 0)), mode="edge")
        # OpenCV's SIMD BGR -> I420 (BT.601, limited range, as swscale's default) is ~0.4 ms per 640x480
        # frame cheaper than letting the encoder convert bgr24 itself.
        cv2 = load_cv2()
        i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        frame = self._av.VideoFrame.from_ndarray(i420, format="yuv420p")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _close(self) -> None:
        if self.codec != "h264":
            self._writer.release()
            return
        try:
            for packet in self._stream.encode(None):  # flush delayed frames
                self._container.mux(packet)
        finally:
            self._container.close()

    def describe(self) -> dict:
        return {**super().describe(), "codec": self.codec}


class ImageFolderSink(Sink):
    """One image per frame, ``<folder>/000000.png`` onwards (``suffix`` ".png" or ".jpg")."""

    def __init__(self, folder: str | Path, fps: float | None = None, size=None, suffix: str = ".png"):
        super().__init__(str(folder), fps, size)
        if suffix not in IMAGE_SUFFIXES:
            raise InputError(f"suffix: got {suffix!r}, expected one of {IMAGE_SUFFIXES}")
        self.folder, self.suffix = Path(folder), suffix
        self._cv2 = load_cv2()

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create sink folder {self.folder}: {exc}") from exc

    def _write(self, image: np.ndarray) -> None:
        path = self.folder / f"{self.frames_written:06d}{self.suffix}"
        if not self._cv2.imwrite(str(path), image):
            raise SinkError(f"cannot write {path}")


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def open_sink(uri, fps: float | None = None, size: tuple[int, int] | None = None, **options) -> Sink:
    """Open a sink: ``"null"``, ``"window"`` (or ``display://0``), ``out.mp4|.mkv|.mov|.avi``, or a folder
    (``frames/``, or any path without a suffix). ``size`` is (width, height); None takes the first frame's.
    A :class:`Sink` passes through unchanged. Options go to the sink class (video files: ``codec``, ``crf``,
    ``preset``; folders: ``suffix``).

    >>> with open_sink("out.mp4", fps=25) as sink:    # doctest: +SKIP
    ...     sink.write(image)
    """
    if isinstance(uri, Sink):
        return uri
    if uri is None:
        return NullSink("null", fps, size)
    text = str(uri).strip()
    if text.lower() in NULL_URIS:
        return NullSink("null", fps, size)
    if text.lower() in WINDOW_URIS:
        return WindowSink(text, fps, size, **options)
    if text.lower().startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise InputError(f"sink: got {text!r}, expected null, window, a video file "
                         f"({', '.join(VIDEO_SUFFIXES)}) or a folder")
    path = Path(text).expanduser()
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoFileSink(path, fps, size, **options)
    if path.is_dir() or text.endswith(("/", os.sep)) or not path.suffix:
        return ImageFolderSink(path, fps, size, **options)
    raise InputError(f"sink: {text!r} has suffix {path.suffix!r}, expected a video file "
                     f"({', '.join(VIDEO_SUFFIXES)}), a folder, null or window")
