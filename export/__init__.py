"""PyTorch -> ONNX export, ONNX checks and parity, ONNX -> TensorRT engines.

Names load lazily (torch, onnx and tensorrt import only when used)::

    from edgeseg.export import to_onnx, to_trt
    from edgeseg.export.quantize import quantize   # a submodule of the same name
"""

from __future__ import annotations

from edgeseg._lazy import lazy_attributes

_LAZY = {
    "to_onnx": "edgeseg.export.onnx_export",
    "onnx_from_torch": "edgeseg.export.onnx_export",
    "onnx_from_checkpoint": "edgeseg.export.onnx_export",
    "parity_report": "edgeseg.export.check",
    "to_trt": "edgeseg.export.trt_build",
    "engine_from_onnx": "edgeseg.export.trt_build",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
