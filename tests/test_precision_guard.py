"""The precision guard: a planted precision-sensitive layer (a per-channel scale that gives one channel a range
of 1e4) makes plain INT8 fail the task metric; the guard finds that layer, keeps it in FP32, writes a file
that passes and records the layer's precision in the sidecar. Also --accept parsing and the metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.artifact import Artifact, Preprocess, TensorSpec
from edgeseg.errors import InputError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

SENSITIVE = "conv_mix"  # reads the scaled tensor: per-tensor INT8 of its input wipes out the small channels


def planted_segmenter(path, gain=1.0):
    """Gray input -> conv_in (1x1, 4 channels) -> Mul by [1, 1, 1, 1e4] (a planted normalisation scale with
    a huge activation range) -> conv_mix (1x1; the big channel weighted 1e-6) -> Relu -> conv_out (1x1) ->
    logits whose head score is ``x - 0.5``. In FP32 it segments bright blobs exactly. ``gain`` (conv_in's weight on
    the scaled channel) 10 makes that channel reach 1e5, beyond float16's 65504."""
    from onnx import TensorProto, helper, numpy_helper

    w_in = np.array([1.0, 0.5, 0.25, gain], np.float32).reshape(4, 1, 1, 1)
    scale = np.array([1, 1, 1, 1e4], np.float32).reshape(1, 4, 1, 1)
    w_mix = np.diag([1.0, 1.0, 1.0, 1e-6]).astype(np.float32).reshape(4, 4, 1, 1)
    w_out = np.zeros((2, 4, 1, 1), np.float32)
    w_out[1, 0] = 1.0
    b_out = np.array([0.0, -0.5], np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w_in, "w_in"), (scale, "scale"), (w_mix, "w_mix"), (w_out, "w_out"), (b_out, "b_out"))]
    nodes = [
        helper.make_node("Conv", ["input", "w_in"], ["c_in"], name="conv_in"),
        helper.make_node("Mul", ["c_in", "scale"], ["scaled"], name="norm_scale"),
        helper.make_node("Conv", ["scaled", "w_mix"], ["c_mix"], name=SENSITIVE),
        helper.make_node("Relu", ["c_mix"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w_out", "b_out"], ["logits"], name="conv_out"),
    ]
    graph = helper.make_graph(
        nodes, "planted", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 48, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, 48, 64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    art = Artifact(path, model="planted", inputs=[TensorSpec("input", ["batch", 1, 48, 64])],
                   outputs=[TensorSpec("logits", ["batch", 2, 48, 64])],
                   preprocess=Preprocess(size=(48, 64), color="gray", mean=[0.0], std=[1.0]),
                   classes=["background", "head"], opset=18)
    art.save()
    return art


def blob_images(root, count, seed):
    """``count`` gray 96x128 images of one bright ellipse on a dark speckled background, with masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        mask = np.zeros((96, 128), np.uint8)
        center = (int(rng.integers(40, 88)), int(rng.integers(30, 66)))
        cv2.ellipse(mask, center, (int(rng.integers(15, 35)), int(rng.integers(12, 28))), float(rng.integers(0, 180)),
                    0, 360, 255, -1)
        image = np.where(mask > 0, 200, 40).astype(np.float32) + rng.normal(0, 12, mask.shape)
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), np.clip(image, 0, 255).astype(np.uint8))
        cv2.imwrite(str(root / "masks" / f"{i:03d}.png"), mask)
    return root


@pytest.fixture
def planted(tmp_path):
    return planted_segmenter(tmp_path / "planted.onnx")


@pytest.fixture
def blobs(tmp_path):
    return blob_images(tmp_path / "blobs", 20, seed=0)


@pytest.mark.parametrize("search", ["bisect", "sensitivity"])
def test_guard_keeps_the_planted_layer_and_plain_int8_fails(planted, blobs, tmp_path, search):
    from edgeseg.export.precision_guard import guard_quantize

    calibration = sorted((blobs / "images").glob("*.png"))[:8]
    result = guard_quantize(planted, "int8", blobs, "miou_drop<=0.005", tmp_path / "out.int8.onnx",
                            calibration=calibration, method="minmax", search=search, progress=False)
    report = result.report
    assert report["images"] == 12  # the 8 calibration images are not judged on
    assert report["fp32"]["miou"] > 0.95  # the planted model really segments the blobs
    assert not report["unguarded"]["passed"] and report["unguarded"]["miou_drop"] > 0.2  # plain INT8 collapses
    assert result.passed and [k["layer"] for k in result.kept] == [SENSITIVE]
    assert report["guarded"]["miou_drop"] <= 0.005
    assert "miou_drop" in result.kept[0]["why"] and result.kept[0]["input_abs_range"] > 1e3
    written = Artifact.load(tmp_path / "out.int8.onnx")
    info = written.extra["quantization"]
    assert written.precision == "int8" and info["layer_precisions"] == {SENSITIVE: "fp32"}
    assert info["guard"]["kept"][0]["layer"] == SENSITIVE
    model = onnx.load(str(written.path))  # the other two convolutions really are INT8
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    quantized = {n.name for n in model.graph.node if n.op_type == "Conv" and producers.get(n.input[0]) == "DequantizeLinear"}
    assert quantized == {"conv_in", "conv_out"}


def test_fp16_guard_keeps_part_of_the_overflowing_chain(tmp_path, blobs):
    """conv_in -> x1e4 scale reaches 1e5 > 65504: plain FP16 gives NaN logits. Which of the chain's nodes must
    stay FP32 depends on the runtime's fusions (ONNX Runtime folds the scale into conv_in's FP16 weights), so
    the test checks the guarantee: the kept nodes come from that chain and the written file passes."""
    from edgeseg.export.precision_guard import guard_quantize
    from edgeseg.export.task_metrics import EvalSet, drops, score_model

    planted = planted_segmenter(tmp_path / "big.onnx", gain=10.0)
    result = guard_quantize(planted, "fp16", blobs, "dice_drop<=0.01", tmp_path / "big.fp16.onnx", progress=False)
    assert not result.report["unguarded"]["passed"] and result.report["unguarded"]["dice_drop"] > 0.5
    kept = [k["layer"] for k in result.kept]
    assert result.passed and kept and set(kept) <= {"conv_in", "norm_scale", SENSITIVE}
    written = Artifact.load(tmp_path / "big.fp16.onnx")
    assert {name: "fp32" for name in kept}.items() <= written.extra["quantization"]["layer_precisions"].items()
    data = EvalSet.load(planted, blobs)
    assert drops(score_model(planted.path, data), score_model(written.path, data))["dice_drop"] <= 0.01


def test_hc_rule_needs_the_csv_and_judges_head_circumference(planted, blobs, tmp_path):
    from edgeseg.export.precision_guard import guard_quantize

    calibration = sorted((blobs / "images").glob("*.png"))[:8]
    with pytest.raises(InputError, match="pixel_size_and_hc.csv"):
        guard_quantize(planted, "int8", blobs, "hc_mm<=0.5", calibration=calibration, progress=False)
    rows = [f"{p.name},0.1,100.0" for p in sorted((blobs / "images").glob("*.png"))]
    (blobs / "pixel_size_and_hc.csv").write_text("filename,pixel size(mm),head circumference (mm)\n" + "\n".join(rows))
    result = guard_quantize(planted, "int8", blobs, "hc_mm<=0.5", tmp_path / "hc.int8.onnx", calibration=calibration,
                            method="minmax", progress=False)
    assert result.report["unguarded"]["hc_mm"] > 5  # no head found: the whole circumference is the error
    assert result.passed and result.report["guarded"]["hc_mm"] <= 0.5 and result.report["fp32"]["hc_mm_mean"] > 5


@pytest.mark.parametrize("rule, max_kept, why", [
    ("miou_drop<=0.005", 0.0, "keeping at most 0 of 3 layers"),
    ("miou_drop<0", 1.0, "even with all 3 layers in FP32"),  # FP32 itself has drop 0, not < 0
])
def test_guard_that_cannot_pass_writes_nothing(planted, blobs, tmp_path, rule, max_kept, why):
    from edgeseg.export.precision_guard import guard_quantize

    calibration = sorted((blobs / "images").glob("*.png"))[:8]
    result = guard_quantize(planted, "int8", blobs, rule, tmp_path / "out.int8.onnx",
                            calibration=calibration, method="minmax", max_kept=max_kept, progress=False)
    assert not result.passed and why in result.message and "nothing written" in result.message
    assert not (tmp_path / "out.int8.onnx").exists()


@pytest.mark.parametrize("text, expected", [
    ("miou_drop<=0.005", [("miou_drop", 0.005, False)]),
    ("dice_drop<0.5%, hc_mm<=0.5", [("dice_drop", 0.005, True), ("hc_mm", 0.5, False)]),
    (" boundary_f_drop <= 1e-3 and miou_drop<=0.01", [("boundary_f_drop", 0.001, False), ("miou_drop", 0.01, False)]),
])
def test_accept_parses(text, expected):
    from edgeseg.export.task_metrics import parse_accept

    assert [(c.metric, pytest.approx(c.bound), c.strict) for c in parse_accept(text)] == expected


@pytest.mark.parametrize("text, message", [
    ("miou<=0.005", "unknown metric 'miou'"),
    ("miou_drop>=0.005", "cannot read"),
    ("miou_drop<=", "cannot read"),
    ("miou_drop<=0.1, miou_drop<=0.2", "twice"),
    ("hc_mm<=5%", "millimetres"),
    ("", "expected METRIC<=VALUE"),
])
def test_accept_rejects_with_the_metrics_listed(text, message):
    from edgeseg.export.task_metrics import parse_accept

    with pytest.raises(InputError, match=message) as err:
        parse_accept(text)
    assert "miou_drop, dice_drop, boundary_f_drop, hc_mm" in str(err.value)


def test_boundary_f_counts_boundary_pixels_within_tolerance():
    from edgeseg.export.task_metrics import boundary_f

    truth = np.zeros((100, 100), np.uint8)
    truth[20:80, 20:80] = 1
    assert boundary_f(truth, truth, 2) == 1.0
    shifted = np.roll(truth, 1, axis=1)  # 1 px off: within 0.75% of the diagonal (1.06 px)
    assert boundary_f(shifted, truth, 2) == 1.0
    far = np.roll(truth, 10, axis=1)  # only the horizontal edges' overlapping parts still match
    assert 0.3 < boundary_f(far, truth, 2) < 0.9
    assert boundary_f(np.zeros_like(truth), truth, 2) == 0.0
    assert np.isnan(boundary_f(np.zeros_like(truth), np.zeros_like(truth), 2))


def test_cli_guard_reports_kept_layers_and_fails_without_writing(planted, blobs, tmp_path, capsys):
    from edgeseg import cli

    out = tmp_path / "cli.int8.onnx"
    args = ["quantize", str(planted.path), "--precision", "int8", "--data", str(blobs), "--limit", "8",
            "--method", "minmax", "-o", str(out), "--no-progress"]
    assert cli.main(args + ["--accept", "miou_drop<=0.005"]) == 0
    text = capsys.readouterr().out
    assert SENSITIVE in text and "kept in FP32: 1 of 3 layers" in text and "head" in text
    assert json.loads(out.with_name(out.name + ".json").read_text())["extra"]["quantization"]["layer_precisions"]
    out.unlink()
    assert cli.main(args + ["--accept", "miou_drop<=0.005", "--max-kept", "0"]) == 1
    assert "nothing written" in capsys.readouterr().err and not out.exists()
    assert cli.main(args + ["--accept", "miou<=0.005"]) == 2
    assert "miou_drop, dice_drop" in capsys.readouterr().err


def test_engine_precisions_compared_with_the_sidecar():
    """The inspector JSON below has TensorRT's documented shape (detailed layers: fused Name, Metadata, Format/
    Datatype, Weights.Type); no engine can be built and inspected without a GPU here."""
    from edgeseg.export.engine_precisions import precision_mismatches

    info = {"Layers": [
        {"Name": "conv_in + relu", "LayerType": "CaskConvolution", "Weights": {"Type": "Int8", "Count": 4},
         "Inputs": [{"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}]},
        {"Name": "Reformatting CopyNode for Input Tensor 0 to conv_mix", "LayerType": "Reformat",
         "Inputs": [{"Format/Datatype": "Int8"}]},
        {"Name": "myl0_3", "LayerType": "CaskConvolution", "Metadata": "[ONNX Layer: conv_mix]\x1e",
         "Inputs": [{"Format/Datatype": "Row major linear FP32"}], "Weights": {"Type": "Float", "Count": 16}},
        {"Name": "conv_out", "LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": "Half"}]},
    ]}
    assert precision_mismatches(json.dumps(info), {"conv_mix": "fp32"}) == {}
    assert precision_mismatches(info, {"conv_out": "fp32", "gone": "fp32"}) == {
        "conv_out": {"expected": "fp32", "engine": ["fp16"]}, "gone": {"expected": "fp32", "engine": None}}
    with pytest.raises(InputError, match="DETAILED"):
        precision_mismatches({"Layers": ["conv_in + relu"]}, {"conv_mix": "fp32"})


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_one_channel_outputs_are_judged_by_their_threshold(tmp_path, blobs, kind):
    """A single sigmoid channel for two classes (the selfie model's output): foreground where the logit is > 0 or
    the probability > 0.5; an argmax over one channel would call every pixel background."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.export.task_metrics import EvalSet, score_model

    inits = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w"),
             numpy_helper.from_array(np.array([-0.5], np.float32), "b")]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["z" if kind == "probs" else "out"], name="head")]
    if kind == "probs":
        nodes.append(helper.make_node("Sigmoid", ["z"], ["out"], name="sigmoid"))
    graph = helper.make_graph(nodes, "one", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1, 48, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 1, 48, 64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path / f"one_{kind}.onnx"
    onnx.save(model, str(path))
    art = Artifact(path, model="one", inputs=[TensorSpec("input", ["batch", 1, 48, 64])],
                   outputs=[TensorSpec("out", ["batch", 1, 48, 64])], output_kind=kind,
                   preprocess=Preprocess(size=(48, 64), color="gray", mean=[0.0], std=[1.0]),
                   classes=["background", "head"], opset=18)
    art.save()
    scores = score_model(path, EvalSet.load(art, blobs))
    assert scores.confusion.mean_iou > 0.9 and scores.summary(art.classes)["iou"]["head"] > 0.85


def test_class_folder_masks_take_their_folders_class(tmp_path):
    """BUSI's layout (DATA/images/<class>/X.png + X_mask.png, `normal` without masks): the guard's judging set gives
    each mask pixel its folder's class, as `edgeseg eval` does, not the raw 255."""
    from edgeseg.export.task_metrics import EvalSet

    root = tmp_path / "busi"
    (root / "masks").mkdir(parents=True)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 10:20] = 255
    for folder in ("benign", "malignant", "normal"):
        (root / "images" / folder).mkdir(parents=True)
        cv2.imwrite(str(root / "images" / folder / f"{folder}1.png"), np.full((20, 30), 90, np.uint8))
        if folder != "normal":
            cv2.imwrite(str(root / "images" / folder / f"{folder}1_mask.png"), mask)
    art = Artifact(tmp_path / "m.onnx", inputs=[TensorSpec("input", ["batch", 1, 16, 16])],
                   preprocess=Preprocess(size=(16, 16), color="gray", mean=[0.0], std=[1.0]),
                   classes=["background", "benign", "malignant"],
                   extra={"train": {"config": {"layout": "class-folders", "mask_suffix": "_mask",
                                               "background": ["normal"]}}})
    data = EvalSet.load(art, root, limit=None)
    truths = dict(zip(data.names, data.truths))
    assert sorted(truths) == ["benign/benign1.png", "malignant/malignant1.png", "normal/normal1.png"]
    assert [np.unique(truths[n]).tolist() for n in sorted(truths)] == [[0, 1], [0, 2], [0]]
    assert int((truths["malignant/malignant1.png"] == 2).sum()) == 100
