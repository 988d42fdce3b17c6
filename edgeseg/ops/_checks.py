"""Argument checks shared by the torch ops: clear :class:`~edgeseg.errors.InputError` messages."""

from __future__ import annotations

import operator

from ..errors import InputError


def pair(name: str, value) -> tuple[int, int]:
    """``3`` or ``(3, 3)`` -> ``(3, 3)``; anything else raises naming ``name``."""
    items = (value, value) if not hasattr(value, "__len__") else tuple(value)
    try:
        if len(items) != 2 or any(isinstance(v, bool) for v in items):
            raise TypeError
        return operator.index(items[0]), operator.index(items[1])
    except TypeError:
        raise InputError(f"{name}: got {value!r}, expected an int or a pair of ints (h, w)") from None


def check_rank(name: str, tensor, rank: int, layout: str) -> None:
    """Raise unless ``tensor`` has ``rank`` dimensions; ``layout`` names the expected shape, e.g. "(N, C, H, W)"."""
    if tensor.dim() != rank:
        raise InputError(f"{name}: got shape {tuple(tensor.shape)} ({tensor.dim()}-D), expected a {rank}-D tensor {layout}")
