"""The model zoo: segmentation models built by name, and their safetensors checkpoints.

Every model maps an ``(N, in_channels, H, W)`` float image to logits ``(N, num_classes, H, W)`` at the
input resolution. Families are small registered functions (timm style); this package imports no
model module and no torch until a model is built, so ``list_models()`` is cheap.

>>> from edgeseg.models import create_model, list_models
>>> "fastseg" in list_models()
True
>>> model = create_model("fastseg", num_classes=2, in_channels=1)   # doctest: +SKIP
>>> model(torch.zeros(1, 1, 256, 256)).shape                        # doctest: +SKIP
torch.Size([1, 2, 256, 256])

Checkpoints (weights in ``.safetensors``, everything else in the JSON sidecar; no pickle):

>>> save_checkpoint(model, "hc18.safetensors", artifact)   # doctest: +SKIP
>>> model, artifact = load_checkpoint("hc18.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

from .._lazy import lazy_attributes
from .registry import create_model, describe_model, list_models, register_model

_LAZY = {
    "save_checkpoint": "edgeseg.models.checkpoint",
    "load_checkpoint": "edgeseg.models.checkpoint",
}

__all__ = ["create_model", "describe_model", "list_models", "load_checkpoint", "register_model", "save_checkpoint"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
