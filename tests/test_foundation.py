"""The package contract: cheap import, CLI, info, artifact sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from edgeseg.artifact import Artifact, Preprocess, TensorSpec, sidecar_path
from edgeseg.errors import ArtifactError, MissingDependencyError

BLOCKED = ["torch", "onnxruntime", "cv2", "cupy", "tensorrt", "onnx", "scipy"]


def test_import_needs_only_numpy():
    """`import edgeseg` (and its lazy attributes' modules' registration) with heavy libraries blocked."""
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError("blocked for the test: " + name)
        sys.meta_path.insert(0, Block())
        import edgeseg, edgeseg.artifact, edgeseg.errors, edgeseg.cli
        assert edgeseg.__version__
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
        assert not loaded, loaded
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_cli_help_lists_commands_without_heavy_imports():
    code = (
        "import sys, edgeseg.cli\n"
        "edgeseg.cli.build_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','onnxruntime','cupy','tensorrt')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_info_json_reports_every_backend():
    out = subprocess.run([sys.executable, "-m", "edgeseg", "info", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["backends"]) >= {"torch", "onnxruntime", "tensorrt"}
    for name, probe in report["backends"].items():
        assert probe["detail"], f"backend {name} has no reason/detail"
    assert report["libraries"]["numpy"]["ok"]


def test_missing_dependency_names_the_extra():
    from edgeseg._deps import require

    with pytest.raises(MissingDependencyError, match=r"edgeseg\[gpu\]"):
        require("cupy.__nonexistent__")


def _artifact(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    return Artifact(
        path=model, model="fastseg", inputs=[TensorSpec("input", ["batch", 3, 256, 256])],
        outputs=[TensorSpec("logits", ["batch", 2, 256, 256])], preprocess=Preprocess(size=(256, 256)),
        classes=["background", "head"],
    )


def test_sidecar_round_trip(tmp_path):
    art = _artifact(tmp_path)
    art.save()
    assert sidecar_path(art.path).name == "m.onnx.json"
    back = Artifact.load(art.path)
    assert back.to_dict() == art.to_dict()
    assert back.preprocess.size == (256, 256)
    assert back.format == "onnx"


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("output_kind", "scores", "output_kind"),
        ("preprocess", {"size": [256, 256], "color": "hsv"}, "preprocess.color"),
        ("preprocess", {"size": [256, 256], "mean": [0.5]}, "mean/std"),
        ("colors", [[0, 0, 0]], "colors"),
        ("bogus", 1, "unknown sidecar fields"),
    ],
)
def test_bad_sidecar_names_the_field(tmp_path, field, value, message):
    art = _artifact(tmp_path)
    art.save()
    data = json.loads(art.sidecar_path.read_text())
    data[field] = value
    art.sidecar_path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=message):
        Artifact.load(art.path)


def test_missing_sidecar_says_how_to_make_one(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")  # an empty file parses as an ONNX model without a graph
    with pytest.raises(ArtifactError, match=r"no sidecar m.onnx.json next to it.*`edgeseg export`"):
        Artifact.load(model)
    model.rename(tmp_path / "m.safetensors")
    with pytest.raises(ArtifactError, match="sidecar not found.*`edgeseg export`"):
        Artifact.load(tmp_path / "m.safetensors")
