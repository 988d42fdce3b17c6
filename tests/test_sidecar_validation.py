"""Sidecar fields are type-checked and bounded at load, and the class count is compared with the model's output
(issue 16 item 6). Real files: the shipped HC18 ONNX and checkpoint copied to tmp_path with edited sidecars."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.artifact import Artifact
from edgeseg.errors import ArtifactError

ASSETS = Path(__file__).resolve().parents[1] / "edgeseg" / "assets"


def _copy(tmp_path: Path, name: str = "hc18_fastseg.onnx", **changes) -> Path:
    path = tmp_path / name
    shutil.copy(ASSETS / name, path)
    data = json.loads((ASSETS / f"{name}.json").read_text())
    for key, value in changes.items():
        target = data
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    path.with_name(path.name + ".json").write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("version", ["2", 1.5, True, 0, None])
def test_schema_version_of_the_wrong_type_is_named(tmp_path, version):
    with pytest.raises(ArtifactError, match=r"schema_version is .*expected a positive integer"):
        Artifact.load(_copy(tmp_path, schema_version=version))


def test_schema_version_string_exits_2_in_the_cli_without_a_traceback(tmp_path):
    model = _copy(tmp_path, schema_version="2")
    proc = subprocess.run([sys.executable, "-m", "edgeseg", "measure", "--model", str(model), "--pixel-size", "0.1",
                           str(tmp_path / "any.png")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "schema_version is '2'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("field, value, message", [
    ("classes", "background,head", r"classes is 'background,head', expected a list"),
    ("classes", ["background", 7], r"expected a list of class names"),
    ("preprocess.mean", "0.5", r"preprocess\.mean is '0\.5', expected a list of numbers"),
    ("preprocess.size", [256, "256"], r"preprocess\.size .*expected a list of numbers"),
    ("model_kwargs", [2, 1], r"model_kwargs is \[2, 1\], expected an object"),
    ("inputs", [{"name": 3, "shape": []}], r"inputs\[0\] is .*expected"),
    ("colors", [[0, 0, 0], [0, 0, 999]], r"colors: expected a list of \[b, g, r\] integers 0-255"),
])
def test_wrong_field_types_are_named(tmp_path, field, value, message):
    with pytest.raises(ArtifactError, match=message):
        Artifact.load(_copy(tmp_path, **{field: value}))


@pytest.mark.parametrize("num_classes", [1e9, 10**9, 0, "2"])
def test_absurd_num_classes_is_refused_before_torch_allocates(tmp_path, num_classes):
    from edgeseg.models import load_checkpoint

    path = _copy(tmp_path, "hc18_fastseg.safetensors", **{"model_kwargs.num_classes": num_classes})
    with pytest.raises(ArtifactError, match=r"model_kwargs\.num_classes is .*expected an int in 1\.\.4096"):
        load_checkpoint(path)


def test_absurd_model_kwargs_number_is_refused(tmp_path):
    path = _copy(tmp_path, "hc18_fastseg.safetensors", **{"model_kwargs.width": 1e7})
    with pytest.raises(ArtifactError, match=r"model_kwargs\.width is 10000000\.0, expected finite numbers"):
        Artifact.load(path)


@pytest.mark.parametrize("field, value", [
    ("preprocess.size", [100000, 100000]),
    ("preprocess.size", [0, 256]),
    ("inputs", [{"name": "input", "shape": ["batch", 1, 1000000, 256]}]),
    ("inputs", [{"name": "input", "shape": ["batch", 1, -1, 256]}]),
])
def test_huge_or_negative_sizes_are_refused(tmp_path, field, value):
    with pytest.raises(ArtifactError, match=r"(preprocess\.size|inputs\[0\]\.shape) is .*8192"):
        Artifact.load(_copy(tmp_path, **{field: value}))


def test_class_count_against_the_sidecar_output_and_num_classes(tmp_path):
    names = [f"c{i}" for i in range(5)]
    colors = [[0, 0, 0]] * 5
    with pytest.raises(ArtifactError, match=r"classes has 5 names but model_kwargs\.num_classes is 2"):
        Artifact.load(_copy(tmp_path, classes=names, colors=colors))
    with pytest.raises(ArtifactError, match=r"classes has 5 names but outputs\[0\] 'logits' has 2 channel"):
        Artifact.load(_copy(tmp_path, classes=names, colors=colors, model_kwargs={}))
    with pytest.raises(ArtifactError, match=r"classes has 100000 names, expected at most 4096"):
        Artifact.load(_copy(tmp_path, classes=[f"c{i}" for i in range(100000)], colors=[[0, 0, 0]] * 100000))


def test_class_count_against_the_graph_output_when_the_sidecar_leaves_it_dynamic(tmp_path):
    pytest.importorskip("onnxruntime")
    from edgeseg.pipeline import Segmenter

    outputs = [{"name": "logits", "shape": ["batch", "classes", "height", "width"], "dtype": "float32"}]
    path = _copy(tmp_path, classes=["a", "b", "c"], colors=[[0, 0, 0]] * 3, model_kwargs={}, outputs=outputs)
    Artifact.load(path)  # nothing static in the sidecar to compare with
    with pytest.raises(ArtifactError, match=r"classes has 3 names but hc18_fastseg\.onnx output 'logits' has 2 "):
        Segmenter(path)


def test_shipped_sidecars_still_load():
    for side in ASSETS.glob("*.json"):
        Artifact.load(side.with_suffix(""))



def _instances_sidecar(tmp_path: Path, boxes: int) -> Path:
    path = _copy(tmp_path, outputs=[{"name": "boxes", "shape": [boxes, 4], "dtype": "float32"}])
    data = json.loads(path.with_name(path.name + ".json").read_text())
    data.setdefault("extra", {})["task"] = "instances"
    path.with_name(path.name + ".json").write_text(json.dumps(data))
    return path


def test_outputs_may_list_more_boxes_than_an_image_side(tmp_path):
    """Mask R-CNN's decomposed export has a 12096-anchor output: outputs are bounded by size in all, not per dim."""
    from edgeseg.artifact import MAX_TENSOR_ELEMENTS

    Artifact.load(_instances_sidecar(tmp_path, 12096))
    with pytest.raises(ArtifactError, match=r"outputs\[0\]\.shape .*elements in all"):
        Artifact.load(_instances_sidecar(tmp_path, MAX_TENSOR_ELEMENTS))
