"""Public names are plain objects: ``edgeseg.stream`` is a function, packages are plain modules, and no public
name of a package is also one of its submodules (an import of the submodule would rebind the name).

Checked to fail: on the tree before the ops modules were renamed, test_no_module_swaps_its_class failed at
edgeseg/ops/__init__.py:45 and test_no_public_name_of_a_package_is_also_its_submodule named dense_crf,
dense_crf_windowed, nms and roi_align; test_video_modules_share_no_private_names fails on capture.py/dicom.py
importing ``_cv2`` from sources.py as they did.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ["torch", "onnxruntime", "cv2", "cupy", "tensorrt", "onnx", "scipy", "av", "pydicom"]


def _run(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing any HEAVY library raises."""
    prelude = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {HEAVY!r}:
                    raise ImportError("blocked for the test: " + name)
        sys.meta_path.insert(0, Block())
        """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True)


def test_stream_is_a_function_and_video_a_plain_package_numpy_only():
    out = _run("""
        import inspect, types
        import edgeseg
        stream = edgeseg.stream
        assert inspect.isfunction(stream), type(stream)
        import edgeseg.video, edgeseg.video.loop, edgeseg.video.sinks
        assert type(edgeseg.video) is types.ModuleType, type(edgeseg.video)
        assert edgeseg.stream is stream is edgeseg.video.stream, "importing the video package rebound edgeseg.stream"
        assert edgeseg.open_source is edgeseg.video.open_source and edgeseg.open_sink is edgeseg.video.open_sink
        assert {"stream", "open_source", "open_sink", "tune_process"} <= set(dir(edgeseg))
        print("ok")
        """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_video_modules_share_no_private_names():
    """What the video modules share (the Source base, the OpenCV loader) is public in ``edgeseg.video.frames``;
    a private name imported across modules is a coupling nobody sees from the outside."""
    import ast

    import edgeseg.video

    bad = []
    for path in sorted(Path(edgeseg.video.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                bad += [f"{path.name}:{node.lineno} {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, f"private names imported across edgeseg.video modules: {bad}"


REPO = Path(__file__).resolve().parents[1]


def _sources(pattern: str = "*.py"):
    """The product's files matching ``pattern`` (edgeseg, export, plugins)."""
    for folder in ("edgeseg", "export", "plugins"):
        yield from sorted((REPO / folder).rglob(pattern))


def test_no_module_swaps_its_class():
    """``sys.modules[__name__].__class__ = ...`` makes a module something else (callable, attribute hooks):
    readers, IDEs and type checkers cannot follow it. Public names go in plain modules instead."""
    import ast

    bad = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            bad += [f"{path.relative_to(REPO)}:{node.lineno}" for t in targets
                    if isinstance(t, ast.Attribute) and t.attr == "__class__"]
    assert not bad, f"module class swaps: {bad}"


def test_no_public_name_of_a_package_is_also_its_submodule():
    """A package's public name (``__all__`` or its lazy ``_LAZY`` table) that is also a submodule is rebound to
    the module whenever anything imports that submodule."""
    import ast

    clashes = {}
    for init in _sources("__init__.py"):
        names = set()
        for node in ast.parse(init.read_text(), str(init)).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                ids = {t.id for t in targets if isinstance(t, ast.Name)}
                if ids & {"__all__", "_LAZY"} and isinstance(node.value, (ast.List, ast.Tuple, ast.Dict)):
                    items = node.value.keys if isinstance(node.value, ast.Dict) else node.value.elts
                    names |= {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}
        folder = init.parent
        submodules = {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}
        if names & submodules:
            clashes[str(folder)] = sorted(names & submodules)
    assert not clashes, f"public names that are also submodules: {clashes}"


def test_ops_functions_stay_functions_after_their_modules_load():
    import importlib
    import inspect
    import types

    import pytest

    pytest.importorskip("torch")
    pytest.importorskip("scipy")
    import edgeseg.ops as ops

    for module in ("boxes", "roi", "crf", "crf_window", "deform_conv", "crf_rnn", "routes", "permutohedral"):
        importlib.import_module(f"edgeseg.ops.{module}")
    assert type(ops) is types.ModuleType
    for name, home in ops._LAZY.items():
        value = getattr(ops, name)
        assert not isinstance(value, types.ModuleType), name
        assert value is getattr(importlib.import_module(home), name)
        assert inspect.isfunction(value) or inspect.isclass(value), (name, value)
