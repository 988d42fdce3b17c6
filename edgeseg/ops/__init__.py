"""edgeseg's custom ops. Each op is a contract: a PyTorch op (trainable), a slow and obviously right
NumPy reference, an ONNX translation, a CUDA kernel and a TensorRT plugin, all agreeing within a
stated tolerance.

Names load lazily: ``dense_crf`` needs only NumPy/SciPy (or CuPy); the torch ops need torch.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

# Public name -> the module defining it. No public name is also a module name here (``nms`` lives in
# ``boxes``, ``roi_align`` in ``roi``, ``dense_crf`` and ``dense_crf_windowed`` in ``crf``), so importing a
# submodule never rebinds a function on this package.
_LAZY = {
    "deform_conv2d": "edgeseg.ops.deform_conv",
    "DeformConv2d": "edgeseg.ops.deform_conv",
    "roi_align": "edgeseg.ops.roi",
    "RoIAlign": "edgeseg.ops.roi",
    "dense_crf": "edgeseg.ops.crf",
    "dense_crf_windowed": "edgeseg.ops.crf",
    "CRFasRNN": "edgeseg.ops.crf_rnn",
    "nms": "edgeseg.ops.boxes",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
