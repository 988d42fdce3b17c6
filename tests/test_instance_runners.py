"""Instance models through the Runner contract (issue 21 item 4): ``Segmenter`` / ``InstanceSegmenter`` build a
runner with the backend registry, so an instance model runs on ONNX Runtime, TensorRT (here with the stand-in
``tensorrt``/``cupy`` of test_trt_runner_offline, which executes the plan's ONNX with ONNX Runtime) or Triton,
and a split export (``--route decomposed``) finishes in its host graph after the engine.

The graphs are built by hand, so the expected instances follow from their constants: a detection scoring
0.9 over the box (0, 0, 16, 16) of a 32 x 32 input, with an all-ones mask, is the top-left quadrant of the frame.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeseg.artifact import Artifact, Preprocess, TensorSpec
from edgeseg.errors import ArtifactError, InputError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

PRE = Preprocess(size=(32, 32), color="gray", mean=[0.0], std=[1.0])
CLASSES = ["background", "head", "hand"]
DETECTIONS = [TensorSpec("boxes", ["detections", 4]), TensorSpec("scores", ["detections"]),
              TensorSpec("labels", ["detections"], "int64"), TensorSpec("masks", ["detections", 4, 4])]
DENSE = [TensorSpec("feature", ["batch", 1, 32, 32]), TensorSpec("objectness", ["batch", 16]),
         TensorSpec("rpn_deltas", ["batch", 16, 4])]


def _const(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array)))


def _save(nodes, inputs, outputs, path):
    graph = helper.make_graph(nodes, path.stem, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _detections_tail(nodes, score0):
    """Nodes making boxes/scores/labels/masks: detection 0 (box (0,0,16,16), class 1, score ``score0`` (a tensor
    name, shape (1,))) and detection 1 (box (16,16,32,32), class 2, score 0.3, below the 0.5 threshold)."""
    nodes += [_const("boxes", np.array([[0, 0, 16, 16], [16, 16, 32, 32]], np.float32)),
              _const("low", np.array([0.3], np.float32)),
              helper.make_node("Concat", [score0, "low"], ["scores"], axis=0),
              _const("labels", np.array([1, 2], np.int64)),
              _const("masks", np.ones((2, 4, 4), np.float32))]
    return [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("masks", TensorProto.FLOAT, [2, 4, 4])]


def detection_model(folder) -> Artifact:
    """A whole detection graph (as ``edgeseg export`` writes for Mask R-CNN): score 0 = 0.9."""
    path = folder / "det.onnx"
    nodes = [_const("high", np.array([0.9], np.float32))]
    outputs = _detections_tail(nodes, "high")
    _save(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 32, 32])], outputs, path)
    art = Artifact(path, model="maskrcnn", inputs=[TensorSpec("input", [1, 1, 32, 32])], outputs=list(DETECTIONS),
                   preprocess=PRE, classes=list(CLASSES), extra={"task": "instances"})
    art.save()
    return art


def split_model(folder) -> Artifact:
    """A split export: the engine part (input -> feature, objectness = 8x8 means, rpn_deltas) and the host graph
    ``dense.post.onnx`` whose score 0 is sigmoid(mean(objectness)): sigmoid(1) for an all-white frame."""
    path = folder / "dense.onnx"
    nodes = [helper.make_node("Relu", ["input"], ["feature"]),
             helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
             _const("flat", np.array([0, 16], np.int64)),
             helper.make_node("Reshape", ["pooled", "flat"], ["objectness"]),
             helper.make_node("Concat", ["pooled"] * 4, ["pooled4"], axis=1),
             _const("quad", np.array([0, 16, 4], np.int64)),
             helper.make_node("Reshape", ["pooled4", "quad"], ["rpn_deltas"])]
    _save(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 32, 32])],
          [helper.make_tensor_value_info(s.name, TensorProto.FLOAT, s.shape) for s in DENSE], path)
    post = folder / "dense.post.onnx"
    nodes = [helper.make_node("ReduceMean", ["objectness"], ["mean"], axes=[0, 1], keepdims=0),
             helper.make_node("Sigmoid", ["mean"], ["sig"]),
             _const("one", np.array([1], np.int64)),
             helper.make_node("Reshape", ["sig", "one"], ["score0"])]
    outputs = _detections_tail(nodes, "score0")
    _save(nodes, [helper.make_tensor_value_info(s.name, TensorProto.FLOAT, [1, *s.shape[1:]]) for s in DENSE],
          outputs, post)
    stage = {"stage": "maskrcnn_post", "onnx": post.name, "runtime": "onnxruntime",
             "inputs": [s.name for s in DENSE],
             "outputs": [{"name": s.name, "shape": s.shape, "dtype": s.dtype} for s in DETECTIONS]}
    art = Artifact(path, model="maskrcnn", inputs=[TensorSpec("input", ["batch", 1, 32, 32])], outputs=list(DENSE),
                   preprocess=PRE, classes=list(CLASSES), extra={"task": "instances", "export": {"after_engine": stage}})
    art.save()
    return art


def _check_top_left(result, score):
    """One detection: class 1, ``score``, the frame's top-left quadrant (64 x 96 frame: rows < 32, cols < 48)."""
    inst = result.instances
    assert len(inst) == 1 and inst.classes.tolist() == [1]
    np.testing.assert_allclose(inst.scores, [score], rtol=1e-6)
    np.testing.assert_allclose(inst.boxes, [[0, 0, 48, 32]], atol=1e-4)  # x scaled by 3, y by 2
    expected = np.zeros((64, 96), bool)
    expected[:32, :48] = True
    np.testing.assert_array_equal(inst.masks[0], expected)
    np.testing.assert_array_equal(result.labels, expected.astype(np.uint8))
    np.testing.assert_allclose(result.probs[1], np.where(expected, score, 0), rtol=1e-6)
    np.testing.assert_allclose(result.probs[0], 1 - result.probs[1], rtol=1e-6)
    assert set(result.timings) == {"pre", "infer", "post", "crf"} and result.timings["crf"] == 0.0


