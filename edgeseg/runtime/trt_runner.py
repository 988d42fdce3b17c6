"""Deprecated name of :mod:`edgeseg.runtime.tensorrt_runner`: a backend has one name across its registry string,
file and class (``"tensorrt"``, ``tensorrt_runner.py``, ``TensorRTRunner``). Importing this module warns; its
names are the new module's, and ``TrtRunner`` is ``TensorRTRunner``."""

from __future__ import annotations

import warnings

from . import tensorrt_runner as _renamed

warnings.warn("edgeseg.runtime.trt_runner is deprecated: import edgeseg.runtime.tensorrt_runner "
              "(TrtRunner is now TensorRTRunner)", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(_renamed, "TensorRTRunner" if name == "TrtRunner" else name)
