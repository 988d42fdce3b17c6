"""The model zoo: every model's shapes, gradients, determinism and ONNX export, via one shared tester."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from edgeseg.errors import InputError
from edgeseg.models import create_model, list_models
from edgeseg.models.testing import build, check_deterministic, check_forward_backward, onnx_parity, test_sizes

# name -> small options that keep the unit tests fast (same code paths as the defaults).
FAST = {
    "fastseg": {},
    "fastseg_small": {},
    "fastseg_large": {"width": 0.5},
}
MODELS = sorted(FAST)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_two_sizes(name):
    check_forward_backward(build(name, 3, 1, **FAST[name]), num_classes=3, in_channels=1)


@pytest.mark.parametrize("name", MODELS)
def test_deterministic(name):
    check_deterministic(name, 2, 3, **FAST[name])


def test_fastseg_stays_small():
    model = create_model("fastseg", num_classes=2, in_channels=1)
    params = sum(p.numel() for p in model.parameters())
    assert 0.3e6 <= params <= 1.0e6, params


def test_registry_lists_every_family():
    assert {"fastseg"} <= set(list_models())


def test_unknown_name_lists_available():
    with pytest.raises(InputError, match=r"model name: got 'unet'.*'fastseg'"):
        create_model("unet", num_classes=2)


@pytest.mark.parametrize("field,kwargs", [
    ("num_classes", {"num_classes": 0}),
    ("num_classes", {"num_classes": 2.0}),
    ("in_channels", {"num_classes": 2, "in_channels": 0}),
])
def test_bad_channel_counts(field, kwargs):
    with pytest.raises(InputError, match=field):
        create_model("fastseg", **kwargs)


def test_unknown_option_names_accepted_ones():
    with pytest.raises(InputError, match=r"unknown \['depth'\].*width"):
        create_model("fastseg", num_classes=2, depth=3)


def test_model_carries_its_rebuild_recipe():
    model = create_model("fastseg", num_classes=5, in_channels=1, width=0.5)
    assert model.model_name == "fastseg"
    assert model.model_kwargs == {"num_classes": 5, "in_channels": 1, "width": 0.5}


def test_listing_models_imports_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeseg.models import list_models; assert 'fastseg' in list_models(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("name", ["fastseg"])
def test_onnx_export_matches_onnxruntime(name):
    model = build(name, 2, 1, **FAST[name]).eval()
    h, w = test_sizes(model, [(96, 128)])[0]
    x = torch.randn(1, 1, h, w)
    assert onnx_parity(model, x) < 1e-4
