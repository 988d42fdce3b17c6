"""The dense CRF: pydensecrf's numbers on real images, the exact model on tiny ones, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import edgeseg.ops.crf as crf_module
from edgeseg.errors import InputError
from edgeseg.ops.permutohedral import Lattice
from edgeseg.ops.reference.dense_crf import dense_crf_reference, kernel_matrices

dense_crf, dense_crf_windowed = crf_module.dense_crf, crf_module.dense_crf_windowed
compat_matrix, unary_from_probs = crf_module.compat_matrix, crf_module.unary_from_probs

PARAMS = {"sxy_gaussian": 3, "compat_gaussian": 3, "sxy_bilateral": 80, "srgb": 13, "compat_bilateral": 10}


def softmax(logits):
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def hc18_case(hc18_dir, name, seed=0):
    """A real ultrasound frame (H, W) uint8 and model-like probabilities (2, H, W): a blurred, shifted,
    noisy version of the ground-truth head mask (a real model's errors are smooth and near the edge)."""
    cv2 = pytest.importorskip("cv2")
    image = cv2.imread(str(hc18_dir / "images" / name), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(hc18_dir / "masks" / name))[:, :, 0] > 0
    rng = np.random.default_rng(seed)
    shifted = np.roll(mask, (7, -5), axis=(0, 1)).astype(np.float32)
    smooth = cv2.GaussianBlur(shifted, (0, 0), 9)
    logit = 6 * (smooth - 0.5) + rng.normal(0, 1.5, mask.shape)
    return image, softmax(np.stack([-logit, logit]) / 2), mask


def photo_case(num_classes, size=256, seed=0):
    """skimage's astronaut photo with noisy unaries: colour-clustered labels plus heavy noise."""
    data = pytest.importorskip("skimage.data")
    image = np.ascontiguousarray(data.astronaut()[:size, 100: 100 + size])
    rng = np.random.default_rng(seed)
    centers = image.reshape(-1, 3)[rng.choice(size * size, num_classes, replace=False)].astype(np.float32)
    dist = ((image[:, :, None, :].astype(np.float32) - centers) ** 2).sum(-1)  # (H, W, C)
    logits = -dist.transpose(2, 0, 1) / 4000.0 + rng.normal(0, 1.5, (num_classes, size, size))
    return image, softmax(logits)


def pydensecrf_inference(probs, image=None, features=None, compat_g=3.0, compat_b=10.0, iterations=5):
    dcrf = pytest.importorskip("pydensecrf.densecrf", reason="pydensecrf2 is not installed (pip install pydensecrf2)")
    from pydensecrf.utils import unary_from_softmax

    c, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=3, compat=compat_g)
    if features is None:
        crf.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.ascontiguousarray(image), compat=compat_b)
    else:
        crf.addPairwiseEnergy(np.ascontiguousarray(features, dtype=np.float32), compat=compat_b)
    return np.asarray(crf.inference(iterations), dtype=np.float32).reshape(c, h, w)


def gray_features(image, order="xy"):
    """Bilateral features of a gray image for pydensecrf: ours are (x, y, g); its utils give (y, x, g)."""
    h, w = image.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    first, second = (xs, ys) if order == "xy" else (ys, xs)
    return np.stack([first / np.float32(80), second / np.float32(80), image.astype(np.float32) / np.float32(13)])


def agreement(a, b):
    return float((a.argmax(0) == b.argmax(0)).mean())


# --- against pydensecrf on real images --------------------------------------------------------------

@pytest.mark.parametrize("name", ["010_HC.png", "123_HC.png"])
def test_matches_pydensecrf_on_ultrasound_frames_as_bgr(hc18_dir, name):
    gray, probs, _ = hc18_case(hc18_dir, name)
    bgr = np.repeat(gray[:, :, None], 3, axis=2)
    ours, theirs = dense_crf(probs, bgr, **PARAMS), pydensecrf_inference(probs, bgr)
    assert agreement(ours, theirs) >= 0.995
    assert np.abs(ours - theirs).max() < 1e-3  # same lattice, same float32 arithmetic


def test_matches_pydensecrf_on_grayscale_ultrasound(hc18_dir):
    gray, probs, _ = hc18_case(hc18_dir, "200_HC.png", seed=1)
    ours = dense_crf(probs, gray, **PARAMS)
    same_features = pydensecrf_inference(probs, features=gray_features(gray, "xy").reshape(3, -1))
    assert np.abs(ours - same_features).max() < 1e-3
    # pydensecrf.utils.create_pairwise_bilateral orders features (y, x, g): the lattice differs a
    # little, the labels must not.
    utils_order = pydensecrf_inference(probs, features=gray_features(gray, "yx").reshape(3, -1))
    assert agreement(ours, utils_order) >= 0.995
    assert np.array_equal(dense_crf(probs, gray[:, :, None], **PARAMS), ours)


