"""Public names are plain objects: ``edgeseg.stream`` is a function, packages are plain modules, and no public
name of a package is also one of its submodules (an import of the submodule would rebind the name)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
    from pathlib import Path

    import edgeseg.video

    bad = []
    for path in sorted(Path(edgeseg.video.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                bad += [f"{path.name}:{node.lineno} {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, f"private names imported across edgeseg.video modules: {bad}"
