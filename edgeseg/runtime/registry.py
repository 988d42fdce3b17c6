"""Backends by name, so a new backend registers itself instead of editing a shared if/else.

A backend is a factory ``(artifact, **options) -> Runner``, the model formats it runs (``"onnx"``,
``"safetensors"``, ``"engine"``...) and a probe that says why it is unusable on this machine.
The factory may be a ``"module:attribute"`` string so registering never imports torch or onnxruntime.

>>> from edgeseg.runtime import register_backend
>>> register_backend("mine", "mypkg.runner:MyRunner", formats=["onnx"], priority=5)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._deps import available
from ..artifact import Artifact
from ..errors import ArtifactError, InputError


@dataclass
class Backend:
    """One registered backend. ``problem()`` is None when usable here, else the reason it is not."""

    name: str
    factory: Callable[..., Any] | str
    formats: tuple[str, ...]
    priority: int = 0
    requires: tuple[str, ...] = ()
    probe: Callable[[], str | None] | None = None
    _loaded: Any = field(default=None, repr=False)

    def problem(self) -> str | None:
        for module in self.requires:
            if not available(module):
                return f"{module} does not import"
        return self.probe() if self.probe else None

    def create(self, artifact: Artifact, **options):
        if self._loaded is None:
            if isinstance(self.factory, str):
                module, _, attrs = self.factory.partition(":")
                value = importlib.import_module(module)
                for attr in attrs.split("."):
                    value = getattr(value, attr)
                self._loaded = value
            else:
                self._loaded = self.factory
        return self._loaded(artifact, **options)


_BACKENDS: dict[str, Backend] = {}


def register_backend(
    name: str,
    factory: Callable[..., Any] | str,
    formats: list[str] | tuple[str, ...],
    priority: int = 0,
    requires: list[str] | tuple[str, ...] = (),
    probe: Callable[[], str | None] | None = None,
) -> None:
    """Register (or replace) backend ``name``.

    Args:
        factory: ``(artifact, **options) -> Runner`` or a lazy ``"module:attribute"`` string.
        formats: artifact formats it runs (see ``edgeseg.artifact.FORMATS``).
        priority: higher wins when ``backend="auto"`` and several backends run the format.
        requires: import names that must import for the backend to be usable.
        probe: optional extra check returning None when usable, else the reason.
    """
    _BACKENDS[name] = Backend(name, factory, tuple(formats), priority, tuple(requires), probe)


def list_backends() -> dict[str, str | None]:
    """Registered backend name -> None when usable here, else the reason it is not."""
    return {name: backend.problem() for name, backend in _BACKENDS.items()}


def backends_for(fmt: str) -> list[Backend]:
    """Backends that run format ``fmt``, best first."""
    return sorted((b for b in _BACKENDS.values() if fmt in b.formats), key=lambda b: -b.priority)


def create_runner(path_or_artifact: str | Path | Artifact, backend: str = "auto", **options):
    """Build a :class:`~edgeseg.runtime.Runner` for a model file (its sidecar next to it) or an Artifact.

    Args:
        path_or_artifact: ``model.onnx`` / ``model.safetensors`` / ``model.engine`` or an Artifact.
        backend: ``"auto"`` (best usable backend for the file type) or a registered name
            (``"torch"``, ``"onnxruntime"``, ``"tensorrt"``, ``"triton"``).
        **options: backend options, e.g. ``threads=2`` or ``providers=["CUDAExecutionProvider"]``.

    Example::

        with create_runner("edgeseg/assets/hc18_fastseg.onnx") as runner:
            logits = runner.infer({"input": x})["logits"]      # x: (1, 1, 256, 256) float32
    """
    artifact = path_or_artifact if isinstance(path_or_artifact, Artifact) else Artifact.load(path_or_artifact)
    fmt = artifact.format
    if backend != "auto":
        if backend not in _BACKENDS:
            raise InputError(f"backend: got {backend!r}, expected 'auto' or one of {sorted(_BACKENDS)}")
        chosen = _BACKENDS[backend]
        if fmt not in chosen.formats:
            raise InputError(
                f"backend: {backend!r} runs {list(chosen.formats)} files, but {artifact.path.name} is {fmt!r}; "
                f"use one of {[b.name for b in backends_for(fmt)] or 'no registered backend'}"
            )
        problem = chosen.problem()
        if problem:
            raise ArtifactError(f"backend {backend!r} is not usable on this machine: {problem}")
        return chosen.create(artifact, **options)
    candidates = backends_for(fmt)
    reasons = []
    for candidate in candidates:
        problem = candidate.problem()
        if problem is None:
            return candidate.create(artifact, **options)
        reasons.append(f"{candidate.name}: {problem}")
    raise ArtifactError(
        f"no usable backend runs {fmt!r} files like {artifact.path.name}"
        + (f" ({'; '.join(reasons)})" if reasons else f"; registered backends: {sorted(_BACKENDS)}")
    )
