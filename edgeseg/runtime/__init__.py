"""Runners: one interface over PyTorch, ONNX Runtime and (optionally) TensorRT and Triton.

``with runner: outputs = runner.infer({name: array})`` — see :class:`Runner`.
Backends register by name (:func:`register_backend`); :func:`create_runner` picks the best usable one.

Naming rule: a backend's registry string is also its file and its class: ``"<name>"`` lives in
``<name>_runner.py`` and its Runner class, lower-cased, reads ``<name>runner`` (``"onnxruntime"``:
``onnxruntime_runner.py``, ``OnnxRuntimeRunner``; ``"tensorrt"``: ``tensorrt_runner.py``, ``TensorRTRunner``;
``"torch"``, ``"triton"`` alike). The older ``ort_runner``/``OrtRunner`` and ``trt_runner``/``TrtRunner`` still
import, with a DeprecationWarning.

>>> from edgeseg.runtime import create_runner
>>> with create_runner("edgeseg/assets/hc18_fastseg.onnx") as runner:   # doctest: +SKIP
...     out = runner.infer({"input": x})                                  # x: (1, 1, 256, 256) float32
"""

from __future__ import annotations

import importlib
import warnings

from .._lazy import lazy_attributes
from .base import Runner
from .registry import backends_for, create_runner, list_backends, register_backend

register_backend("torch", "edgeseg.runtime.torch_runner:TorchRunner.from_artifact",
                 formats=["safetensors"], priority=10, requires=["torch", "safetensors"])
register_backend("onnxruntime", "edgeseg.runtime.onnxruntime_runner:OnnxRuntimeRunner",
                 formats=["onnx"], priority=10, requires=["onnxruntime"])


def _tensorrt_problem() -> str | None:
    # The TensorRT engineer's probe, imported only when someone asks (edgeseg.runtime.tensorrt_runner).
    return importlib.import_module("edgeseg.runtime.tensorrt_runner").tensorrt_problem()


# requires only cupy: the probe accepts either TensorRT library (tensorrt or tensorrt_rtx)
register_backend("tensorrt", "edgeseg.runtime.tensorrt_runner:TensorRTRunner", formats=["engine"], priority=20,
                 requires=["cupy"], probe=_tensorrt_problem)
# Same registration as edgeseg.triton.register(): a remote server, chosen only when asked for (or last).
register_backend("triton", "edgeseg.runtime.triton_runner:triton_factory", formats=["onnx", "engine"],
                 priority=-100, requires=["tritonclient"])

_LAZY = {"TorchRunner": "edgeseg.runtime.torch_runner", "OnnxRuntimeRunner": "edgeseg.runtime.onnxruntime_runner",
         "TensorRTRunner": "edgeseg.runtime.tensorrt_runner", "TritonRunner": "edgeseg.runtime.triton_runner"}
_RENAMED = {"OrtRunner": "OnnxRuntimeRunner", "TrtRunner": "TensorRTRunner"}  # old class name -> the backend-named class

__all__ = ["Runner", "create_runner", "register_backend", "list_backends", "backends_for", *_LAZY]


_lazy_getattr, __dir__ = lazy_attributes(__name__, _LAZY)


def __getattr__(name: str):
    if name in _RENAMED:
        warnings.warn(f"edgeseg.runtime.{name} is deprecated: use {_RENAMED[name]}", DeprecationWarning, stacklevel=2)
        return _lazy_getattr(_RENAMED[name])
    return _lazy_getattr(name)
