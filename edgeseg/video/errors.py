"""Errors of sources, sinks and the streaming loop (all :class:`edgeseg.errors.EdgesegError`, so the CLI prints
them as one clear line)."""

from __future__ import annotations

from ..errors import EdgesegError


class StreamError(EdgesegError):
    """The stream could not run to its end: a stage failed. The message names the stage and the frame."""


class SourceError(StreamError):
    """A source cannot be found, opened or read (missing file, unplugged camera, corrupt or truncated file)."""


class SinkError(StreamError):
    """A sink cannot be opened or written (no display, unwritable path, frame of the wrong size)."""
