"""Runners: one interface over PyTorch, ONNX Runtime and (optionally) TensorRT and Triton.

``with runner: outputs = runner.infer({name: array})`` — see :class:`Runner`.
Backends register by name (:func:`register_backend`); :func:`create_runner` picks the best usable one.

>>> from edgeseg.runtime import create_runner
>>> with create_runner("edgeseg/assets/hc18_fastseg.onnx") as runner:   # doctest: +SKIP
...     out = runner.infer({"input": x})                                  # x: (1, 1, 256, 256) float32
"""

from __future__ import annotations

import importlib

from .._lazy import lazy_attributes
from .base import Runner
from .registry import backends_for, create_runner, list_backends, register_backend

register_backend("torch", "edgeseg.runtime.torch_runner:TorchRunner.from_artifact",
                 formats=["safetensors"], priority=10, requires=["torch", "safetensors"])
register_backend("onnxruntime", "edgeseg.runtime.ort_runner:OrtRunner",
                 formats=["onnx"], priority=10, requires=["onnxruntime"])


def _tensorrt_problem() -> str | None:
    # The TensorRT engineer's probe, imported only when someone asks (edgeseg.runtime.trt_runner).
    return importlib.import_module("edgeseg.runtime.trt_runner").tensorrt_problem()


register_backend("tensorrt", "edgeseg.runtime.trt_runner:TrtRunner", formats=["engine"], priority=20,
                 requires=["tensorrt", "cupy"], probe=_tensorrt_problem)
# Same registration as edgeseg.triton.register(): a remote server, chosen only when asked for (or last).
register_backend("triton", "edgeseg.runtime.triton_runner:triton_factory", formats=["onnx", "engine"],
                 priority=-100, requires=["tritonclient"])

_LAZY = {"TorchRunner": "edgeseg.runtime.torch_runner", "OrtRunner": "edgeseg.runtime.ort_runner"}

__all__ = ["Runner", "create_runner", "register_backend", "list_backends", "backends_for", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