FRAME = np.full((64, 96), 255, np.uint8)


def test_segmenter_runs_an_instance_model_through_the_onnxruntime_runner(tmp_path):
    import edgeseg
    from edgeseg.instances.segmenter import InstanceSegmenter
    from edgeseg.runtime.onnxruntime_runner import OnnxRuntimeRunner

    art = detection_model(tmp_path)
    seg = edgeseg.Segmenter(art.path)
    assert type(seg) is edgeseg.Segmenter and isinstance(seg.runner, OnnxRuntimeRunner)
    assert seg.runner.threads == 1  # instance models default to one thread, as InstanceSegmenter always did
    _check_top_left(seg(FRAME), 0.9)
    staged = seg.postprocess(seg.infer(seg.preprocess(FRAME)))  # the stages the streaming loop drives
    _check_top_left(staged, 0.9)
    view = seg.overlay(FRAME, staged)
    assert view.shape == (64, 96, 3) and (view[:32, :48] != 255).any() and (view[40:, 60:] == 255).all()
    seg.close()

    with InstanceSegmenter(art.path, 0.95) as strict:  # score_threshold is still the second argument
        assert isinstance(strict, edgeseg.Segmenter) and strict.score_threshold == 0.95
        assert len(strict(FRAME).instances) == 0


def test_streaming_loop_runs_an_instance_model_in_its_three_stages(tmp_path):
    import edgeseg
    from edgeseg.video import FrameSource

    art = detection_model(tmp_path)
    frames = [np.full((64, 96, 3), 255, np.uint8)] * 3
    results = list(edgeseg.stream(FrameSource(frames, fps=None), art.path))
    assert [r.index for r in results] == [0, 1, 2]
    for result in results:
        _check_top_left(result.segmentation, 0.9)


