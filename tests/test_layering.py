"""Import directions between the stages (README "Layout"): a walk over every ``import`` in ``edgeseg/``,
``export/`` (``edgeseg.export``) and ``plugins/`` (``edgeseg.plugins``), function-level imports included.
Late binding by name (``importlib.import_module``, ``_LAZY`` tables, backend registrations) is not an
arrow here: it resolves a public name on first use, as a user's own import would.

- the library (``edgeseg`` less the CLI) and ``plugins/`` never import ``export/`` (the build stage);
  ``edgeseg.runtime`` never does, without exception (a runtime-only install has no ``export/``);
- nothing but the CLI (``edgeseg.cli``, ``edgeseg.__main__``, ``edgeseg.commands``) imports the CLI;
- no import loop beyond the known ones listed below, and those may only shrink;
- ``export/`` and ``plugins/`` reach the library by absolute ``edgeseg.`` imports only (``from ..artifact``
  points outside the folder in a checkout, where static tools cannot place it).

Checked to fail: adding ``from edgeseg.export.trt_build import log_text`` inside a function of
``edgeseg/runtime/tensorrt_runner.py`` failed ``test_runtime_never_imports_export`` and
``test_library_never_imports_export``; adding ``from ..commands.serve import triton_python`` inside
``LocalServer.__init__`` (edgeseg/triton/local.py) failed ``test_only_the_cli_imports_the_cli`` and
``test_no_import_loops_beyond_the_known_ones`` (the triton <-> commands loop came back).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"edgeseg": "edgeseg", "export": "edgeseg.export", "plugins": "edgeseg.plugins"}
CLI = ("edgeseg.cli", "edgeseg.__main__", "edgeseg.commands")
EXPORT = "edgeseg.export"
PLUGINS = "edgeseg.plugins"

# Upward imports still to remove: (importer, imported) -> the issue 21 item that removes it.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}

# Relative imports out of export/ or plugins/ still to rewrite as absolute ones: file -> the issue 21 item.
KNOWN_RELATIVE: dict[str, str] = {}

# Import loops still to break (issue 21, "Done when: no import loop anywhere"). A loop found must lie inside
# one of these sets; a module that leaves a loop must leave its set too (test_known_loops_are_not_stale).
KNOWN_LOOPS: dict[str, set[str]] = {}


@cache
def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``)."""
    found = {}
    for folder, prefix in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([prefix, *parts])] = (path, path.name == "__init__.py")
    return found


def _base(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the project modules it imports anywhere in its file."""
    known = modules()
    edges = {}
    for name, (path, is_package) in known.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _base(name, is_package, node)
                for alias in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        edges[name] = frozenset(t for t in targets if t in known and t != name)
    return edges


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _arrows(importers, imported) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in graph().items() if importers(a) for b in targets if imported(b))


def _library(name: str) -> bool:
    return not _in(name, EXPORT, PLUGINS, *CLI)


def loops() -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    edges, index, low, stack, on_stack, found = graph(), {}, {}, [], set(), []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_walk_sees_the_stages():
    edges = graph()
    assert "edgeseg.runtime.tensorrt_env" in edges["edgeseg.runtime.tensorrt_runner"]
    assert "edgeseg.runtime.tensorrt_env" in edges["edgeseg.export.trt_build"]
    assert "edgeseg.runtime.tensorrt_env" in edges["edgeseg.plugins.tensorrt"]
    assert "edgeseg.ops.onnx_translations" in edges["edgeseg.models.maskrcnn.export"]  # `from ...ops.x import`
    assert "edgeseg.postprocess" in edges["edgeseg.pipeline"]  # `from . import postprocess` is the submodule


def test_runtime_never_imports_export():
    bad = _arrows(lambda a: _in(a, "edgeseg.runtime"), lambda b: _in(b, EXPORT))
    assert not bad, f"edgeseg.runtime must run without export/ (move the code down): {bad}"


def test_library_never_imports_export():
    bad = [arrow for arrow in _arrows(lambda a: _library(a) or _in(a, PLUGINS), lambda b: _in(b, EXPORT))
           if arrow not in KNOWN_UPWARD]
    assert not bad, f"upward imports into export/ (the build stage); move the shared code down: {bad}"


def test_only_the_cli_imports_the_cli():
    bad = _arrows(lambda a: not _in(a, *CLI), lambda b: _in(b, *CLI))
    assert not bad, f"the library imports the CLI; move what both need into the library: {bad}"


def test_no_import_loops_beyond_the_known_ones():
    new = [sorted(loop) for loop in loops() if not any(loop <= known for known in KNOWN_LOOPS.values())]
    assert not new, f"import loops not in KNOWN_LOOPS (break them; do not add them to the list): {new}"


def test_allowlists_are_not_stale():
    """Entries go when their loop or arrow does, so the lists only shrink."""
    in_loops = set().union(*loops())
    gone = {why: sorted(known - in_loops) for why, known in KNOWN_LOOPS.items() if known - in_loops}
    assert not gone, f"these modules left their import loop: delete them from KNOWN_LOOPS: {gone}"
    arrows = set(_arrows(lambda a: True, lambda b: True))
    fixed = [arrow for arrow in KNOWN_UPWARD if arrow not in arrows]
    assert not fixed, f"these upward imports are gone: delete them from KNOWN_UPWARD: {fixed}"


def _outward_relative(path: Path, depth: int) -> list[str]:
    """Relative imports in ``path`` that climb above its top-level folder (``depth``: packages below it)."""
    tree = ast.parse(path.read_text(), str(path))
    return [f"line {node.lineno}: from {'.' * node.level}{node.module or ''}" for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level > depth + 1]


def test_export_and_plugins_import_the_library_absolutely():
    bad = {}
    for folder in ("export", "plugins"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO)
            found = _outward_relative(path, len(rel.parts) - 2)
            if found and str(rel) not in KNOWN_RELATIVE:
                bad[str(rel)] = found
    assert not bad, f"use absolute `edgeseg.` imports for the library: {bad}"
    stale = [name for name in KNOWN_RELATIVE if not _outward_relative(REPO / name, len(Path(name).parts) - 2)]
    assert not stale, f"these files import absolutely now: delete them from KNOWN_RELATIVE: {stale}"
