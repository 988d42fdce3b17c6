"""edgeseg: segmentation models from PyTorch to real-time video on the edge.

``import edgeseg`` needs only NumPy; torch, onnxruntime, OpenCV, CuPy and TensorRT load where used.

>>> import edgeseg
>>> seg = edgeseg.Segmenter("model.onnx")            # doctest: +SKIP
>>> for result in edgeseg.stream("video.mp4", seg):   # doctest: +SKIP
...     print(result.timings)
"""

from __future__ import annotations

from ._lazy import lazy_attributes

__version__ = "0.1.0"

# Public names resolved on first use so that importing the package stays cheap. ``stream`` is a function (the
# video package is ``edgeseg.video``): no name here is also a submodule, so an import cannot rebind one.
_LAZY = {
    "Segmenter": "edgeseg.pipeline",
    "Segmentation": "edgeseg.pipeline",
    "create_runner": "edgeseg.runtime",
    "Artifact": "edgeseg.artifact",
    "stream": "edgeseg.video",
    "open_source": "edgeseg.video",
    "open_sink": "edgeseg.video",
    "create_model": "edgeseg.models",
    "list_models": "edgeseg.models",
}

__all__ = ["__version__", "tune_process", *_LAZY]


def tune_process() -> str:
    """Tune this process for video: pin glibc's malloc thresholds so per-frame buffers reuse mapped pages
    (see :mod:`edgeseg._malloc`). The ``edgeseg`` CLI does this; library users call it once at start-up.
    Returns ``"tuned"`` or why it was skipped (``EDGESEG_MALLOC=default``, another allocator, not glibc)."""
    from ._malloc import keep_frame_buffers_mapped

    return keep_frame_buffers_mapped()


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