def test_instance_model_options_are_checked(tmp_path):
    import edgeseg

    det = detection_model(tmp_path)
    with pytest.raises(InputError, match="crf: got True, but det.onnx is an instance model"):
        edgeseg.Segmenter(det.path, crf=True)
    with pytest.raises(InputError, match="smooth: got 0.5, but det.onnx is an instance model"):
        edgeseg.Segmenter(det.path, smooth=0.5)
    with pytest.raises(InputError, match="score_threshold: got 'high'"):
        edgeseg.Segmenter(det.path, score_threshold="high")
    semantic = Artifact.load(det.path)
    semantic.extra = {}
    with pytest.raises(InputError, match="score_threshold: got 0.3, but det.onnx is a semantic model"):
        edgeseg.Segmenter(semantic, score_threshold=0.3)


def test_split_export_finishes_in_its_host_graph(tmp_path):
    import edgeseg

    art = split_model(tmp_path)
    with edgeseg.Segmenter(art.path) as seg:
        assert seg.instance_decoder.after_engine.artifact.path.name == "dense.post.onnx"
        _check_top_left(seg(FRAME), 1 / (1 + math.exp(-1.0)))  # all-white frame: objectness 1 everywhere
    (tmp_path / "dense.post.onnx").unlink()
    with pytest.raises(ArtifactError, match="host graph 'dense.post.onnx'.*does not exist; keep it next to dense.onnx"):
        edgeseg.Segmenter(art.path)


@pytest.fixture
def offline_trt(monkeypatch):
    """The stand-in ``tensorrt`` (10.3 API, runs the plan's ONNX with ONNX Runtime) and ``cupy``."""
    from test_trt_build_offline import API_DIR
    from test_trt_runner_offline import install_offline_trt

    if not API_DIR.is_dir():
        pytest.skip(f"TensorRT API surface not found at {API_DIR}")
    return install_offline_trt(monkeypatch)[2]


def test_split_instance_engine_runs_through_the_tensorrt_runner(tmp_path, offline_trt):
    import edgeseg
    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    engine = offline_trt.engine_from_onnx(split_model(tmp_path), max_batch=1, timing_cache=False)
    assert engine.extra["task"] == "instances" and "after_engine" in engine.extra["export"]
    with edgeseg.Segmenter(engine.path) as seg:  # backend "auto": the engine goes to the tensorrt backend
        assert isinstance(seg.runner, TensorRTRunner)
        _check_top_left(seg(FRAME), 1 / (1 + math.exp(-1.0)))
        _check_top_left(seg.postprocess(seg.infer(seg.preprocess(FRAME))), 1 / (1 + math.exp(-1.0)))


def test_split_instance_engine_built_with_tensorrt_rtx_goes_to_the_tensorrt_backend(rtx, tmp_path):
    """The engine TensorRT-RTX builds keeps the instance task and the host-graph stage; ``Segmenter`` gives it
    to the tensorrt backend. Without a CUDA device that backend refuses it, naming why; with one the engine
    runs and the result matches the ONNX Runtime run of the same split model."""
    import edgeseg
    from edgeseg.export.trt_build import engine_from_onnx
    from edgeseg.runtime import list_backends

    art = split_model(tmp_path)
    engine = engine_from_onnx(art.path, tmp_path / "dense.engine", flavour="rtx", max_batch=1, timing_cache=False)
    assert engine.engine["flavour"] == "rtx" and engine.path.stat().st_size > 0
    assert engine.extra["task"] == "instances" and engine.outputs == art.outputs
    problem = list_backends()["tensorrt"]
    if problem is not None:
        with pytest.raises(ArtifactError, match=r"backend 'tensorrt' is not usable on this machine"):
            edgeseg.Segmenter(engine.path, backend="tensorrt")
        return
    with edgeseg.Segmenter(engine.path, backend="tensorrt") as seg:
        _check_top_left(seg(FRAME), 1 / (1 + math.exp(-1.0)))
