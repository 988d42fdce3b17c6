"""Deprecated: edgeseg's ONNX translations and plugin-node schemas live in :mod:`edgeseg.ops.onnx_translations`
(the library, so ``edgeseg.instances`` and ``edgeseg.models`` export without importing the build stage).

This module re-exports the old names and warns once on import; ``translation_table()`` there covers every
edgeseg op (DeformConv, RoIAlign, NMS, the CRF node).
"""

from __future__ import annotations

import warnings

from edgeseg.ops.onnx_translations import (
    MAX_ORT_OPSET,
    MIN_OPSET,
    deform_conv2d_to_onnx,
    deform_conv2d_to_plugin,
    roi_align_to_onnx,
    roi_align_to_plugin,
    translation_table,
)

# and CUSTOM_TRANSLATION_TABLE, PLUGIN_TRANSLATION_TABLE (built on first use, module __getattr__)
__all__ = ["MAX_ORT_OPSET", "MIN_OPSET", "deform_conv2d_to_onnx", "deform_conv2d_to_plugin", "roi_align_to_onnx", "roi_align_to_plugin",
           "translation_table"]

warnings.warn("edgeseg.export.op_translations is deprecated: use edgeseg.ops.onnx_translations "
              "(translation_table(route))", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    # the old tables: DeformConv and RoIAlign only, on the native or the plugin route
    if name in ("CUSTOM_TRANSLATION_TABLE", "PLUGIN_TRANSLATION_TABLE"):
        plugin = name == "PLUGIN_TRANSLATION_TABLE"
        ops = (deform_conv2d_to_plugin, roi_align_to_plugin) if plugin else (deform_conv2d_to_onnx, roi_align_to_onnx)
        return {op: fn for op, fn in translation_table("plugin" if plugin else "native").items() if fn in ops}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
