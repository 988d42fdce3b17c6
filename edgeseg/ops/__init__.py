"""edgeseg's custom ops. Each op is a contract: a PyTorch op (trainable), a slow and obviously right
NumPy reference, an ONNX translation, a CUDA kernel and a TensorRT plugin, all agreeing within a
stated tolerance.

Names load lazily: ``dense_crf`` needs only NumPy/SciPy (or CuPy); the torch ops need torch.
"""

from __future__ import annotations

import sys
import types

from .._lazy import lazy_attributes

_LAZY = {
    "deform_conv2d": "edgeseg.ops.deform_conv",
    "DeformConv2d": "edgeseg.ops.deform_conv",
    "roi_align": "edgeseg.ops.roi_align",
    "RoIAlign": "edgeseg.ops.roi_align",
    "dense_crf": "edgeseg.ops.dense_crf",
    "dense_crf_windowed": "edgeseg.ops.dense_crf",
    "CRFasRNN": "edgeseg.ops.crf_rnn",
    "nms": "edgeseg.ops.nms",
}

__all__ = list(_LAZY)


class _OpsPackage(types.ModuleType):
    """Keeps ``edgeseg.ops.<name>`` the public function when a submodule of the same name is imported.

    The import system binds a submodule on its parent (``edgeseg.ops.nms`` = the module) after importing it;
    here that binding is replaced by the function the submodule provides, whatever the import order.
    """

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}" and name in _LAZY:
            value = getattr(value, name)
        super().__setattr__(name, value)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


sys.modules[__name__].__class__ = _OpsPackage
