"""The model zoo: every model's shapes, gradients, determinism and ONNX export, via one shared tester."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from edgeseg.errors import InputError
from edgeseg.models import create_model, list_models
from edgeseg.models.testing import (build, check_deterministic, check_forward_backward, onnx_parity, randomize_batchnorm,
                                    test_sizes)

# name -> small options that keep the unit tests fast (same code paths as the defaults: narrower layers).
FAST = {
    "fastseg": {},
    "fastseg_small": {},
    "fastseg_large": {"width": 0.5},
    "fcn": {"width": 16},
    "deeplabv3": {"width": 16, "aspp_channels": 32},
    "deeplabv3_dcn": {"width": 16, "aspp_channels": 32},
    "pspnet": {"width": 16},
    "gcn": {"width": 16, "kernel_size": 7},
    "deconvnet": {"width": 8},
    "deeplab_attention": {"width": 16, "aspp_channels": 32},
}
ZOO = sorted(set(list_models()) - {"tflite_graph"})  # tflite_graph is tested with the TFLite importer
MODELS = sorted(FAST)
SLOW_EXPORT = {"fcn", "deeplabv3", "deeplabv3_dcn", "pspnet", "gcn", "deconvnet", "deeplab_attention",
               "fastseg_large"}


def test_every_zoo_model_is_tested():
    assert ZOO == MODELS


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
    families = {"fcn", "deeplabv3", "deeplabv3_dcn", "pspnet", "gcn", "deconvnet", "deeplab_attention", "fastseg"}
    assert families <= set(list_models())


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


def _translations() -> dict:
    try:
        from edgeseg.export.op_translations import CUSTOM_TRANSLATION_TABLE
    except ModuleNotFoundError:
        pytest.skip("edgeseg.export.op_translations (DeformConv -> ONNX) is not there yet")
    return {"custom_translation_table": CUSTOM_TRANSLATION_TABLE}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPORT else n for n in MODELS])
def test_onnx_export_matches_onnxruntime(name):
    model = randomize_batchnorm(build(name, 2, 1, **FAST[name])).eval()
    h, w = test_sizes(model, [(96, 128)])[0]
    x = torch.randn(1, 1, h, w, generator=torch.Generator().manual_seed(0))
    options = _translations() if name.endswith("_dcn") else {}
    error, scale = onnx_parity(model, x, **options)
    assert scale > 0.05, f"logits too flat ({scale}) for a meaningful comparison"
    assert error < 1e-4


@pytest.mark.slow
def test_fastseg_exports_with_dynamic_batch_and_size():
    """The shipped real-time model must serve any frame size from one ONNX file."""
    import onnxruntime as ort

    model = randomize_batchnorm(build("fastseg", 2, 1)).eval()
    dims = {0: torch.export.Dim("batch", min=1, max=16), 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    program = torch.onnx.export(model, (torch.randn(2, 1, 64, 64),), dynamo=True, verbose=False,
                                dynamic_shapes=(dims,))
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 80, 112, generator=torch.Generator().manual_seed(5))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (3, 2, 80, 112)
    assert abs(got - want).max() < 1e-4
