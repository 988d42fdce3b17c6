"""edgeseg's TensorRT plugins, defined with ``tensorrt.plugin`` (TensorRT 10.6+; ahead-of-time kernels 10.9+).

=====================  ===============================================  ======================
plugin                 inputs -> output                                 implementations
=====================  ===============================================  ======================
edgeseg::DeformConv2d  input, offset, mask, weight, bias -> (N,CO,HO,WO) CuPy (im2col+GEMM), AOT PTX
edgeseg::RoIAlign      input (N,C,H,W), rois (R,5) -> (R,C,PH,PW)        CuPy, AOT PTX
edgeseg::DenseCRF      probs (N,C,H,W), image (N,H,W,3) -> probs         CuPy (edgeseg.ops.dense_crf)
=====================  ===============================================  ======================

ONNX nodes that target them (exporter option ``--plugins edgeseg``): ``op_type`` = the plugin name
(``DeformConv2d``, ``RoIAlign``, ``DenseCRF``), ``domain="edgeseg"``, string attribute
``plugin_namespace="edgeseg"``, and the attributes listed in each module (names and types exactly).
DeformConv2d always takes all five inputs (mask of ones / zero bias when the model has none).

The JIT implementations run Python in the engine, so a process that loads such an engine must call
:func:`register_all` first (``TensorRTRunner`` does, from the sidecar's ``engine.plugins``). AOT kernels
(compiled from the same ``.cu`` files with nvcc for this GPU) run without Python, also in trtexec.

On TensorRT 10.3 (JetPack 6.1/6.2) there is no ``tensorrt.plugin``: use ``--plugins native`` (NVIDIA's
DeformConv/RoiAlign) and run the CRF as a CuPy stage after the engine (``Segmenter(crf=True)``).
"""

from __future__ import annotations

import importlib

REQUIRES_TENSORRT = (10, 6)
MODULES = ("deform_conv", "roi_align", "dense_crf")


def register_all() -> list[str]:
    """Register the three plugins with TensorRT's registry (idempotent); return their names."""
    from edgeseg.runtime.tensorrt_env import parse_version

    from edgeseg._deps import require
    from edgeseg.errors import EdgesegError

    trt = require("tensorrt", "edgeseg's TensorRT plugins")
    version = parse_version(trt.__version__)
    if version[:2] < REQUIRES_TENSORRT:
        raise EdgesegError(
            f"edgeseg's TensorRT plugins need tensorrt.plugin (TensorRT >= 10.6), this machine has {trt.__version__}. "
            "Build with --plugins native (NVIDIA's DeformConv/RoiAlign) and run the CRF as a CuPy stage "
            "after the engine (Segmenter(crf=True)); see docs/jetson.md."
        )
    names = []
    for module in MODULES:
        names.append(importlib.import_module(f"{__name__}.{module}").OP)
    return names