@pytest.mark.parametrize("num_classes", [2, 21])
def test_matches_pydensecrf_on_photo_with_noisy_unaries(num_classes):
    image, probs = photo_case(num_classes)
    ours, theirs = dense_crf(probs, image, **PARAMS), pydensecrf_inference(probs, image)
    assert agreement(ours, theirs) >= 0.995
    assert agreement(ours, probs) < 0.97  # the CRF changed labels: the comparison is not vacuous


def test_matches_pydensecrf_with_a_compatibility_matrix():
    image, probs = photo_case(4, size=128, seed=3)
    mu = np.array([[0, 1, 2, 2], [1, 0, 1, 2], [2, 1, 0, 1], [2, 2, 1, 0]], np.float32)
    ours = dense_crf(probs, image, compat=mu, **PARAMS)
    theirs = pydensecrf_inference(probs, image, compat_g=3 * mu, compat_b=10 * mu)
    assert np.abs(ours - theirs).max() < 1e-3
    potts = dense_crf(probs, image, **PARAMS)
    assert agreement(ours, potts) < 0.999  # a different model gives different labels


def test_second_image_size_does_not_reuse_the_first_lattice():
    image, probs = photo_case(2, size=96, seed=4)
    dense_crf(probs, image)
    small_image, small_probs = image[:64, :80].copy(), np.ascontiguousarray(probs[:, :64, :80])
    ours = dense_crf(small_probs, small_image)
    assert np.abs(ours - pydensecrf_inference(small_probs, small_image)).max() < 1e-3


# --- the model itself ----------------------------------------------------------------------------

@pytest.mark.parametrize("dims", [2, 3, 5])
def test_lattice_approximates_the_exact_normalised_gaussian(dims):
    rng = np.random.default_rng(dims)
    feats = (rng.random((300, dims)) * 4).astype(np.float32)
    values = rng.random((300, 2)).astype(np.float32)
    exact = np.exp(-0.5 * ((feats[:, None] - feats[None]) ** 2).sum(-1))
    lattice = Lattice(feats)
    approx = lattice.filter(values) / lattice.filter(np.ones(300, np.float32))[:, None]
    truth = exact @ values / exact.sum(1)[:, None]
    error = np.abs(approx - truth).mean()
    assert error < {2: 0.005, 3: 0.008, 5: 0.025}[dims]
    assert error < 0.4 * np.abs(values.mean(0) - truth).mean()  # far better than a global average


