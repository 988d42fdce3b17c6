"""Public names of a package that load from their submodules on first use (PEP 562)."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_attributes(package: str, names: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps a public name to the module that defines it.

    On first use the module is imported and every public name it provides is bound on the package. Keep the
    public names distinct from the package's submodule names: importing a submodule binds it on the package.

    >>> __getattr__, __dir__ = lazy_attributes(__name__, {"to_onnx": "edgeseg.export.onnx_export"})  # doctest: +SKIP
    """

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name])
        namespace = vars(sys.modules[package])
        for public, source in names.items():
            if source == module.__name__:
                namespace[public] = getattr(module, public)
        return namespace[name]

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
