"""Name -> model factory registry. Built-in families are listed by module and imported on first use."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import InputError

# Built-in registry name -> module whose import registers it. Importing edgeseg.models imports none of
# them (they need torch); create_model imports the one module it needs.
_BUILTIN = {
    "fastseg": "edgeseg.models.fastseg",
    "fastseg_small": "edgeseg.models.fastseg",
    "fastseg_large": "edgeseg.models.fastseg",
    "fcn": "edgeseg.models.fcn",
    "fcn32s": "edgeseg.models.fcn",
    "deeplabv3": "edgeseg.models.deeplabv3",
    "deeplabv3_dcn": "edgeseg.models.deeplabv3",
    "pspnet": "edgeseg.models.pspnet",
    "gcn": "edgeseg.models.gcn",
    "deconvnet": "edgeseg.models.deconvnet",
    "deeplab_attention": "edgeseg.models.deeplab_attention",
    # Registered by other components' modules on import.
    "tflite_graph": "edgeseg.tflite.graph_model",   # a graph imported from TFLite (edgeseg import-tflite)
    "deeplabv3_crf": "edgeseg.ops.crf_rnn",         # DeepLabv3 + CRF-as-RNN layer
    "maskrcnn": "edgeseg.models.maskrcnn",          # instance segmentation (boxes, scores, masks)
    "fcis": "edgeseg.models.fcis",                  # instances: position-sensitive inside/outside maps
    "bottomup": "edgeseg.models.bottomup",          # instances: pixel embeddings + seediness
}

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn(num_classes, in_channels=3, **kw) -> nn.Module`` under ``name``.

    >>> @register_model("my_unet")                       # doctest: +SKIP
    ... def my_unet(num_classes, in_channels=3, width=32):
    ...     return MyUNet(num_classes, in_channels, width)
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"register_model name: got {name!r}, expected a non-empty string")

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise InputError(f"register_model name: {name!r} is already registered to {_REGISTRY[name].__module__}")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """Sorted names that :func:`create_model` accepts (built-in families plus anything registered)."""
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def _factory(name: str) -> Callable[..., Any]:
    if name not in _REGISTRY and name in _BUILTIN:
        try:
            importlib.import_module(_BUILTIN[name])
        except ModuleNotFoundError as exc:
            if exc.name and _BUILTIN[name].startswith(exc.name):
                raise InputError(
                    f"model {name!r}: its module {_BUILTIN[name]} is not part of this installation"
                ) from exc
            raise
    if name not in _REGISTRY:
        raise InputError(f"model name: got {name!r}, expected one of {list_models()}")
    return _REGISTRY[name]


def _check_kwargs(name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p not in ("num_classes", "in_channels")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise InputError(f"model {name!r} options: got unknown {unknown}, expected some of {accepted}")


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """Build the registered model ``name`` (randomly initialised; seed torch for reproducibility).

    Args:
        name: a name from :func:`list_models`, e.g. ``"fastseg"``, ``"deeplabv3"``.
        num_classes: output channels C of the logits.
        in_channels: input channels (3 for colour, 1 for grayscale ultrasound).
        **kwargs: family options (``encoder``, ``width``, ``output_stride``, ...).

    Returns:
        ``torch.nn.Module`` mapping ``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)``.
        It carries ``model.model_name`` and ``model.model_kwargs`` (JSON-serialisable, enough to
        rebuild it), which :func:`edgeseg.models.save_checkpoint` writes to the sidecar.

    >>> model = create_model("fastseg", num_classes=2, in_channels=1)   # doctest: +SKIP
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"num_classes: got {num_classes!r}, expected an int >= 1")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise InputError(f"in_channels: got {in_channels!r}, expected an int >= 1")
    fn = _factory(name)
    _check_kwargs(name, fn, kwargs)
    model = fn(num_classes=num_classes, in_channels=in_channels, **kwargs)
    model.model_name = name
    model.model_kwargs = {"num_classes": num_classes, "in_channels": in_channels, **kwargs}
    return model


def describe_model(name: str) -> str:
    """First line of the model factory's docstring (imports the family's module)."""
    doc = inspect.getdoc(_factory(name)) or ""
    return doc.splitlines()[0] if doc else ""
