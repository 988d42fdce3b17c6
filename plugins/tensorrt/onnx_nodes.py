"""Deprecated: the ONNX side of edgeseg's TensorRT plugins (node contract, schemas, node builder) lives in
:mod:`edgeseg.ops.onnx_translations`, with the translations that emit those nodes. Re-exports the old names
and warns once on import.
"""

from __future__ import annotations

import warnings

from edgeseg.ops.onnx_translations import DOMAIN, FLOAT_TYPES, PLUGIN_OPS, plugin_node, register_onnx_schemas

__all__ = ["DOMAIN", "FLOAT_TYPES", "PLUGIN_OPS", "plugin_node", "register_onnx_schemas"]

warnings.warn("edgeseg.plugins.tensorrt.onnx_nodes is deprecated: use edgeseg.ops.onnx_translations",
              DeprecationWarning, stacklevel=2)
