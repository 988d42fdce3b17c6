"""The sidecar's value types and accepted values, below :mod:`edgeseg.artifact`.

:class:`TensorSpec` and :class:`Preprocess` (fields of a sidecar), the accepted ``output_kind``, ``resize``
and ``color`` values, where a model's sidecar lives, and the class-count rule. :mod:`edgeseg.artifact` builds
:class:`~edgeseg.artifact.Artifact` on them (and re-exports every name); :mod:`edgeseg.bare_onnx` reads a
sidecar-less graph into them without importing the artifact.

>>> sidecar_path("hc18.onnx")
PosixPath('hc18.onnx.json')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["COLOR_ORDERS", "OUTPUT_KINDS", "RESIZE_MODES", "Preprocess", "TensorSpec", "class_count_problems",
           "is_int", "sidecar_path"]

OUTPUT_KINDS = ("logits", "probs")
RESIZE_MODES = ("stretch", "letterbox")
COLOR_ORDERS = ("bgr", "rgb", "gray")
# ONNX Runtime's type strings (NodeArg.type) -> the sidecar's dtype names
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8", "tensor(bool)": "bool"}


@dataclass
class TensorSpec:
    """Name, shape and dtype of one model input or output. Dynamic dims are strings ("batch", "height")."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"

    @classmethod
    def from_ort(cls, node) -> TensorSpec:
        """An ONNX Runtime ``NodeArg`` (``session.get_inputs()[i]``) -> TensorSpec; unnamed dynamic dims -> ``"?"``."""
        shape = [d if isinstance(d, int) else (d or "?") for d in node.shape]
        return cls(node.name, shape, _ORT_TYPES.get(node.type, node.type))


@dataclass
class Preprocess:
    """How a BGR uint8 HWC frame becomes the model's NCHW float input.

    ``x = (pixel / 255 - mean) / std`` per channel, in ``color`` order, after resizing to ``size`` (H, W).
    """

    size: tuple[int, int] = (256, 256)
    resize: str = "stretch"
    color: str = "rgb"
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3


def sidecar_path(model_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def class_count_problems(channels: Any, num_classes: int, where: str) -> list[str]:
    """A model output with ``channels`` (int, or a name when dynamic) against ``num_classes`` class names:
    equal, or one sigmoid channel for two classes. Returns the problem as a one-item list, or []."""
    if not is_int(channels) or channels == num_classes or (channels == 1 and num_classes == 2):
        return []
    expected = "2 (background and foreground)" if channels == 1 else str(channels)
    return [f"classes has {num_classes} names but {where} has {channels} channel(s); expected {expected} names"]


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON's ``true`` is not a size)."""
    return isinstance(value, int) and not isinstance(value, bool)
