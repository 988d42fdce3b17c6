"""Segmenter contract: preprocessing from the sidecar, probabilities and labels at frame size, timings,
smoothing, the CRF hook and overlays."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from edgeseg.artifact import Artifact, Preprocess, TensorSpec
from edgeseg.errors import InputError
from edgeseg.pipeline import STAGES, Segmentation, Segmenter
from edgeseg.preprocess import Preprocessor

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
from edgeseg.runtime import TorchRunner


class Threshold(torch.nn.Module):
    """Gray input normalized to [-1, 1] -> logits (background, foreground) = (-k x, k x): pixel > 127.5 is class 1."""

    def forward(self, x):
        return torch.cat([-8 * x, 8 * x], dim=1)


class Sigmoid1(torch.nn.Module):
    def forward(self, x):
        return 4 * x


def threshold_segmenter(size=(64, 96), resize="stretch", model=None, **kw):
    artifact = Artifact(path="t.safetensors", classes=["background", "head"],
                        preprocess=Preprocess(size=size, resize=resize, color="gray", mean=[0.5], std=[0.5]))
    return Segmenter(TorchRunner(model or Threshold(), artifact), **kw)


def half_frame(h=120, w=200, split=70):
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, :split] = 255
    return frame


def test_normalization_and_color_order_follow_the_sidecar():
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 51, 102, 204   # B, G, R
    pre = Preprocessor(Preprocess(size=(4, 6), color="rgb", mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 0.1]))
    blob, _ = pre(frame)
    assert blob.shape == (1, 3, 4, 6) and blob.dtype == np.float32
    expected = [(0.8 - 0.1) / 0.5, (0.4 - 0.2) / 0.25, (0.2 - 0.3) / 0.1]   # R, G, B first
    np.testing.assert_allclose(blob[0, :, 0, 0], expected, rtol=1e-5)
    bgr, _ = Preprocessor(Preprocess(size=(4, 6), color="bgr"))(frame)
    np.testing.assert_allclose(bgr[0, :, 1, 1], [0.2, 0.4, 0.8], rtol=1e-5)
    gray, _ = Preprocessor(Preprocess(size=(4, 6), color="gray", mean=[0.0], std=[1.0]))(frame)
    assert gray.shape == (1, 1, 4, 6)
    np.testing.assert_allclose(gray[0, 0, 0, 0], (0.114 * 51 + 0.587 * 102 + 0.299 * 204) / 255, atol=3e-3)


def test_letterbox_keeps_aspect_and_pads_centred():
    pre = Preprocessor(Preprocess(size=(100, 100), resize="letterbox", color="gray", mean=[0.0], std=[1.0]))
    blob, region = pre(np.full((50, 200), 255, np.uint8))
    assert (region.top, region.left, region.height, region.width) == (37, 0, 25, 100)   # (100 - 25) // 2 = 37 rows above
    assert blob[0, 0, :37].max() == 0 and blob[0, 0, 62:].max() == 0
    assert blob[0, 0, 37:62].min() == pytest.approx(1.0)


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_labels_line_up_with_the_frame(resize):
    seg = threshold_segmenter(resize=resize)
    frame = half_frame()
    result = seg(frame)
    assert isinstance(result, Segmentation)
    assert result.labels.shape == (120, 200) and result.labels.dtype == np.uint8
    assert result.probs.shape == (2, 120, 200) and result.probs.dtype == np.float32
    # Away from the edge (resampling blurs ~2 model pixels = ~5 frame pixels) labels equal the truth.
    assert (result.labels[:, :64] == 1).all() and (result.labels[:, 76:] == 0).all()
    np.testing.assert_allclose(result.probs.sum(axis=0), 1.0, atol=1e-5)
    assert tuple(result.timings) == STAGES and result.timings["crf"] == 0.0
    assert all(v >= 0 for v in result.timings.values())


def test_gray_frame_accepted():
    result = threshold_segmenter()(half_frame()[:, :, 0])
    assert (result.labels[:, :64] == 1).all()


def test_one_channel_logits_become_background_foreground_sigmoid():
    seg = threshold_segmenter(size=(8, 8), model=Sigmoid1())
    frame = np.full((8, 8, 3), 191, np.uint8)   # normalized x = (191/255 - 0.5) / 0.5
    result = seg(frame)
    x = (191 / 255 - 0.5) / 0.5
    fg = 1 / (1 + np.exp(-4 * x))
    assert result.probs.shape == (2, 8, 8)
    np.testing.assert_allclose(result.probs[1], fg, rtol=1e-5)
    np.testing.assert_allclose(result.probs[0], 1 - fg, rtol=1e-5)
    assert (result.labels == 1).all()


def test_ema_smoothing_blends_previous_probabilities_and_resets():
    plain = threshold_segmenter(model=Sigmoid1())
    smooth = threshold_segmenter(model=Sigmoid1(), smooth=0.75)
    a, b = np.full((30, 40, 3), 40, np.uint8), np.full((30, 40, 3), 220, np.uint8)
    pa, pb = plain(a).probs, plain(b).probs
    np.testing.assert_allclose(smooth(a).probs, pa, atol=1e-6)
    np.testing.assert_allclose(smooth(b).probs, 0.75 * pa + 0.25 * pb, atol=1e-5)
    smooth.reset()
    np.testing.assert_allclose(smooth(b).probs, pb, atol=1e-6)
    bigger = np.full((60, 80, 3), 40, np.uint8)                  # a new frame size starts a new history
    np.testing.assert_allclose(smooth(bigger).probs, plain(bigger).probs, atol=1e-6)


def test_crf_hook_gets_frame_size_probs_and_its_result_is_used(monkeypatch):
    calls = []

    def fake_dense_crf(probs, image, **params):
        calls.append((probs.shape, image.shape, params))
        return probs[::-1].copy()   # swap classes: a visible change

    module = types.ModuleType("edgeseg.ops.crf")
    module.dense_crf = fake_dense_crf
    monkeypatch.setitem(sys.modules, "edgeseg.ops.crf", module)
    seg = threshold_segmenter(crf={"iterations": 3})
    result = seg(half_frame()[:, :, 0])
    assert calls == [((2, 120, 200), (120, 200), {"iterations": 3})]  # a gray frame passes through as (H, W)
    assert (result.labels[:, :64] == 0).all() and (result.labels[:, 76:] == 1).all()
    assert result.timings["crf"] > 0


def test_overlay_colours_foreground_and_keeps_background():
    seg = threshold_segmenter()
    frame = np.full((120, 200, 3), 100, np.uint8)
    frame[:, :70] = 200
    result = seg(frame)
    view = seg.overlay(frame, result, alpha=0.5)
    assert view.shape == frame.shape and view.dtype == np.uint8
    np.testing.assert_array_equal(view[:, 100:], frame[:, 100:])      # background untouched
    head = np.asarray(seg.colors[1], np.float64)
    np.testing.assert_allclose(view[5, 5], 0.5 * 200 + 0.5 * head, atol=1)
    assert seg.classes == ["background", "head"] and len(seg.colors) == 2


def test_segmenter_from_onnx_path_with_threads(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # logits = (-8x, 8x) as a 1x1 Conv on a gray input: the Threshold model in ONNX.
    w = np.array([[[[-8.0]]], [[[8.0]]]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"])], "t",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, "height", "width"])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    path = tmp_path / "t.onnx"
    onnx.save(model, str(path))
    Artifact(path=path, classes=["background", "head"],
             preprocess=Preprocess(size=(64, 96), color="gray", mean=[0.5], std=[0.5]),
             inputs=[TensorSpec("input", ["batch", 1, "height", "width"])],
             outputs=[TensorSpec("logits", ["batch", 2, "height", "width"])]).save()
    with Segmenter(path, threads=1) as seg:
        assert seg.runner.backend == "onnxruntime"
        expected = threshold_segmenter()(half_frame())
        got = seg(half_frame())
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_allclose(got.probs, expected.probs, atol=1e-5)


def test_two_class_fast_path_equals_softmax_resize_argmax():
    from edgeseg import postprocess
    from edgeseg.preprocess import Region

    logits = np.random.default_rng(0).normal(scale=3, size=(2, 40, 60)).astype(np.float32)
    e = np.exp(logits - logits.max(axis=0))
    softmax = e / e.sum(axis=0)                                   # the textbook formula, both planes
    probs = postprocess.probabilities(logits, "logits")
    np.testing.assert_allclose(probs, softmax, atol=1e-6)
    region = Region(5, 0, 30, 60)                                 # a letterboxed crop
    general = postprocess.to_frame_size(softmax, region, (90, 170))
    foreground = postprocess.foreground_to_frame_size(probs[1], region, (90, 170))
    np.testing.assert_allclose(foreground, general[1], atol=1e-6)
    labels = Segmentation(foreground=foreground).labels
    np.testing.assert_array_equal(labels, general.argmax(axis=0))
    assert labels.dtype == np.uint8 and foreground.dtype == np.float32


def test_segmentation_builds_labels_and_probs_from_the_foreground_on_first_read():
    from edgeseg.pipeline import Segmentation

    fg = np.random.default_rng(1).random((7, 9), dtype=np.float32)
    lazy = Segmentation(foreground=fg)
    np.testing.assert_array_equal(lazy.probs, np.stack([1 - fg, fg]))
    np.testing.assert_array_equal(lazy.labels, lazy.probs.argmax(axis=0))
    assert lazy.probs is lazy.probs and lazy.labels is lazy.labels and lazy.foreground is fg
    eager = Segmentation(labels=lazy.labels, probs=np.stack([1 - fg, 0.3 * fg, 0.7 * fg]))
    np.testing.assert_allclose(eager.foreground, fg, atol=1e-6)     # 1 - P(background) for any class count
    with pytest.raises(InputError, match="neither probs nor foreground"):
        Segmentation(labels=lazy.labels)
    with pytest.raises(InputError, match="probs without labels"):
        Segmentation(probs=eager.probs)
    replaced = Segmentation(foreground=fg)
    replaced.probs = np.stack([fg, 1 - fg])  # assigning probs leaves the labels of the old ones, as an attribute would
    np.testing.assert_array_equal(replaced.labels, (fg > 0.5).astype(np.uint8))
    np.testing.assert_allclose(replaced.foreground, 1 - fg)


def test_sigmoid_matches_the_textbook_formula_and_saturates():
    from edgeseg import postprocess

    z = np.concatenate([np.linspace(-30, 30, 601), [-1e4, 1e4, 0.0]]).astype(np.float32)
    one = z.reshape(1, 1, -1)
    two = np.stack([np.zeros_like(one[0]), one[0]])              # softmax of (0, z) is sigmoid(z)
    with np.errstate(over="ignore"):
        textbook = 1 / (1 + np.exp(-z.astype(np.float64)))
    for output in (one, two):
        fg = postprocess.foreground(output, "logits")
        assert fg.dtype == np.float32
        np.testing.assert_allclose(fg[0], textbook, atol=1e-7)
    assert postprocess.foreground(one, "logits")[0, -3:].tolist() == [0.0, 1.0, 0.5]


def test_fixed_point_labels_and_foreground_agree_for_every_16_bit_value():
    from edgeseg import postprocess

    every = np.arange(postprocess.FIXED_ONE + 1, dtype=np.uint16).reshape(1, -1)
    labels = postprocess.labels_from_fixed_point(every)
    foreground = postprocess.foreground_from_fixed_point(every)
    np.testing.assert_array_equal(labels, (foreground > 0.5).view(np.uint8))
    np.testing.assert_allclose(foreground[0], np.arange(every.size) / postprocess.FIXED_ONE, rtol=0, atol=6e-8)
    assert foreground[0, postprocess.FIXED_ONE // 2] == 0.5 and (np.diff(foreground[0]) > 0).all()
    assert labels.dtype == np.uint8 and labels.sum() == postprocess.FIXED_ONE // 2   # 32768 .. 65534


def _letterboxed_foreground(seed, shape=(40, 64)):
    from edgeseg import postprocess
    from edgeseg.preprocess import Region

    fg = postprocess.foreground(np.random.default_rng(seed).normal(scale=4, size=(2, *shape)).astype(np.float32),
                                "logits")
    return fg, Region(4, 6, 32, 52), (135, 270)   # padding on every side (a strided crop), upsampled ~5x


def test_fixed_point_upsampling_stays_within_one_step_of_the_float_one():
    from edgeseg import postprocess

    fg, region, frame_hw = _letterboxed_foreground(3)
    exact = postprocess.foreground_to_frame_size(fg, region, frame_hw)
    fixed = postprocess.fixed_point_foreground_to_frame_size(fg, region, frame_hw)
    assert fixed.dtype == np.uint16 and fixed.shape == frame_hw
    step = 1.1 / postprocess.FIXED_ONE   # half a step rounding the inputs, half a step rounding the output
    np.testing.assert_allclose(postprocess.foreground_from_fixed_point(fixed), exact, atol=step)
    decided = np.abs(exact - 0.5) > step                            # far enough from the threshold to be decided
    assert decided.mean() > 0.99
    np.testing.assert_array_equal(postprocess.labels_from_fixed_point(fixed)[decided], (exact > 0.5)[decided])


@pytest.mark.parametrize("first", ["labels", "foreground", "probs"])
def test_deferred_result_is_consistent_whichever_plane_is_read_first(first):
    from edgeseg import postprocess

    fg, region, frame_hw = _letterboxed_foreground(4)
    result = Segmentation.at_model_resolution(fg, region, frame_hw, {"post": 0.0})
    assert repr(result).startswith("Segmentation(135x270")
    getattr(result, first)
    labels, foreground, probs = result.labels, result.foreground, result.probs
    assert labels.shape == foreground.shape == frame_hw and probs.shape == (2, *frame_hw)
    np.testing.assert_array_equal(labels, (foreground > 0.5).view(np.uint8))
    np.testing.assert_array_equal(probs[1], foreground)
    exact = postprocess.foreground_to_frame_size(fg, region, frame_hw)
    if first == "labels":   # the 16-bit route, converted back for the later foreground read
        np.testing.assert_allclose(foreground, exact, atol=1.1 / postprocess.FIXED_ONE)
    else:                   # the float32 route, bit for bit
        np.testing.assert_array_equal(foreground, exact)
    # across read orders the labels agree except where the probability is within one step of one half
    undecided = np.abs(exact - 0.5) <= 1.1 / postprocess.FIXED_ONE
    np.testing.assert_array_equal(labels[~undecided], (exact > 0.5)[~undecided])
    assert result.labels is labels and result.foreground is foreground
    assert repr(result).startswith("Segmentation(135x270")   # also once the model-resolution plane is dropped


@pytest.mark.parametrize("frame_hw", [(32, 48), (70, 130)])
@pytest.mark.parametrize("first", ["labels", "foreground"])
def test_a_tie_is_background_whichever_plane_is_read_first(first, frame_hw):
    """Zero logits give exactly 0.5: background, as the argmax's "first class on ties", on both routes."""
    from edgeseg import postprocess
    from edgeseg.preprocess import Region

    fg = postprocess.foreground(np.zeros((2, 32, 48), np.float32), "logits")
    result = Segmentation.at_model_resolution(fg, Region(0, 0, 32, 48), frame_hw)
    getattr(result, first)
    assert result.labels.sum() == 0 and (result.foreground == 0.5).all()


