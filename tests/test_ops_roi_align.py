"""edgeseg.ops.roi_align: agrees with the literal NumPy reference (float64 and float32) for aligned and
legacy boxes, fixed and adaptive sampling, boxes crossing or leaving the image and empty box lists; has a
correct input gradient; rejects bad shapes by name."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeseg.errors import InputError
from edgeseg.ops import RoIAlign, roi_align
from edgeseg.ops.reference.roi_align import roi_align as reference


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rois(rng, n_images, height, width, count, max_size):
    """Random (K, 5) rois in image coordinates, many crossing the border, some far outside, some tiny."""
    x1 = rng.uniform(-0.3 * width, 1.1 * width, count)
    y1 = rng.uniform(-0.3 * height, 1.1 * height, count)
    w = rng.uniform(0.1, max_size, count)
    h = rng.uniform(0.1, max_size, count)
    batch = rng.integers(0, n_images, count)
    rois = np.stack([batch, x1, y1, x1 + w, y1 + h], 1)
    rois[0, 1:] = [-4 * width, -4 * height, -3 * width, -3 * height]  # entirely outside
    rois[1, 3:] = rois[1, 1:3] - 0.7  # flipped box (x2 < x1): legacy stretches to 1x1, aligned gives zeros
    return rois


# (N, C, H, W, output_size, spatial_scale, sampling_ratio, aligned, number of boxes, max box size in image px)
CASES = {
    "legacy_adaptive": (2, 3, 9, 11, (3, 4), 1.0, -1, False, 12, 10.0),
    "aligned_adaptive": (2, 3, 9, 11, (3, 4), 1.0, 0, True, 12, 10.0),
    "aligned_fixed": (1, 2, 8, 8, 2, 1.0, 2, True, 10, 9.0),
    "legacy_fixed_scaled": (2, 2, 7, 10, (2, 3), 0.5, 3, False, 10, 16.0),
    "aligned_adaptive_scaled_big": (1, 2, 12, 12, 2, 0.25, -1, True, 8, 60.0),
}


def _case(name, dtype, seed):
    n, c, h, w, size, scale, ratio, aligned, count, max_size = CASES[name]
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal((n, c, h, w)), dtype=dtype)
    rois = torch.tensor(_rois(rng, n, h / scale, w / scale, count, max_size), dtype=dtype)
    return x, rois, {"output_size": size, "spatial_scale": scale, "sampling_ratio": ratio, "aligned": aligned}


def _reference(x, rois, params):
    return reference(x.detach().double().numpy(), rois.double().numpy(), **params)


@pytest.mark.parametrize("name", CASES)
def test_forward_float64_matches_reference(name):
    x, rois, params = _case(name, torch.float64, seed=len(name))
    got = roi_align(x, rois, **params).numpy()
    want = _reference(x, rois, params)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", CASES)
def test_forward_float32_matches_reference(name):
    x, rois, params = _case(name, torch.float32, seed=len(name) + 1)
    got = roi_align(x, rois, **params).numpy()
    want = _reference(x, rois, params)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_adaptive_sampling_differs_per_roi():
    """Two RoIs needing 1 and 4 samples per bin in one call each match the reference computed alone."""
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    rois = torch.tensor([[0, 1.0, 1.0, 3.0, 3.0], [0, 0.0, 0.0, 15.0, 15.0]], dtype=torch.float64)
    got = roi_align(x, rois, 2, sampling_ratio=-1, aligned=False)
    for r in range(2):
        want = reference(x.numpy(), rois[r : r + 1].numpy(), 2, 1.0, -1, False)
        np.testing.assert_allclose(got[r : r + 1].numpy(), want, rtol=0, atol=1e-12)


def test_list_of_boxes_equals_tensor_form():
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    boxes = [torch.tensor([[1.0, 1.0, 5.0, 6.0]]), torch.zeros(0, 4), torch.tensor([[0.0, 2, 7, 7], [3, 3, 4, 4]])]
    rois = torch.tensor([[0, 1.0, 1, 5, 6], [2, 0, 2, 7, 7], [2, 3, 3, 4, 4]], dtype=torch.float64)
    torch.testing.assert_close(roi_align(x, boxes, 3, 1.0, 2, True), roi_align(x, rois, 3, 1.0, 2, True))


def test_empty_boxes_give_empty_output_and_zero_gradient():
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    for boxes in ([torch.zeros(0, 4), torch.zeros(0, 4)], torch.zeros(0, 5), []):
        out = roi_align(x, boxes, (2, 3))
        assert out.shape == (0, 3, 2, 3)
    roi_align(x, torch.zeros(0, 5), 2).sum().backward()
    assert x.grad is not None and not x.grad.any()


def test_aligned_whole_image_box_with_one_sample_per_bin_returns_the_image():
    """Half-pixel convention: the aligned box (0, 0, W, H) pooled to (H, W) with one sample per bin lands
    exactly on the pixel centres."""
    x = torch.randn(1, 2, 6, 9, dtype=torch.float64)
    out = roi_align(x, torch.tensor([[0, 0, 0, 9.0, 6.0]], dtype=torch.float64), (6, 9), 1.0, 1, aligned=True)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["legacy_adaptive", "aligned_adaptive_scaled_big", "legacy_fixed_scaled"])
def test_gradcheck_input(name):
    x, rois, params = _case(name, torch.float64, seed=5)
    x = x[:, :1].contiguous().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois[:6], **params), (x,), fast_mode=True)


def test_full_gradcheck_on_a_tiny_case_with_mixed_sampling_ratios():
    x = torch.randn(2, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 0.2, 4.5, 3.9], [1, -1.0, 1.2, 2.0, 2.2], [1, 0.3, 0.1, 0.9, 0.6]], dtype=torch.float64)
    for aligned in (False, True):
        assert torch.autograd.gradcheck(lambda t, a=aligned: roi_align(t, rois, (2, 2), 1.0, -1, a), (x,))


def test_custom_op_registration_passes_opcheck():
    x, rois, _ = _case("legacy_adaptive", torch.float64, seed=6)
    x.requires_grad_()
    torch.library.opcheck(torch.ops.edgeseg.roi_align.default, (x, rois, 1.0, 3, 4, -1, False))


def test_module_matches_function():
    x = torch.randn(2, 4, 10, 10)
    rois = torch.tensor([[1, 2.0, 2.0, 30.0, 20.0]])
    pool = RoIAlign((2, 2), spatial_scale=0.25, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(pool(x, rois), roi_align(x, rois, (2, 2), 0.25, 2, True))


BAD = {
    "input_rank": ({"input": torch.zeros(2, 6, 6)}, r"input: .*\(2, 6, 6\).*4-D tensor \(N, C, H, W\)"),
    "box_width_4_tensor": ({"boxes": torch.zeros(3, 4)}, r"boxes: .*\(3, 4\).*Tensor\[K, 5\]"),
    "box_width_in_list": ({"boxes": [torch.zeros(2, 5)]}, r"boxes\[0\]: .*\(2, 5\).*Tensor\[L, 4\]"),
    "box_rank": ({"boxes": torch.zeros(5)}, r"boxes: .*\(5,\).*Tensor\[K, 5\]"),
    "negative_output": ({"output_size": (-1, 2)}, r"output_size: .*positive sizes \(ph, pw\)"),
    "zero_output": ({"output_size": 0}, r"output_size: .*positive"),
    "scale": ({"spatial_scale": -0.5}, r"spatial_scale: .*positive"),
    "batch_index": ({"boxes": torch.tensor([[2.0, 0, 0, 1, 1]])}, r"boxes\[:, 0\]: .*\[0, 1\]"),
    "too_many_lists": ({"boxes": [torch.zeros(0, 4)] * 3}, r"boxes: .*3 box tensors.*N=2"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_names_the_argument_and_expected_shape(name):
    change, message = BAD[name]
    args = {"input": torch.zeros(2, 3, 6, 6), "boxes": torch.zeros(1, 5), "output_size": 2, "spatial_scale": 1.0}
    args.update(change)
    with pytest.raises(ValueError, match=message) as info:
        roi_align(**args)
    assert isinstance(info.value, InputError)


def test_equals_grid_sample_formulation_for_boxes_inside_the_image():
    """An independent formulation: for aligned boxes inside the image and 2x2 samples per bin, RoIAlign is
    F.grid_sample (border padding) at the bin's sample points followed by a 2x2 average pool."""
    x = torch.randn(1, 3, 12, 16, dtype=torch.float64)
    boxes = torch.tensor([[0, 1.0, 2.0, 9.5, 11.0], [0, 0.0, 0.0, 16.0, 12.0], [0, 5.2, 3.3, 6.1, 4.0]],
                         dtype=torch.float64)
    size, samples = (3, 4), 2
    want = []
    for b in boxes[:, 1:] - 0.5:
        ys = b[1] + (torch.arange(size[0] * samples, dtype=x.dtype) + 0.5) / (size[0] * samples) * (b[3] - b[1])
        xs = b[0] + (torch.arange(size[1] * samples, dtype=x.dtype) + 0.5) / (size[1] * samples) * (b[2] - b[0])
        gy, gx = torch.meshgrid((ys + 0.5) / 12 * 2 - 1, (xs + 0.5) / 16 * 2 - 1, indexing="ij")
        grid = torch.stack([gx, gy], -1)[None]
        sampled = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
        want.append(torch.nn.functional.avg_pool2d(sampled, samples))
    got = roi_align(x, boxes, size, 1.0, samples, aligned=True)
    torch.testing.assert_close(got, torch.cat(want), rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=pytest.mark.gpu)])
def test_runs_on_the_gpu_like_on_the_cpu(device):
    x, rois, params = _case("aligned_adaptive", torch.float64, seed=14)
    x_gpu, x_cpu = x.to(device).requires_grad_(), x.clone().requires_grad_()
    out_gpu, out_cpu = roi_align(x_gpu, rois.to(device), **params), roi_align(x_cpu, rois, **params)
    assert out_gpu.device.type == device
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=0, atol=1e-10)
    out_gpu.square().sum().backward()
    out_cpu.square().sum().backward()
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad, rtol=0, atol=1e-10)
