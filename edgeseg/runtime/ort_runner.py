"""Deprecated name of :mod:`edgeseg.runtime.onnxruntime_runner`: a backend has one name across its registry string,
file and class (``"onnxruntime"``, ``onnxruntime_runner.py``, ``OnnxRuntimeRunner``). Importing this module warns;
its names are the new module's, and ``OrtRunner`` is ``OnnxRuntimeRunner``."""

from __future__ import annotations

import warnings

from . import onnxruntime_runner as _renamed

warnings.warn("edgeseg.runtime.ort_runner is deprecated: import edgeseg.runtime.onnxruntime_runner "
              "(OrtRunner is now OnnxRuntimeRunner)", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(_renamed, "OnnxRuntimeRunner" if name == "OrtRunner" else name)