def test_a_deferred_result_survives_pickling_before_and_after_reads():
    import pickle

    fg, region, frame_hw = _letterboxed_foreground(5)
    fresh = Segmentation.at_model_resolution(fg, region, frame_hw, {"post": 0.001})
    copy = pickle.loads(pickle.dumps(fresh))
    np.testing.assert_array_equal(copy.labels, fresh.labels)
    read = pickle.loads(pickle.dumps(fresh))                        # now with labels built, foreground not yet
    np.testing.assert_array_equal(read.foreground, fresh.foreground)
    assert read.timings == {"post": 0.001}


def test_segmenter_defers_the_upsampling_of_a_two_class_result_to_the_first_read():
    seg = threshold_segmenter()
    result = seg(half_frame())
    assert result._labels is None and result._foreground is None    # nothing at frame size yet
    assert (result.labels[:, :64] == 1).all() and (result.labels[:, 76:] == 0).all()
    assert result._fixed is not None and result._fixed.shape == (120, 200)


def test_labels_are_uint8_up_to_256_classes_and_wider_beyond():
    from edgeseg.postprocess import argmax_labels, label_dtype

    assert [label_dtype(n) for n in (2, 256, 257, 65536, 65537)] == [np.uint8, np.uint8, np.uint16, np.uint16, np.int32]
    probs = np.random.default_rng(2).random((300, 4, 5), dtype=np.float32)
    labels = argmax_labels(probs)
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, probs.argmax(axis=0))
