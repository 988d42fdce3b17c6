"""Checkpoints: safetensors weights + JSON sidecar round-trip, and clear errors for bad files."""

from __future__ import annotations

import json

import pytest
import torch

from edgeseg.artifact import Artifact, Preprocess
from edgeseg.errors import ArtifactError, InputError
from edgeseg.models import create_model, load_checkpoint, save_checkpoint


def _gray_artifact(path):
    pre = Preprocess(size=(64, 64), color="gray", mean=[0.2], std=[0.3])
    return Artifact(path=path, classes=["background", "head"], preprocess=pre)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_model("fastseg_small", num_classes=2, in_channels=1).eval()
    path = tmp_path / "hc18.safetensors"
    save_checkpoint(model, path, _gray_artifact(path))
    return model, path


def test_round_trip_reproduces_outputs_and_sidecar(saved):
    model, path = saved
    loaded, art = load_checkpoint(path)
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert art.model == "fastseg_small"
    assert art.model_kwargs == {"num_classes": 2, "in_channels": 1}
    assert art.classes == ["background", "head"] and art.preprocess.color == "gray"
    assert art.output_kind == "logits"
    assert art.inputs[0].shape == ["batch", 1, "height", "width"]
    assert art.outputs[0].shape == ["batch", 2, "height", "width"]


def test_checkpoint_holds_no_pickle(saved):
    _, path = saved
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_len])  # safetensors: 8-byte length + JSON header
    assert header["__metadata__"]["model"] == "fastseg_small"
    assert all(v["dtype"] == "F32" or v["dtype"] == "I64" for k, v in header.items() if k != "__metadata__")


def test_missing_weights_file(saved):
    _, path = saved
    path.unlink()
    with pytest.raises(ArtifactError, match="not found"):
        load_checkpoint(path)


def test_missing_sidecar(saved):
    _, path = saved
    (path.parent / (path.name + ".json")).unlink()
    with pytest.raises(ArtifactError, match="sidecar not found"):
        load_checkpoint(path)


def _edit_sidecar(path, **changes):
    side = path.parent / (path.name + ".json")
    data = json.loads(side.read_text())
    data.update(changes)
    side.write_text(json.dumps(data))


def test_unknown_model_name(saved):
    _, path = saved
    _edit_sidecar(path, model="no_such_net")
    with pytest.raises(ArtifactError, match="no_such_net.*fastseg"):
        load_checkpoint(path)


def test_mismatched_weights_name_the_tensors(saved):
    _, path = saved
    _edit_sidecar(path, model_kwargs={"num_classes": 2, "in_channels": 3})
    with pytest.raises(ArtifactError, match=r"shape mismatches.*encoder\.stages\.0\.0\.0\.weight: file \(8, 1, 3, 3\) vs model \(8, 3, 3, 3\)"):
        load_checkpoint(path)
    _edit_sidecar(path, model="fastseg", model_kwargs={"num_classes": 2, "in_channels": 1})
    with pytest.raises(ArtifactError, match="missing weights|shape mismatches"):
        load_checkpoint(path)


def test_corrupt_weights_file(saved):
    _, path = saved
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(ArtifactError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_save_checks_artifact_against_model(tmp_path):
    model = create_model("fastseg_small", num_classes=3, in_channels=1)
    path = tmp_path / "m.safetensors"
    with pytest.raises(InputError, match="artifact.classes"):
        save_checkpoint(model, path, _gray_artifact(path))
    with pytest.raises(InputError, match="preprocess.color"):
        save_checkpoint(model, path, Artifact(path=path, classes=["a", "b", "c"]))
    with pytest.raises(InputError, match=r"\.safetensors"):
        save_checkpoint(model, tmp_path / "m.pt")
    assert not path.exists()


def test_save_without_artifact_writes_usable_defaults(tmp_path):
    model = create_model("fastseg_small", num_classes=4, in_channels=3)
    path = save_checkpoint(model, tmp_path / "sub" / "m.safetensors")
    _, art = load_checkpoint(path)
    assert art.classes == ["class_0", "class_1", "class_2", "class_3"]
    assert art.preprocess.channels == 3
