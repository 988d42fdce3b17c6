"""Video in, segmented video out, in real time: sources, sinks and the threaded streaming loop.

The loop's entry point is also the top-level function ``edgeseg.stream`` (this package is ``edgeseg.video``:
a package and a function do not share a name).

>>> import edgeseg
>>> for result in edgeseg.stream("clip.mp4", "model.onnx", sink="out.mp4"):   # doctest: +SKIP
...     print(result.index, result.labels.shape, result.timings)
>>> with edgeseg.open_source("/dev/video0") as camera:                        # doctest: +SKIP
...     for image, timestamp in camera: ...

Importing this package needs only NumPy; OpenCV, PyAV and pydicom load when a source or sink opens.
"""

from __future__ import annotations

from .capture import VideoSource
from .dicom import DicomSource
from .errors import SinkError, SourceError, StreamError
from .frames import CapturedFrame, Source
from .loop import Stream, StreamResult, stream
from .sinks import ImageFolderSink, NullSink, Sink, VideoFileSink, WindowSink, open_sink
from .sources import FrameSource, ImageFolderSource, open_source
from .stats import StreamStats, format_table

__all__ = [
    "CapturedFrame",
    "DicomSource",
    "FrameSource",
    "ImageFolderSink",
    "ImageFolderSource",
    "NullSink",
    "Sink",
    "SinkError",
    "Source",
    "SourceError",
    "Stream",
    "StreamError",
    "StreamResult",
    "StreamStats",
    "VideoFileSink",
    "VideoSource",
    "WindowSink",
    "format_table",
    "open_sink",
    "open_source",
    "stream",
]
