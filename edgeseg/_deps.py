"""Lazy imports of optional dependencies with one clear error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# import name -> (pip package, edgeseg extra)
_PROVIDERS = {
    "torch": ("torch==2.13.0", "workstation"),
    "onnx": ("onnx", "workstation"),
    "onnxscript": ("onnxscript", "workstation"),
    "onnxslim": ("onnxslim", "workstation"),
    "safetensors": ("safetensors", "workstation"),
    "onnxruntime": ("onnxruntime", "runtime"),
    "cv2": ("opencv-python-headless", "runtime"),
    "rich": ("rich", "runtime"),
    "tqdm": ("tqdm", "runtime"),
    "yaml": ("pyyaml", "runtime"),
    "PIL": ("pillow", "runtime"),
    "scipy": ("scipy", "runtime"),
    "matplotlib": ("matplotlib", "extras"),
    "pydicom": ("pydicom", "extras"),
    "av": ("av", "extras"),
    "pycocotools": ("pycocotools", "extras"),
    "tflite": ("tflite", "extras"),
    "cupy": ("cupy-cuda12x", "gpu"),
    "tensorrt_rtx": ("tensorrt-rtx-cu13", "rtx"),
}
# TensorRT has no extra: its route depends on the machine (JetPack, NVIDIA's wheel or TensorRT-RTX).
_ROUTES = {"tensorrt": "tensorrt", "tensorrt_rtx": "rtx"}


def require(name: str, purpose: str = "") -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` saying how to install it.

    >>> np = require("numpy")
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # ImportError too: tensorrt bindings without libraries raise it
        root = name.split(".")[0]
        package, extra = _PROVIDERS.get(root, (name, None))
        why = f" for {purpose}" if purpose else ""
        if root in _ROUTES:
            from edgeseg.runtime.tensorrt_env import install_route

            raise MissingDependencyError(f"{name} is needed{why} but cannot be imported ({exc}). "
                                         f"Install it: {install_route(_ROUTES[root])}") from exc
        hint = f"pip install 'edgeseg[{extra}]'" if extra else f"pip install {package}"
        raise MissingDependencyError(
            f"{name} is needed{why} but cannot be imported ({exc}). Install it with: {hint}"
            + (f" (provides {package})" if extra else "")
        ) from exc


def available(name: str) -> bool:
    """True when ``name`` imports (any ImportError, including a broken install, counts as absent)."""
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken optional library must not break the caller
        return False
    return True
