"""edgeseg's custom ops. Each op is a contract: a PyTorch op (trainable), a slow and obviously right
NumPy reference, an ONNX translation, a CUDA kernel and a TensorRT plugin, all agreeing within a
stated tolerance.

Names load lazily: ``dense_crf`` needs only NumPy/SciPy (or CuPy); the torch ops need torch.
"""

from __future__ import annotations

import importlib

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


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        # Importing a submodule binds its name on this package (``roi_align`` the module): bind every
        # public name it provides afterwards, so ``edgeseg.ops.roi_align`` is the function.
        for public, source in _LAZY.items():
            if source == module.__name__:
                globals()[public] = getattr(module, public)
        return globals()[name]
    raise AttributeError(f"module 'edgeseg.ops' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
