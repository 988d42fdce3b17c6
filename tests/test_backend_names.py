"""One name per backend (issue 21 item 7): the registry string ``"<name>"`` is also the file
``edgeseg/runtime/<name>_runner.py`` and the Runner class whose lower-cased name is ``<name>runner``
(``"tensorrt"``: ``tensorrt_runner.py``, ``TensorRTRunner``). The old module and class names still import,
with a DeprecationWarning, and are the same objects."""

from __future__ import annotations

import importlib
import inspect
import sys

import pytest

from edgeseg.runtime import Runner, backends_for

BUILT_IN = {"torch", "onnxruntime", "tensorrt", "triton"}


def _registered():
    found = {}
    for fmt in ("safetensors", "onnx", "engine"):
        for backend in backends_for(fmt):
            found[backend.name] = backend
    return found


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_registry_string_file_and_class_share_the_backend_name(name):
    backend = _registered()[name]
    assert isinstance(backend.factory, str), f"{name}: factory {backend.factory!r} is not a lazy 'module:attr' string"
    module_name = backend.factory.partition(":")[0]
    assert module_name == f"edgeseg.runtime.{name}_runner", f"backend {name!r} lives in {module_name}"
    module = importlib.import_module(module_name)
    runners = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
               if issubclass(cls, Runner) and cls.__module__ == module_name]
    assert [cls.backend for cls in runners] == [name], f"{module_name} defines {runners}"
    assert runners[0].__name__.lower() == f"{name}runner", f"class {runners[0].__name__} for backend {name!r}"


@pytest.mark.parametrize("old, new, old_class, new_class", [
    ("edgeseg.runtime.ort_runner", "edgeseg.runtime.onnxruntime_runner", "OrtRunner", "OnnxRuntimeRunner"),
    ("edgeseg.runtime.trt_runner", "edgeseg.runtime.tensorrt_runner", "TrtRunner", "TensorRTRunner"),
])
def test_old_module_and_class_names_warn_and_alias_the_new_ones(monkeypatch, old, new, old_class, new_class):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import {new}"):
        module = importlib.import_module(old)
    renamed = importlib.import_module(new)
    assert getattr(module, old_class) is getattr(renamed, new_class)
    assert module.Runner is renamed.Runner  # every other name is the new module's
    import edgeseg.runtime

    with pytest.warns(DeprecationWarning, match=f"edgeseg.runtime.{old_class} is deprecated: use {new_class}"):
        assert getattr(edgeseg.runtime, old_class) is getattr(renamed, new_class)
