"""PyTorch eager backend: a ``.safetensors`` checkpoint (via ``edgeseg.models.load_checkpoint``) or an nn.Module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..artifact import Artifact, TensorSpec
from ..errors import InputError
from .base import Runner, array_module


class TorchRunner(Runner):
    """Runs a PyTorch module in eager mode under ``torch.inference_mode``.

    Args:
        model: an ``nn.Module`` (already built), or a checkpoint path / Artifact loaded on ``activate``.
        artifact: the sidecar describing ``model`` when ``model`` is a module (optional: a default
            input ``"input"`` (batch, C, height, width) and output ``"logits"`` are assumed).
        device: ``"cpu"`` or ``"cuda"``.
        threads: intra-op threads (``torch.set_num_threads``, process-wide) set on activate.

    Example::

        runner = TorchRunner(create_model("fastseg", num_classes=2, in_channels=1))
        with runner:
            out = runner.infer({"input": np.zeros((1, 1, 256, 256), np.float32)})   # out["logits"]: (1, 2, 256, 256)
    """

    backend = "torch"

    def __init__(self, model: Any, artifact: Artifact | None = None, device: str = "cpu",
                 threads: int | None = None, check_finite: bool = True) -> None:
        self.model = None
        if isinstance(model, (str, Path)):
            artifact = Artifact.load(model)
        elif isinstance(model, Artifact):
            artifact = model
        else:
            self.model = model
            if artifact is None:
                artifact = _artifact_for_module(model)
        self._owns_model = self.model is None
        self.device = device
        self.threads = threads
        super().__init__(artifact, check_finite=check_finite)

    @classmethod
    def from_artifact(cls, artifact: Artifact, **options) -> TorchRunner:
        """Registry factory: load the checkpoint named by ``artifact`` on activate."""
        return cls(artifact, **options)

    def _activate(self) -> None:
        torch = require("torch", "the torch backend")
        if self.threads:
            torch.set_num_threads(int(self.threads))
        if self.model is None:
            from ..models import load_checkpoint

            self.model, _ = load_checkpoint(self.artifact.path)
        self.model = self.model.to(self.device).eval()
        self._torch = torch

    def _deactivate(self) -> None:
        # A module passed in by the caller stays theirs; a checkpoint loaded on activate is dropped.
        if self._owns_model:
            self.model = None

    def _infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        torch = self._torch
        xp = array_module(next(iter(feed.values())))
        tensors = [_to_torch(torch, feed[name], self.device) for name in self.input_names]
        with torch.inference_mode():
            result = self.model(*tensors)
        return {name: _from_torch(value, xp) for name, value in self._name_outputs(result).items()}

    def _name_outputs(self, result: Any) -> dict[str, Any]:
        if isinstance(result, (tuple, list)) and result and all(isinstance(r, dict) for r in result):
            # detection models (Mask R-CNN, FCIS, bottom-up) in eval: one dict of named tensors per image
            if len(result) != 1:
                raise InputError(f"model outputs: got {len(result)} per-image results, expected 1; feed one image "
                                 "(batch 1) to a detection model")
            result = result[0]
        if isinstance(result, dict):
            return dict(result)
        if isinstance(result, (tuple, list)):
            if len(result) != len(self.output_names):
                raise InputError(
                    f"model outputs: got {len(result)} tensors, expected {len(self.output_names)} "
                    f"named {self.output_names} by the sidecar"
                )
            return dict(zip(self.output_names, result))
        return {self.output_names[0]: result}


def _artifact_for_module(model: Any) -> Artifact:
    name = type(model).__name__
    channels = getattr(model, "in_channels", None)
    classes = getattr(model, "num_classes", None)
    artifact = Artifact(path=Path(f"{name}.safetensors"), model=name,
                        classes=[f"class{i}" for i in range(classes)] if classes else ["background", "foreground"])
    artifact.inputs = [TensorSpec("input", ["batch", channels or "channels", "height", "width"])]
    artifact.outputs = [TensorSpec("logits", ["batch", classes or "classes", "height", "width"])]
    return artifact


def _to_torch(torch, array: Any, device: str):
    if isinstance(array, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)
    return torch.from_dlpack(array).to(device)  # CuPy: zero-copy when already on the device


def _from_torch(tensor: Any, xp) -> Any:
    tensor = tensor.detach()
    if xp is np:
        return tensor.cpu().numpy()
    if tensor.device.type != "cuda":
        tensor = tensor.cuda()
    return xp.from_dlpack(tensor.contiguous())
