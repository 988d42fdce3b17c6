"""The model zoo: every model's shapes, gradients, determinism and ONNX export, via one shared tester."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from edgeseg.errors import InputError
from edgeseg.models import create_model, list_models
from edgeseg.models.testing import (
    build,
    check_deterministic,
    check_forward_backward,
    input_sizes,
    onnx_parity,
    randomize_batchnorm,
)

# name -> small options that keep the unit tests fast (same code paths as the defaults: narrower layers).
FAST = {
    "fastseg": {},
    "fastseg_small": {},
    "fastseg_large": {"width": 0.5},
    "fcn": {"width": 16},
    "fcn32s": {"width": 16},
    "deeplabv3": {"width": 16, "aspp_channels": 32},
    "deeplabv3_dcn": {"width": 16, "aspp_channels": 32},
    "pspnet": {"width": 16},
    "gcn": {"width": 16, "kernel_size": 7},
    "deconvnet": {"width": 8},
    "deeplab_attention": {"width": 16, "aspp_channels": 32},
}
# Registered by other components and tested there: the TFLite importer, the CRF-as-RNN op.
# tested in test_tflite_import, test_crf_rnn, test_maskrcnn, test_fcis, test_bottomup
ELSEWHERE = {"tflite_graph", "deeplabv3_crf", "maskrcnn", "fcis", "bottomup"}
ZOO = sorted(set(list_models()) - ELSEWHERE)
MODELS = sorted(FAST)
SLOW_EXPORT = {"fcn", "fcn32s", "deeplabv3", "deeplabv3_dcn", "pspnet", "gcn", "deconvnet", "deeplab_attention",
               "fastseg_large"}


def test_every_zoo_model_is_tested():
    assert ZOO == MODELS


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_two_sizes(name):
    check_forward_backward(build(name, 3, 1, **FAST[name]), num_classes=3, in_channels=1)


@pytest.mark.parametrize("name", MODELS)
def test_deterministic(name):
    check_deterministic(name, 2, 3, **FAST[name])


def test_fastseg_skip_stride_4_gives_a_finer_skip():
    model = build("fastseg", 2, 1, skip_stride=4)
    check_forward_backward(model, 2, 1, sizes=[(64, 64)])
    assert model.encoder.strides[model.low_index] == 4
    with pytest.raises(InputError, match="skip_stride: got 2"):
        create_model("fastseg", 2, skip_stride=2)


def test_gcn_without_boundary_refinement_has_no_br_blocks():
    from edgeseg.models.gcn import BoundaryRefinement

    plain = build("gcn", 2, 1, boundary_refinement=False, **FAST["gcn"])
    check_forward_backward(plain, 2, 1, sizes=[(64, 64)])
    assert not any(isinstance(m, BoundaryRefinement) for m in plain.modules())
    assert sum(isinstance(m, BoundaryRefinement) for m in build("gcn", 2, 1, **FAST["gcn"]).modules()) == 9


def test_fastseg_stays_small():
    model = create_model("fastseg", num_classes=2, in_channels=1)
    params = sum(p.numel() for p in model.parameters())
    assert 0.3e6 <= params <= 1.0e6, params


def test_registry_lists_every_family():
    families = {"fcn", "deeplabv3", "deeplabv3_dcn", "pspnet", "gcn", "deconvnet", "deeplab_attention", "fastseg"}
    assert families <= set(list_models())


@pytest.mark.parametrize("name", sorted(ELSEWHERE))
def test_models_registered_elsewhere_load_by_name(name):
    """Their checkpoints must load without importing the module first (lazy table entry)."""
    from edgeseg.models.registry import _factory

    assert callable(_factory(name))


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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _translations() -> dict:
    from edgeseg.ops.onnx_translations import translation_table  # shipped: a failed import is a bug

    return {"custom_translation_table": translation_table("native")}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPORT else n for n in MODELS])
def test_onnx_export_matches_onnxruntime(name):
    model = randomize_batchnorm(build(name, 2, 1, **FAST[name])).eval()
    h, w = input_sizes(model, [(96, 128)])[0]
    x = torch.randn(1, 1, h, w, generator=torch.Generator().manual_seed(0))
    options = _translations() if name.endswith("_dcn") else {}
    error, scale = onnx_parity(model, x, **options)
    assert scale > 0.05, f"logits too flat ({scale}) for a meaningful comparison"
    assert error < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name,options,traced,other", [
    ("fastseg", {}, (64, 64), (80, 112)),                 # the shipped model: any frame size, one ONNX file
    ("pspnet", {"width": 8}, (128, 192), (192, 64)),     # multiples of input_multiple=64 stay dynamic
])
def test_exports_with_dynamic_batch_and_size(name, options, traced, other):
    import onnxruntime as ort

    model = randomize_batchnorm(build(name, 2, 1, **options)).eval()
    m = getattr(model, "input_multiple", 1)
    side = (lambda n: torch.export.Dim.DYNAMIC) if m == 1 else (lambda n: m * torch.export.Dim(n, min=1, max=32))
    dims = {0: torch.export.Dim("batch", min=1, max=16), 2: side("hb"), 3: side("wb")}
    program = torch.onnx.export(model, (torch.randn(2, 1, *traced),), dynamo=True, verbose=False,
                                dynamic_shapes=(dims,))
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, *other, generator=torch.Generator().manual_seed(5))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (3, 2, *other)
    assert abs(got - want).max() < 1e-4


# --- encoders declare what they produce -------------------------------------------------------------

@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "mobilenetv2", "mobilenetv3_small", "mobilenetv3_large"])
@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_encoder_declares_channels_and_strides(encoder, output_stride):
    from edgeseg.models.encoders import create_encoder

    width = {"resnet18": 8, "resnet34": 8}.get(encoder, 0.25)
    enc = create_encoder(encoder, in_channels=1, output_stride=output_stride, width=width).eval()
    with torch.no_grad():
        features = enc(torch.zeros(1, 1, 64, 96))
    assert [f.shape[1] for f in features] == enc.out_channels
    assert [(64 // f.shape[2], 96 // f.shape[3]) for f in features] == [(s, s) for s in enc.strides]
    assert enc.strides[-1] == output_stride and len(enc.strides) == 5


def test_dilation_keeps_the_weights():
    from edgeseg.models.encoders import create_encoder

    shapes = [[p.shape for p in create_encoder("resnet18", output_stride=os, width=8).parameters()] for os in (8, 32)]
    assert shapes[0] == shapes[1]


# --- each family's key idea ---------------------------------------------------------------------------

def test_pspnet_rejects_sizes_its_bins_do_not_divide():
    model = build("pspnet", 2, 1, width=8)
    assert model.input_multiple == 64
    with pytest.raises(InputError, match=r"input size: got 96x128.*input_multiple=64.*128x128"):
        model(torch.zeros(1, 1, 96, 128))


def test_pyramid_pooling_equals_adaptive_pooling_when_bins_divide():
    from edgeseg.models.pspnet import PyramidPooling, bin_pool

    x = torch.randn(2, 8, 8, 12)
    for b in (1, 2, 4):
        assert torch.allclose(bin_pool(x, b), torch.nn.functional.adaptive_avg_pool2d(x, b), atol=1e-6)
    assert PyramidPooling(8, bins=(1, 2, 4))(x).shape == (2, 8 + 2 * 3, 8, 12)


def test_global_conv_sees_exactly_a_k_by_k_window():
    from edgeseg.models.gcn import GlobalConv

    k = 7
    gc = GlobalConv(2, 1, k)
    x = torch.randn(1, 2, 21, 21, requires_grad=True)
    gc(x)[0, 0, 10, 10].backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(1)[0], as_tuple=True)
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (7, 13, 7, 13)
    assert len(rows) == k * k  # dense k x k support from only 4k weights per channel pair


def test_deconvnet_unpooling_restores_values_at_their_switches():
    from edgeseg.models.deconvnet import max_pool_with_indices, max_unpool

    x = torch.randn(2, 3, 7, 9)
    pooled, indices = max_pool_with_indices(x)
    restored = max_unpool(pooled, indices, x)
    assert torch.equal(restored, torch.nn.functional.max_unpool2d(pooled, indices, 2, 2, output_size=x.shape[-2:]))
    kept = restored != 0
    assert torch.equal(restored[kept], x[kept])          # every kept value sits where it came from
    assert kept.sum() == pooled.numel()                   # one value per pooling window, zeros elsewhere


def test_attention_to_scale_can_select_one_scale():
    """With attention saturated on scale 1, the fused output is the shared network at scale 1."""
    model = build("deeplab_attention", 2, 1, width=8, aspp_channels=16).eval()
    last = model.attention.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([50.0, 0.0, 0.0]))
        x = torch.randn(1, 1, 64, 64)
        fused, per_scale = model.forward_all(x)
        assert torch.allclose(fused, model.shared(x), atol=1e-5)
        assert len(per_scale) == 3 and not torch.allclose(per_scale[0], per_scale[2])


def test_attention_weights_are_a_softmax_over_scales():
    model = build("deeplab_attention", 2, 1, width=8, aspp_channels=16).eval()
    weights = model.attention(torch.randn(1, 16 * 3, 4, 4))
    assert weights.shape == (1, 3, 4, 4)
    assert torch.allclose(weights.sum(1), torch.ones(1, 4, 4)) and (weights >= 0).all()


def test_deformable_block_starts_as_a_regular_convolution():
    from edgeseg.models.layers import DeformableConv3x3

    block = DeformableConv3x3(4, 6, stride=1, dilation=2)
    conv = torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2, bias=False)
    conv.weight.data.copy_(block.conv.weight.data)
    x = torch.randn(1, 4, 10, 12)
    assert torch.allclose(block(x), conv(x), atol=1e-5)   # zero-initialised offsets: the regular grid
    block.offset.bias.data.fill_(0.5)                        # shifted sampling changes the result
    assert not torch.allclose(block(x), conv(x), atol=1e-3)


def test_deeplabv3_dcn_uses_deformable_convs_in_the_last_stage_only():
    from edgeseg.models.layers import DeformableConv3x3

    model = build("deeplabv3_dcn", 2, 1, width=8, aspp_channels=16)
    stages = model.encoder.stages
    assert any(isinstance(m, DeformableConv3x3) for m in stages[4].modules())
    assert not any(isinstance(m, DeformableConv3x3) for s in stages[:4] for m in s.modules())


def test_deeplab_rates_follow_the_output_stride():
    model = build("deeplabv3", 2, 1, width=8, aspp_channels=16, output_stride=8)
    assert [b[0].dilation for b in model.aspp.branches[1:]] == [(12, 12), (24, 24), (36, 36)]
