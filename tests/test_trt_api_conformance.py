"""Static conformance: every TensorRT name our code touches exists in every supported release
(10.3, 10.9, 10.16, 11.1; ``../shared/tensorrt-api/*.json``) or sits behind an explicit guard.

The checker parses our TensorRT-using files with ``ast`` and collects
  * attribute chains on the ``tensorrt`` module (``trt.BuilderFlag.FP16``) and on ``tensorrt.plugin``
    (``trtp.register``), under any alias (``import tensorrt as trt``, ``trt = require("tensorrt")``,
    ``trt = import_tensorrt()``, a parameter named ``trt``);
  * method/property uses on objects whose TensorRT class is known from how they were made
    (``builder = trt.Builder(...)``, ``config = builder.create_builder_config()``, ...).
A use is *guarded* when an enclosing ``if``/``while``/conditional tests ``hasattr(...)`` or compares
something named ``*version*``, or an enclosing ``try`` catches ``AttributeError``; ``getattr(x, "NAME",
default)`` is a guard by construction (the name is a string, not an attribute). A file may declare
``REQUIRES_TENSORRT = (10, 6)``: releases below it are not checked for that file (its loader must
check the version before importing it).

A class that a release's JSON lists with no members at all (``OnnxParser`` in 10.9+) has no recorded
surface there; its members are checked only against the releases that record them.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
API_DIR = REPO.parent / "shared" / "tensorrt-api"
CHECKED_FILES = [
    "export/trt_build.py",
    "edgeseg/runtime/tensorrt_env.py",  # the flavour adapter (export/trt_flavour.py re-exports it)
    "edgeseg/runtime/tensorrt_runner.py",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "plugins" / "tensorrt").glob("*.py")
            if re.search(r"^\s*(import tensorrt|.*require\(\"tensorrt\")", p.read_text(), re.M)),  # TensorRT users
]

# How typed objects are made: (class, method) -> class of the result.
RETURNS = {
    ("Builder", "create_network"): "INetworkDefinition",
    ("Builder", "create_builder_config"): "IBuilderConfig",
    ("Builder", "create_optimization_profile"): "IOptimizationProfile",
    ("Builder", "get_plugin_registry"): "IPluginRegistry",
    ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
    ("Runtime", "get_plugin_registry"): "IPluginRegistry",
    ("ICudaEngine", "create_execution_context"): "IExecutionContext",
    ("ICudaEngine", "create_engine_inspector"): "EngineInspector",
    ("IBuilderConfig", "create_timing_cache"): "ITimingCache",
    ("IBuilderConfig", "get_timing_cache"): "ITimingCache",
    ("INetworkDefinition", "get_input"): "ITensor",
    ("INetworkDefinition", "get_output"): "ITensor",
    ("OnnxParser", "get_error"): "ParserError",
}
TRT_FACTORIES = {"require", "import_tensorrt", "import_module"}


def _version_key(data: dict) -> tuple[int, ...]:
    if data["version"].startswith("rtx-"):
        return (0,)  # TensorRT-RTX has no tensorrt.plugin: files with a version floor are not for it
    return tuple(int(p) for p in data["version"].lstrip("v").split(".") if p.isdigit())


# Bound in every supported release (pybind11 sources: pyCore.cpp binds ILogger, pyCore.cpp's ICudaEngine binds
# get_tensor_profile_shape since 8.5) but missing from the recorded surface; added here instead of bending
# the code around the gap.
RECORD_GAPS = {"module": ["ILogger"], "classes": {"ICudaEngine": ["get_tensor_profile_shape"]}}


def _with_record_gaps(data: dict) -> dict:
    data["module"] = [*data["module"], *RECORD_GAPS["module"]]
    for cls, members in RECORD_GAPS["classes"].items():
        if data["classes"].get(cls):
            data["classes"][cls] = [*data["classes"][cls], *members]
    return data


def real_surface(module) -> dict:
    """The same JSON shape, read from an importable module (TensorRT-RTX here)."""
    names = [n for n in dir(module) if not n.startswith("_") or n == "__version__"]
    enums, classes = {}, {}
    for name in names:
        value = getattr(module, name)
        if hasattr(value, "__members__"):
            enums[name] = list(value.__members__)
        elif isinstance(value, type):
            classes[name] = [m for m in dir(value) if not m.startswith("__")]
    return {"version": f"rtx-{module.__version__}", "module": names, "enums": enums, "classes": classes,
            "plugin_module": []}


def load_apis() -> dict[str, dict]:
    """The four recorded standard releases, plus the real tensorrt_rtx module where it imports (code
    that runs under both flavours must use only names both have, or guard them)."""
    if not API_DIR.is_dir():
        pytest.skip(f"TensorRT API surface not found at {API_DIR}")
    apis = {}
    for path in sorted(API_DIR.glob("tensorrt-*.json")):
        data = _with_record_gaps(json.loads(path.read_text()))
        apis[data["version"]] = data
    try:
        import tensorrt_rtx
    except ImportError:
        return apis
    real = real_surface(tensorrt_rtx)
    apis[real["version"]] = real
    return apis


class _Checker(ast.NodeVisitor):
    def __init__(self, apis: dict[str, dict]) -> None:
        self.apis = apis
        self.trt_aliases = {"trt"}
        self.trtp_aliases = {"trtp"}
        self.types: dict[str, str] = {}
        self.uses: list[tuple[str, tuple[str, ...], int, bool]] = []  # (root, chain, line, guarded)
        self.floor: tuple[int, ...] = ()
        self._guards = 0

    # --- aliases and types ------------------------------------------------------------------------
    def visit_Import(self, node):
        for alias in node.names:
            if alias.name == "tensorrt":
                self.trt_aliases.add(alias.asname or "tensorrt")
            elif alias.name == "tensorrt.plugin" and alias.asname:
                self.trtp_aliases.add(alias.asname)
        self.generic_visit(node)

    def visit_Assign(self, node):
        if (len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "REQUIRES_TENSORRT" and isinstance(node.value, ast.Tuple)):
            self.floor = tuple(ast.literal_eval(node.value))
        for target in node.targets:
            self._bind(target, node.value)
        self.generic_visit(node)

    def _bind(self, target, value) -> None:
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            for t, v in zip(target.elts, value.elts):
                self._bind(t, v)
            return
        key = _target_key(target)
        if key is None:
            return
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in TRT_FACTORIES:
            arg = value.args[0] if value.args else None
            name = arg.value if isinstance(arg, ast.Constant) else ("tensorrt" if value.func.id == "import_tensorrt" else None)
            if name == "tensorrt":
                self.trt_aliases.add(key)
            elif name == "tensorrt.plugin":
                self.trtp_aliases.add(key)
            return
        typ = self._type_of(value)
        if typ:
            self.types[key] = typ

    def _type_of(self, value) -> str | None:
        key = _target_key(value)
        if key is not None:
            return self.types.get(key)
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
            owner = value.func.value
            if isinstance(owner, ast.Name) and owner.id in self.trt_aliases:
                return value.func.attr  # trt.Builder(...) -> Builder
            owner_type = self._type_of(owner)
            if owner_type:
                return RETURNS.get((owner_type, value.func.attr))
        return None

    # --- guards -------------------------------------------------------------------------------------
    def _guarded_visit(self, node, test, guarded_fields, other_fields):
        guard = _is_guard(test)
        self.visit(test)
        for field in guarded_fields:
            self._visit_all(getattr(node, field), guard)
        for field in other_fields:
            self._visit_all(getattr(node, field), False)

    def _visit_all(self, value, guard: bool) -> None:
        self._guards += guard
        for child in value if isinstance(value, list) else [value]:
            self.visit(child)
        self._guards -= guard

    def visit_If(self, node):
        self._guarded_visit(node, node.test, ["body", "orelse"], [])

    def visit_While(self, node):
        self._guarded_visit(node, node.test, ["body", "orelse"], [])

    def visit_IfExp(self, node):
        self._guarded_visit(node, node.test, ["body", "orelse"], [])

    def visit_Try(self, node):
        catches = any(_catches_attribute_error(h) for h in node.handlers)
        self._visit_all(node.body, catches)
        for part in (node.handlers, node.orelse, node.finalbody):
            self._visit_all(part, False)

    # --- uses ---------------------------------------------------------------------------------------
    def visit_Attribute(self, node):
        chain, root = _chain(node)
        if root is not None:
            if root in self.trt_aliases:
                self.uses.append(("trt", tuple(chain), node.lineno, self._guards > 0))
                return
            if root in self.trtp_aliases:
                self.uses.append(("trtp", tuple(chain), node.lineno, self._guards > 0))
                return
        owner_type = self._type_of(node.value)
        if owner_type:
            self.uses.append((f"obj:{owner_type}", (node.attr,), node.lineno, self._guards > 0))
        self.generic_visit(node)

    # --- verdict ------------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        found = []
        for version, api in self.apis.items():
            if self.floor and _version_key(api) < self.floor:
                continue
            for root, chain, line, guarded in self.uses:
                if guarded:
                    continue
                missing = _missing(api, root, chain)
                if missing:
                    found.append(f"line {line}: {missing} is not in TensorRT {version}")
        return found


def _target_key(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


def _chain(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return list(reversed(parts)), node.id
    return list(reversed(parts)), None


def _is_guard(test) -> bool:
    for sub in ast.walk(test):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "hasattr":
            return True
        if isinstance(sub, ast.Compare):
            for side in [sub.left, *sub.comparators]:
                text = ast.unparse(side).lower()
                if "version" in text:
                    return True
    return False


def _catches_attribute_error(handler) -> bool:
    if handler.type is None:
        return False
    names = [ast.unparse(t) for t in (handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type])]
    return "AttributeError" in names


def _missing(api: dict, root: str, chain: tuple[str, ...]) -> str | None:
    if root.startswith("obj:"):
        cls = root[4:]
        members = api["classes"].get(cls)
        if members is None:
            return f"class {cls}"
        if not members:  # surface not recorded for this class in this release
            return None
        name = chain[0]
        return None if name.startswith("__") or name in members else f"{cls}.{name}"
    if root == "trtp":
        if not api["plugin_module"]:
            return f"tensorrt.plugin (module) for trtp.{'.'.join(chain)}"
        name = chain[0]
        if name in api["plugin_module"] or name in api["classes"]:
            return None  # tensorrt.plugin re-exports e.g. KernelLaunchParams from tensorrt
        return f"trtp.{name}"
    first = chain[0]
    if first.startswith("__") and first.endswith("__") and first != "__version__":
        return None
    if first in api["module"]:
        return None
    if first in api["enums"]:
        if len(chain) > 1 and chain[1] not in api["enums"][first] and not chain[1].startswith("_") and chain[1] != "name":
            return f"trt.{first}.{chain[1]}"
        return None
    if first in api["classes"]:
        members = api["classes"][first]
        if len(chain) > 1 and members and not chain[1].startswith("__") and chain[1] not in members:
            return f"trt.{first}.{chain[1]}"
        return None
    return f"trt.{first}"


def check_source(source: str, apis: dict[str, dict]) -> tuple[list[str], int]:
    """(problems, number of TensorRT uses seen) for one Python source."""
    checker = _Checker(apis)
    checker.visit(ast.parse(source))
    return checker.problems(), len(checker.uses)


# --- tests ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def apis():
    found = load_apis()
    assert {"v10.3.0", "v10.9.0", "v10.16", "v11.1"} <= set(found), f"expected four releases, got {sorted(found)}"
    return found


def test_real_rtx_surface_has_what_the_records_have(rtx):
    """The surface read from the real module looks like the recorded ones (else the check above is empty)."""
    real = real_surface(rtx)
    assert {"Builder", "OnnxParser", "IBuilderConfig", "ICudaEngine", "IPluginRegistry"} <= set(real["classes"])
    assert "set_compute_capability" in real["classes"]["IBuilderConfig"]
    assert "STRONGLY_TYPED" in real["enums"]["NetworkDefinitionCreationFlag"]
    assert "FP16" not in real["enums"]["BuilderFlag"]  # TensorRT-RTX has no precision flags


@pytest.mark.parametrize("relpath", CHECKED_FILES)
def test_our_tensorrt_names_exist_in_every_supported_release(apis, relpath):
    path = REPO / relpath
    assert path.exists(), f"{relpath} is missing"
    problems, uses = check_source(path.read_text(), apis)
    assert uses > 0, f"the checker saw no TensorRT use in {relpath}; the alias detection is broken"
    assert not problems, f"{relpath}:\n" + "\n".join(problems)


def test_plugin_files_declare_their_version_floor():
    for path in (REPO / "plugins" / "tensorrt").glob("*.py"):
        text = path.read_text()
        if re.search(r"^import tensorrt\.plugin", text, re.M):
            assert "REQUIRES_TENSORRT" in text, f"{path.name} uses tensorrt.plugin without REQUIRES_TENSORRT"


SELF_TESTS = {
    "misspelled enum member": ("import tensorrt as trt\nx = trt.BuilderFlag.FP61\n", True),
    "unknown module name": ("import tensorrt as trt\nb = trt.Bilder(None)\n", True),
    "flag removed in 11 unguarded": ("import tensorrt as trt\nf = trt.BuilderFlag.FP16\n", True),
    "flag removed in 11 behind hasattr": (
        "import tensorrt as trt\nif hasattr(trt.BuilderFlag, 'FP16'):\n    f = trt.BuilderFlag.FP16\n", False),
    "flag removed in 11 by getattr": ("import tensorrt as trt\nf = getattr(trt.BuilderFlag, 'FP16', None)\n", False),
    "flag behind version check": (
        "import tensorrt as trt\nif trt_version < (11,):\n    f = trt.BuilderFlag.INT8\n", False),
    "removed 10.0 method on a typed object": (
        "import tensorrt as trt\nrt = trt.Runtime(log)\nengine = rt.deserialize_cuda_engine(b)\n"
        "ctx = engine.create_execution_context()\nctx.execute_async_v2([], 0)\n", True),
    "good method on a typed object": (
        "import tensorrt as trt\nrt = trt.Runtime(log)\nengine = rt.deserialize_cuda_engine(b)\n"
        "ctx = engine.create_execution_context()\nctx.execute_async_v3(0)\n", False),
    "alias from require": ("def f():\n    t = require('tensorrt', 'x')\n    return t.BuilderFlag.NOPE\n", True),
    "plugin module on 10.3 without floor": ("import tensorrt.plugin as trtp\ntrtp.register\n", True),
    "plugin module with floor": ("REQUIRES_TENSORRT = (10, 9)\nimport tensorrt.plugin as trtp\ntrtp.register\n", False),
    "misspelled plugin name": ("REQUIRES_TENSORRT = (10, 9)\nimport tensorrt.plugin as trtp\ntrtp.regster\n", True),
}


@pytest.mark.parametrize("case", sorted(SELF_TESTS))
def test_checker_self_test(apis, case):
    source, should_fail = SELF_TESTS[case]
    problems, uses = check_source(source, apis)
    assert uses > 0
    assert bool(problems) == should_fail, problems