def tiny_case(seed=0, classes=3, size=(10, 12)):
    """Two flat colour regions with noisy unaries: the CRF should clean them up."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = np.zeros((h, w, 3), np.uint8)
    image[:, w // 2:] = (200, 40, 90)
    image = np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)
    truth = np.zeros((h, w), int)
    truth[:, w // 2:] = 1
    logits = 2.0 * np.eye(classes)[truth].transpose(2, 0, 1) + rng.normal(0, 1.2, (classes, h, w))
    return image, softmax(logits), truth


def test_lattice_crf_agrees_with_the_bruteforce_model():
    image, probs, truth = tiny_case()
    c = probs.shape[0]
    exact = dense_crf_reference(unary_from_probs(probs), image, 5, (3, 3), (80, 80), (13, 13, 13),
                                compat_matrix(3, None, c, "g"), compat_matrix(10, None, c, "b"))
    ours = dense_crf(probs, image, **PARAMS)
    assert agreement(ours, exact) >= 0.97
    assert (ours.argmax(0) == truth).mean() > (probs.argmax(0) == truth).mean()


@pytest.mark.parametrize("window", [3, 7])
def test_windowed_crf_is_the_truncated_exact_model(window):
    image, probs, _ = tiny_case(seed=2, classes=4)
    c = probs.shape[0]
    mu = 1 - np.eye(c, dtype=np.float32)
    expected = dense_crf_reference(unary_from_probs(probs), image, 4, (3, 3), (80, 80), (13, 13, 13),
                                   compat_matrix(3, mu, c, "g"), compat_matrix(10, mu, c, "b"), window=window)
    got = dense_crf_windowed(probs, image, window=window, iterations=4, compat=mu, **PARAMS)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.array_equal(dense_crf(probs, image, window=window, iterations=4, compat=mu, **PARAMS), got)


def test_windowed_crf_covering_the_image_is_the_fully_connected_model():
    image, probs, _ = tiny_case(seed=5, size=(6, 7))
    c = probs.shape[0]
    full = dense_crf_reference(unary_from_probs(probs), image, 5, (3, 3), (80, 80), (13, 13, 13),
                               compat_matrix(3, None, c, "g"), compat_matrix(10, None, c, "b"))
    np.testing.assert_allclose(dense_crf_windowed(probs, image, window=13, **PARAMS), full, atol=1e-5)


def test_energy_unary_and_zero_iterations():
    image, probs, _ = tiny_case(seed=6)
    energy = unary_from_probs(probs)
    np.testing.assert_allclose(dense_crf(energy, image, unary="energy"), dense_crf(probs, image), atol=1e-6)
    start = dense_crf(probs, image, iterations=0)
    np.testing.assert_allclose(start, np.clip(probs, 1e-5, 1) / np.clip(probs, 1e-5, 1).sum(0), atol=1e-6)


def test_crf_improves_a_noisy_ultrasound_mask(hc18_dir):
    gray, probs, mask = hc18_case(hc18_dir, "050_HC.png", seed=2)

    def dice(labels):
        return 2 * (labels & mask).sum() / (labels.sum() + mask.sum())

    before = dice(probs.argmax(0) == 1)
    after = dice(dense_crf(probs, gray, **PARAMS).argmax(0) == 1)
    assert after > before


def test_kernel_matrices_window_truncates_symmetrically():
    image, _, _ = tiny_case(size=(5, 6))
    k_gauss, k_bilat = kernel_matrices(image, (3, 3), (80, 80), (13, 13, 13), window=3)
    assert np.allclose(k_gauss, k_gauss.T) and np.allclose(k_bilat, k_bilat.T)
    assert (k_gauss > 0).sum(1).max() == 9


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "probs_fn, image_fn, match",
    [
        (lambda p: p * 0.6, lambda i: i, "sums over classes"),
        (lambda p: p * 1.5, lambda i: i, "probabilities in \\[0, 1\\]"),
        (lambda p: np.where(np.arange(p.size).reshape(p.shape) == 7, np.nan, p).astype(np.float32),
         lambda i: i, "NaN"),
        (lambda p: p, lambda i: i[:-1], "expected the probabilities' \\(H, W\\)"),
        (lambda p: p, lambda i: i.astype(np.float32), "expected uint8"),
        (lambda p: p[0], lambda i: i, "expected \\(C, H, W\\)"),
        (lambda p: p[:1] / p[:1], lambda i: i, "C >= 2"),
        (lambda p: p.astype(np.int64), lambda i: i, "float32"),
    ],
)
def test_bad_input_is_named(probs_fn, image_fn, match):
    image, probs, _ = tiny_case()
    with pytest.raises(InputError, match=match):
        dense_crf(probs_fn(probs), image_fn(image))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iterations": -1}, "iterations"),
        ({"sxy_bilateral": 0}, "sxy_bilateral"),
        ({"srgb": (13, 13)}, "srgb"),
        ({"compat": np.eye(2)}, "compat"),
        ({"unary": "logits"}, "unary"),
        ({"window": 4}, "window"),
    ],
)
def test_bad_parameters_are_named(kwargs, match):
    image, probs, _ = tiny_case()
    with pytest.raises(InputError, match=match):
        dense_crf(probs, image, **kwargs)


# --- the same code on the GPU ----------------------------------------------------------------------

@pytest.mark.cupy
def test_cupy_arrays_in_cupy_arrays_out_same_numbers():
    import cupy as cp

    image, probs = photo_case(5, size=128, seed=7)
    expected = dense_crf(probs, image, **PARAMS)
    got = dense_crf(cp.asarray(probs), cp.asarray(image), **PARAMS)
    assert isinstance(got, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(got), expected, atol=1e-4)
    assert agreement(cp.asnumpy(got), expected) >= 0.999


# --- in the runtime --------------------------------------------------------------------------------

def test_segmenter_crf_stage_runs_this_crf_on_frame_size_probabilities():
    torch = pytest.importorskip("torch")
    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.pipeline import Segmenter
    from edgeseg.runtime import TorchRunner

    class Brightness(torch.nn.Module):  # logits (dark, bright) from a gray input: a noisy "model"
        def forward(self, x):
            return torch.cat([-4 * x, 4 * x], dim=1)

    artifact = Artifact(path="t.safetensors", classes=["background", "head"],
                        preprocess=Preprocess(size=(32, 48), color="gray", mean=[0.5], std=[0.5]))
    image, _, _ = tiny_case(seed=8, size=(40, 60))
    frame = np.ascontiguousarray(image[:, :, ::-1])  # BGR
    plain = Segmenter(TorchRunner(Brightness(), artifact))(frame)
    refined = Segmenter(TorchRunner(Brightness(), artifact), crf={"iterations": 3})(frame)
    np.testing.assert_allclose(refined.probs, dense_crf(plain.probs, frame, iterations=3), atol=1e-6)
    assert refined.timings["crf"] > 0 and refined.labels.shape == frame.shape[:2]
