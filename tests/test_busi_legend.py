"""Class names from the sidecar in `run` overlays (a legend on multi-class models) and in `bench` (issue 23 item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

CLASSES = ["background", "benign", "malignant"]
COLORS = [(0, 0, 0), (56, 56, 255), (10, 200, 30)]


class _Seg:
    def __init__(self, labels):
        self.labels = labels


def test_overlay_legend_shows_each_drawn_class_colour_and_name_in_the_corner():
    from edgeseg.video.render import Overlay

    frame = np.full((240, 320, 3), 90, np.uint8)
    labels = np.zeros((240, 320), np.int32)
    labels[150:200, 200:260] = 1
    labels[150:200, 270:310] = 2
    plain = Overlay(COLORS)(frame, _Seg(labels))
    with_legend = Overlay(COLORS, classes=CLASSES)(frame, _Seg(labels))

    changed = np.any(with_legend != plain, axis=2)
    ys, xs = np.nonzero(changed)
    assert ys.max() < 120 and xs.max() < 160  # only the top-left corner differs: the lesions stay as drawn
    corner = with_legend[: ys.max() + 1, : xs.max() + 1].reshape(-1, 3)
    for color in COLORS[1:]:  # a swatch per drawn class, in its overlay colour
        assert (corner == color).all(1).sum() >= 16, color
    assert not (corner == COLORS[0]).all(1).any()  # background is not listed (it is never drawn)
    assert (corner.min(1) > 200).sum() > 20  # white text
    # the names are drawn: a legend of different names changes the text pixels, not the swatches
    other = Overlay(COLORS, classes=["background", "cyst", "carcinoma, ductal"])(frame, _Seg(labels))
    assert np.any(other[: ys.max() + 1] != with_legend[: ys.max() + 1])


def test_overlay_legend_needs_one_name_per_colour():
    from edgeseg.errors import InputError
    from edgeseg.video.render import Overlay

    with pytest.raises(InputError, match="classes: got 2 names, expected one per colour"):
        Overlay(COLORS, classes=CLASSES[:2])


def test_default_render_adds_the_legend_for_multiclass_models_only():
    from edgeseg.artifact import Artifact
    from edgeseg.pipeline import Segmenter
    from edgeseg.video.render import Overlay, default_render

    def segmenter(classes):
        seg = object.__new__(Segmenter)  # the render choice reads only the sidecar; no runner needed
        seg.artifact = Artifact(path=Path("model.onnx"), classes=classes)
        return seg

    three = default_render(segmenter(CLASSES))
    assert isinstance(three, Overlay) and three.classes == CLASSES
    two = default_render(segmenter(["background", "head"]))
    assert isinstance(two, Overlay) and two.classes is None  # binary overlays stay unchanged


def _tiny_onnx(path: Path, classes: int) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.linspace(-1, 1, classes, dtype=np.float32).reshape(classes, 1, 1, 1), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes, "height", "width"])],
        [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_bench_prints_and_records_the_sidecar_class_names(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from edgeseg.artifact import Artifact
    from edgeseg.cli import main

    onnx_path = _tiny_onnx(tmp_path / "busi_tiny.onnx", 3)
    Artifact.from_onnx(onnx_path, classes=CLASSES, color="gray", mean=[0.5], std=[0.25], size=(64, 64),
                       announce=False).save()
    out = tmp_path / "bench"
    assert main(["bench", str(onnx_path), "--iterations", "5", "--warmup", "1", "--out", str(out),
                 "--no-progress"]) == 0
    assert "classes: 0 background, 1 benign, 2 malignant" in capsys.readouterr().out
    assert json.loads((out / "result.json").read_text())["config"]["classes"] == CLASSES
