"""Model input sizes: one parser and one rule for train, bench and the sidecar of a zoo model.

A zoo model's side must be a positive multiple of :data:`ENCODER_STRIDE` (its encoder halves the resolution
up to five times, so every feature map then has whole cells and the decoder's skips line up) and of the
model's own ``input_multiple`` (PSPNet: 64, so its pooling bins divide the feature map). A model from
elsewhere (a bare ONNX, an imported TFLite graph) needs only what its sidecar records.

>>> parse_size("256x320", "--size")
(256, 320)
>>> check_size((7, 7), "--size", multiple=32)  # doctest: +SKIP
InputError: --size: got 7x7, expected height and width that are multiples of 32 ...
"""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import InputError

ENCODER_STRIDE = 32
MAX_SIDE = 8192  # as the sidecar allows (artifact.MAX_SIDE)
# Zoo models built on edgeseg's encoders (models.registry); other registered names import graphs from elsewhere.
NOT_ENCODER_MODELS = ("tflite_graph",)


def parse_size(text: str, field: str) -> tuple[int, int]:
    """``"HxW"`` (or ``"H,W"``, or ``"N"`` for N x N) -> ``(H, W)`` positive ints."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*", str(text).lower())
    if not match:
        raise InputError(f"{field}: got {text!r}, expected HxW such as 256x256")
    h = int(match.group(1))
    return check_size((h, int(match.group(2) or h)), field)


def check_size(size, field: str, multiple: int = 1, model: str | None = None) -> tuple[int, int]:
    """``(H, W)`` as ints, or :class:`InputError` naming ``field`` when a side is not a positive multiple of
    ``multiple`` up to :data:`MAX_SIDE`; the message suggests the nearest valid size."""
    try:
        h, w = (int(s) for s in size)
        if (h, w) != tuple(size):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(f"{field}: got {size!r}, expected (height, width) as two integers") from None
    shown = f"{h}x{w}"
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise InputError(f"{field}: got {shown}, expected height and width in 1..{MAX_SIDE}")
    if h % multiple or w % multiple:
        near = "x".join(str(max(multiple, round(s / multiple) * multiple)) for s in (h, w))
        who = f"a {model} model" if model else "this model"
        raise InputError(f"{field}: got {shown}, expected height and width that are multiples of {multiple} for "
                         f"{who} (e.g. {near})")
    return h, w


def model_multiple(model: Any) -> int:
    """What a torch zoo model needs: lcm(:data:`ENCODER_STRIDE`, ``model.input_multiple``); ``input_multiple``
    alone for a module without an edgeseg encoder."""
    own = int(getattr(model, "input_multiple", 1) or 1)
    return math.lcm(ENCODER_STRIDE, own) if hasattr(model, "encoder") else own


def zoo_multiple(name: str, input_multiple: int = 1) -> int:
    """The rule for the zoo model ``name`` (before it is built): lcm(:data:`ENCODER_STRIDE`, ``input_multiple``);
    ``input_multiple`` alone for names outside the encoder zoo."""
    from .models.registry import _BUILTIN

    if name in _BUILTIN and name not in NOT_ENCODER_MODELS:
        return math.lcm(ENCODER_STRIDE, int(input_multiple or 1))
    return int(input_multiple or 1)


def artifact_multiple(artifact: Any) -> int:
    """What the model behind a sidecar needs: the zoo rule for a zoo model (with the exporter's recorded
    ``input_multiple``), else the recorded ``input_multiple`` (1 when none is)."""
    export = (getattr(artifact, "extra", None) or {}).get("export") or {}
    return zoo_multiple(str(getattr(artifact, "model", "") or ""), int(export.get("input_multiple") or 1))
