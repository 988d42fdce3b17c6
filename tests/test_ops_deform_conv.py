"""edgeseg.ops.deform_conv2d: agrees with the literal NumPy reference (float64 and float32), with plain
convolution where the math says it must, has correct gradients, and rejects bad shapes by name."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F

from edgeseg.errors import InputError
from edgeseg.ops import DeformConv2d, deform_conv2d
from edgeseg.ops.reference.deform_conv import deform_conv2d as reference


pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (N, C_in, H, W, C_out, (kh, kw), groups, offset_groups, stride, padding, dilation, mask, bias, offset scale)
CASES = {
    "plain_3x3": (1, 2, 5, 5, 3, (3, 3), 1, 1, 1, 0, 1, False, True, 1.0),
    "padding_borders": (2, 3, 4, 5, 2, (3, 3), 1, 1, 1, 1, 1, True, True, 1.5),
    "out_of_image_offsets": (1, 2, 4, 4, 2, (3, 3), 1, 1, 1, 1, 1, True, False, 6.0),
    "weight_groups": (2, 4, 5, 5, 6, (3, 3), 2, 1, 1, 1, 1, True, True, 1.0),
    "offset_groups": (1, 6, 5, 6, 4, (3, 3), 1, 3, 1, 1, 1, True, True, 2.0),
    "both_groups": (1, 4, 6, 5, 4, (2, 3), 2, 4, 1, (1, 0), 1, False, True, 1.0),
    "stride_dilation": (1, 3, 9, 8, 2, (3, 3), 1, 1, (2, 1), (2, 1), (2, 1), True, True, 1.0),
    "rect_kernel_stride2": (2, 2, 7, 7, 3, (1, 3), 1, 2, 2, (0, 1), 1, True, False, 3.0),
}


def _case(case, dtype, seed):
    n, c, h, w, co, (kh, kw), groups, og, stride, padding, dilation, use_mask, use_bias, scale = case
    rng = np.random.default_rng(seed)
    s, p, d = (np.broadcast_to(v, 2).tolist() for v in (stride, padding, dilation))
    oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    t = {
        "input": rng.standard_normal((n, c, h, w)),
        "offset": rng.standard_normal((n, 2 * og * kh * kw, oh, ow)) * scale,
        "weight": rng.standard_normal((co, c // groups, kh, kw)),
        "bias": rng.standard_normal(co) if use_bias else None,
        "mask": rng.uniform(0, 1, (n, og * kh * kw, oh, ow)) if use_mask else None,
    }
    t = {k: None if v is None else torch.tensor(v, dtype=dtype) for k, v in t.items()}
    return t, {"stride": stride, "padding": padding, "dilation": dilation}


def _call(t, params):
    return deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], mask=t["mask"], **params)


def _reference(t, params):
    arrays = {k: None if v is None else v.detach().double().numpy() for k, v in t.items()}
    return reference(arrays["input"], arrays["offset"], arrays["weight"], arrays["bias"], mask=arrays["mask"],
                     **params)


@pytest.mark.parametrize("name", CASES)
def test_forward_float64_matches_reference(name):
    t, params = _case(CASES[name], torch.float64, seed=len(name))
    got = _call(t, params).numpy()
    want = _reference(t, params)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", CASES)
def test_forward_float32_matches_reference(name):
    t, params = _case(CASES[name], torch.float32, seed=len(name) + 100)
    got = _call(t, params).numpy()
    want = _reference(t, params)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_zero_offsets_and_unit_mask_equal_conv2d():
    t, params = _case(CASES["weight_groups"], torch.float64, seed=1)
    t["offset"].zero_()
    t["mask"].fill_(1.0)
    want = F.conv2d(t["input"], t["weight"], t["bias"], stride=1, padding=1, groups=2)
    torch.testing.assert_close(_call(t, params), want, rtol=0, atol=1e-12)


def test_integer_offset_shifts_the_sampling_grid():
    """An offset of exactly (dy, dx) = (1, -2) everywhere equals a plain convolution of the input shifted by
    it, with zeros where the shifted window leaves the image."""
    t, params = _case(CASES["plain_3x3"], torch.float64, seed=2)
    t["offset"][:, 0::2] = 1.0
    t["offset"][:, 1::2] = -2.0
    shifted = F.pad(t["input"], (2, 0, 0, 1))[:, :, 1:, :-2]
    want = F.conv2d(shifted, t["weight"], t["bias"])
    torch.testing.assert_close(_call(t, params), want, rtol=0, atol=1e-12)


def test_samples_far_outside_the_image_read_zero():
    t, params = _case(CASES["padding_borders"], torch.float64, seed=3)
    t["offset"].fill_(100.0)
    want = t["bias"].view(1, -1, 1, 1).expand(2, -1, 4, 5)
    torch.testing.assert_close(_call(t, params), want, rtol=0, atol=0)


GRAD_CASES = ["padding_borders", "both_groups", "stride_dilation", "offset_groups"]


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradcheck_input_offset_weight_bias_mask(name):
    _n, c, h, w, co, k, groups, og, stride, padding, dilation, _use_mask, _, scale = CASES[name]
    tiny = (1, c, min(h, 5), min(w, 5), co, k, groups, og, stride, padding, dilation, True, True, scale)
    t, params = _case(tiny, torch.float64, seed=7)
    names = ["input", "offset", "weight", "bias", "mask"]
    inputs = tuple(t[k].requires_grad_() for k in names)

    def fn(input, offset, weight, bias, mask):
        return deform_conv2d(input, offset, weight, bias, mask=mask, **params)

    # fast mode compares the analytic and numerical Jacobians along random directions (all five inputs)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, fast_mode=True)


def test_full_gradcheck_on_a_tiny_modulated_grouped_case():
    tiny = (1, 2, 3, 4, 2, (2, 2), 2, 2, 1, 1, 1, True, True, 1.5)
    t, params = _case(tiny, torch.float64, seed=11)
    inputs = tuple(t[k].requires_grad_() for k in ["input", "offset", "weight", "bias", "mask"])
    assert torch.autograd.gradcheck(lambda x, o, w, b, m: deform_conv2d(x, o, w, b, mask=m, **params), inputs)


def test_gradcheck_without_mask_and_bias():
    t, params = _case(CASES["out_of_image_offsets"], torch.float64, seed=8)
    inputs = (t["input"].requires_grad_(), t["offset"].requires_grad_(), t["weight"].requires_grad_())
    assert torch.autograd.gradcheck(lambda x, o, w: deform_conv2d(x, o, w, **params), inputs, fast_mode=True)


def test_custom_op_registration_passes_opcheck():
    t, _params = _case(CASES["both_groups"], torch.float64, seed=9)
    for v in t.values():
        if v is not None:
            v.requires_grad_()
    args = (t["input"], t["weight"], t["offset"], t["bias"], t["mask"], 1, 1, 1, 0, 1, 1, 2, 4)
    torch.library.opcheck(torch.ops.edgeseg.deform_conv2d.default, args)


def test_module_has_torchvision_parameters_and_calls_the_op():
    torch.manual_seed(0)
    layer = DeformConv2d(4, 6, kernel_size=3, stride=1, padding=1, dilation=1, groups=2, bias=True)
    assert layer.weight.shape == (6, 2, 3, 3) and layer.bias.shape == (6,)
    x, offset = torch.randn(1, 4, 6, 6), torch.randn(1, 18, 6, 6)
    want = deform_conv2d(x, offset, layer.weight, layer.bias, padding=1)
    torch.testing.assert_close(layer(x, offset), want)
    layer(x, offset).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def _good():
    return {"input": torch.zeros(1, 4, 6, 6), "offset": torch.zeros(1, 18, 4, 4), "weight": torch.zeros(2, 4, 3, 3),
                "bias": torch.zeros(2), "mask": torch.zeros(1, 9, 4, 4)}


BAD = {
    "input_rank": ({"input": torch.zeros(4, 6, 6)}, {}, r"input: .*\(4, 6, 6\).*4-D tensor \(N, C, H, W\)"),
    "weight_rank": ({"weight": torch.zeros(2, 4, 9)}, {}, r"weight: .*expected a 4-D tensor"),
    "offset_rank": ({"offset": torch.zeros(18, 4, 4)}, {}, r"offset: .*expected a 4-D tensor"),
    "channels": ({"weight": torch.zeros(2, 3, 3, 3)}, {}, r"weight: .*\(2, 3, 3, 3\).*divide the 4 input channels"),
    "offset_channels": ({"offset": torch.zeros(1, 17, 4, 4)}, {}, r"offset: got 17 channels.*2 \* offset_groups"),
    "offset_spatial": ({"offset": torch.zeros(1, 18, 5, 4)}, {}, r"offset: .*\(1, 18, 5, 4\).*\(1, 18, 4, 4\)"),
    "mask_shape": ({"mask": torch.zeros(1, 8, 4, 4)}, {}, r"mask: .*\(1, 9, 4, 4\)"),
    "bias_shape": ({"bias": torch.zeros(3)}, {}, r"bias: .*\(3,\).*\(2,\)"),
    "negative_padding": ({}, {"padding": -1}, r"padding: .*>= 0"),
    "zero_stride": ({}, {"stride": (0, 1)}, r"stride: .*>= 1"),
    "bad_pair": ({}, {"dilation": (1, 2, 3)}, r"dilation: .*pair of ints"),
    "kernel_too_big": ({"weight": torch.zeros(2, 4, 7, 7), "offset": torch.zeros(1, 98, 4, 4)}, {}, r"input: .*at least the dilated kernel"),
    "dtype": ({"offset": torch.zeros(1, 18, 4, 4, dtype=torch.float64)}, {}, r"offset: .*dtype"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_names_the_argument_and_expected_shape(name):
    change, params, message = BAD[name]
    t = {**_good(), **change}
    with pytest.raises(ValueError, match=message) as info:
        deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], mask=t["mask"], **params)
    assert isinstance(info.value, InputError)


def test_chunked_evaluation_equals_reference_and_one_chunk_gradients(monkeypatch):
    """Output pixels are processed in chunks; chunk boundaries (here every 3 pixels) change nothing."""
    import edgeseg.ops.deform_conv as implementation

    both_groups_modulated = (1, 4, 6, 5, 4, (2, 3), 2, 4, 1, (1, 0), 1, True, True, 1.0)
    t, params = _case(both_groups_modulated, torch.float64, seed=12)
    inputs = [t[k].requires_grad_() for k in ["input", "offset", "weight", "bias", "mask"]]
    whole = _call(t, params)
    whole_grads = torch.autograd.grad(whole.square().sum(), inputs)
    kernel_points, channels = 6, 4
    monkeypatch.setattr(implementation, "_CHUNK_ELEMENTS", 3 * kernel_points * channels)
    chunked = _call(t, params)
    np.testing.assert_allclose(chunked.detach().numpy(), _reference(t, params), rtol=0, atol=1e-10)
    for got, want in zip(torch.autograd.grad(chunked.square().sum(), inputs), whole_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=pytest.mark.gpu)])
def test_runs_on_the_gpu_like_on_the_cpu(device):
    t, params = _case(CASES["offset_groups"], torch.float64, seed=13)
    moved = {k: v.to(device).requires_grad_() for k, v in t.items() if v is not None}
    cpu = {k: v.clone().requires_grad_() for k, v in t.items() if v is not None}
    out_gpu, out_cpu = _call(moved, params), _call(cpu, params)
    assert out_gpu.device.type == device
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=0, atol=1e-10)
    out_gpu.square().sum().backward()
    out_cpu.square().sum().backward()
    for k, tensor in cpu.items():
        torch.testing.assert_close(moved[k].grad.cpu(), tensor.grad, rtol=0, atol=1e-9, msg=k)
