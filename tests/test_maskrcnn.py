"""Mask R-CNN pieces on hand-made boxes: anchors, matching, box coding, heads, losses, gradients, pasting."""

import numpy as np
import pytest
import torch

from edgeseg.errors import InputError
from edgeseg.models import create_model
from edgeseg.models.maskrcnn.anchors import (
    AnchorGenerator,
    clip_boxes,
    decode_boxes,
    encode_boxes,
)
from edgeseg.models.maskrcnn.heads import BoxHead, MaskHead
from edgeseg.models.maskrcnn.losses import mask_loss
from edgeseg.models.maskrcnn.postprocess import BOX_WEIGHTS, paste_masks
from edgeseg.models.maskrcnn.targets import (
    BELOW_LOW,
    BETWEEN,
    mask_targets,
    match_boxes,
    sample_balanced,
)
from edgeseg.ops.boxes import box_iou


def test_anchors_count_centres_and_shape():
    gen = AnchorGenerator(sizes=((16,), (32, 64)), ratios=(0.5, 1.0, 2.0), strides=(8, 16))
    level0, level1 = gen([(2, 3), (1, 2)])
    assert level0.shape == (2 * 3 * 3, 4) and level1.shape == (1 * 2 * 6, 4)
    centres = (level0[:, :2] + level0[:, 2:]) / 2
    # rows (y, x, a): the first 3 anchors sit on cell (0, 0) at (4, 4); the next 3 on cell (0, 1) at (12, 4)
    assert torch.allclose(centres[:3], torch.tensor([[4.0, 4.0]] * 3))
    assert torch.allclose(centres[3:6], torch.tensor([[12.0, 4.0]] * 3))
    w, h = level0[:, 2] - level0[:, 0], level0[:, 3] - level0[:, 1]
    assert torch.allclose(w * h, torch.full_like(w, 256.0))            # area = size^2
    assert torch.allclose((h / w)[:3], torch.tensor([0.5, 1.0, 2.0]))  # ratio = h / w


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), BOX_WEIGHTS])
def test_encode_decode_round_trip(weights):
    anchors = torch.tensor([[0.0, 0, 10, 20], [5, 5, 50, 25], [100, 40, 130, 90]])
    boxes = torch.tensor([[2.0, 1, 14, 18], [0, 10, 60, 30], [90, 50, 140, 80]])
    deltas = encode_boxes(boxes, anchors, weights)
    assert torch.allclose(decode_boxes(deltas, anchors, weights), boxes, atol=1e-4)
    assert torch.allclose(encode_boxes(anchors, anchors, weights), torch.zeros(3, 4))


def test_decode_clamps_huge_deltas_and_clip_keeps_boxes_inside():
    boxes = decode_boxes(torch.tensor([[0.0, 0, 100, 100]]), torch.tensor([[0.0, 0, 10, 10]]))
    assert torch.isfinite(boxes).all()
    clipped = clip_boxes(torch.tensor([[-5.0, -3, 300, 40]]), height=32, width=64)
    assert clipped.tolist() == [[0.0, 0.0, 64.0, 32.0]]


def test_match_boxes_thresholds_and_low_quality():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    boxes = torch.tensor([[0.0, 0, 10, 10],     # IoU 1 with gt 0 -> 0
                          [0, 0, 10, 14],       # IoU 10/14 = 0.714 with gt 0 -> 0
                          [0, 0, 10, 25],       # IoU 0.4 -> between
                          [50, 50, 60, 60],     # IoU 0 -> below
                          [20, 20, 30, 50]])    # IoU 1/3 with gt 1 (its best) -> between, low-quality match -> 1
    iou = box_iou(gt, boxes)
    assert match_boxes(iou, 0.7, 0.3).tolist() == [0, 0, BETWEEN, BELOW_LOW, BETWEEN]
    assert match_boxes(iou, 0.7, 0.3, allow_low_quality=True).tolist() == [0, 0, BETWEEN, BELOW_LOW, 1]
    assert match_boxes(torch.zeros(0, 5), 0.7, 0.3).tolist() == [BELOW_LOW] * 5


def test_sample_balanced_respects_fraction_and_budget():
    matched = torch.tensor([0] * 30 + [BELOW_LOW] * 100 + [BETWEEN] * 10)
    pos, neg = sample_balanced(matched, 40, 0.25, torch.Generator().manual_seed(0))
    assert len(pos) == 10 and len(neg) == 30
    assert (matched[pos] >= 0).all() and (matched[neg] == BELOW_LOW).all()
    assert len(set(pos.tolist())) == 10  # no repeats


def test_mask_targets_crop_the_ground_truth():
    masks = torch.zeros(1, 64, 64)
    masks[0, :, :32] = 1  # left half
    # box over columns 16..48: its left half is foreground
    target = mask_targets(masks, torch.tensor([0]), torch.tensor([[16.0, 0, 48, 64]]), 28)
    assert target.shape == (1, 28, 28)
    assert (target[0, :, :14] == 1).all() and (target[0, :, 14:] == 0).all()


def test_heads_shapes_and_gradients_flow_through_roi_align():
    feature = torch.randn(2, 16, 20, 20, requires_grad=True)
    rois = torch.tensor([[0, 8.0, 8, 100, 120], [1, 30, 10, 150, 90], [1, 0, 0, 159, 159]])
    box_head, mask_head = BoxHead(16, 3, stride=8, hidden=32), MaskHead(16, 3, stride=8, hidden=8)
    logits, deltas = box_head(feature, rois)
    assert logits.shape == (3, 3) and deltas.shape == (3, 12)
    masks = mask_head(feature, rois)
    assert masks.shape == (3, 3, 28, 28)
    mask_loss(masks, torch.tensor([1, 2, 1]), torch.ones(3, 28, 28)).backward()
    grad = feature.grad
    assert grad is not None and grad.abs().sum() > 0
    # the first RoI covers only the top-left of image 0: far-away cells of image 0 get no gradient
    assert grad[0, :, 17:, 17:].abs().sum() == 0 and grad[0, :, 1:12, 1:12].abs().sum() > 0


def _tiny_model():
    torch.manual_seed(0)
    return create_model("maskrcnn", num_classes=3, in_channels=1, width=0.5, channels=16)


def _target(h=128, w=128):
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 10:60, 20:70] = 1
    masks[1, 70:120, 60:120] = 1
    return {"boxes": torch.tensor([[20.0, 10, 70, 60], [60, 70, 120, 120]]), "labels": torch.tensor([1, 2]),
            "masks": masks}


def test_model_losses_are_finite_and_reach_every_part():
    model = _tiny_model().train()
    losses = model(torch.randn(2, 1, 128, 128), [_target(), _target()])
    assert set(losses) == {"rpn_objectness", "rpn_box", "box_classifier", "box_regression", "mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for part in (model.encoder, model.fpn, model.rpn, model.box_head, model.mask_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), part


def test_model_eval_outputs():
    model = _tiny_model().eval()
    with torch.no_grad():
        (out,) = model(torch.randn(1, 1, 128, 128))
    d = out["boxes"].shape[0]
    assert d <= model.max_detections
    assert out["masks"].shape == (d, 28, 28) and out["scores"].shape == (d,)
    assert ((out["labels"] >= 1) & (out["labels"] < 3)).all()
    assert (out["scores"][:-1] >= out["scores"][1:]).all()
    assert ((out["boxes"] >= 0) & (out["boxes"] <= 128)).all()


def test_model_rejects_missing_targets_in_training():
    with pytest.raises(InputError, match="targets"):
        _tiny_model().train()(torch.randn(1, 1, 64, 64))


def test_paste_masks_fills_exactly_the_box():
    ones = np.ones((1, 28, 28), np.float32)
    pasted = paste_masks(ones, np.array([[10.0, 20, 30, 50]]), 64, 64)
    expected = np.zeros((64, 64), bool)
    expected[20:50, 10:30] = True
    np.testing.assert_array_equal(pasted[0], expected)


def test_paste_masks_places_the_left_half():
    half = np.zeros((1, 28, 28), np.float32)
    half[0, :, :14] = 1
    pasted = paste_masks(half, np.array([[0.0, 0, 40, 40]]), 40, 40)[0]
    assert pasted[:, :20].all() and not pasted[:, 20:].any()


@pytest.mark.slow  # two dynamo exports: ~20 s idle, more on a loaded CPU
def test_onnx_export_keeps_postprocessing_in_graph_and_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from edgeseg.models.maskrcnn.export import MaskRCNNDetections, onnx_from_maskrcnn

    model = _tiny_model().eval()
    path = onnx_from_maskrcnn(model, tmp_path / "m.onnx", size=(128, 128))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"NonMaxSuppression", "RoiAlign", "TopK"} <= ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for _ in range(2):
        x = rng.standard_normal((1, 1, 128, 128)).astype(np.float32)
        with torch.no_grad():
            expected = [t.numpy() for t in MaskRCNNDetections(model)(torch.from_numpy(x))]
        got = session.run(None, {"input": x})
        assert got[0].shape[0] == expected[0].shape[0] <= model.max_detections  # dynamic detection count
        np.testing.assert_allclose(got[0], expected[0], atol=1e-3)
        np.testing.assert_allclose(got[1], expected[1], atol=1e-4)
        np.testing.assert_array_equal(got[2], expected[2])
        np.testing.assert_allclose(got[3], expected[3], atol=1e-4)


@pytest.mark.slow
def test_instance_segmenter_runs_both_backends_at_frame_size(tmp_path):
    pytest.importorskip("onnxruntime")
    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.instances import Instances
    from edgeseg.instances.segmenter import InstanceSegmenter
    from edgeseg.export import to_onnx
    from edgeseg.models import save_checkpoint

    model = _tiny_model().eval()
    model.box_head.cls_score.bias.data = torch.tensor([-3.0, 3.0, 0.0])  # confident "class 1" detections
    ckpt = tmp_path / "m.safetensors"
    artifact = Artifact(path=ckpt, model="maskrcnn", model_kwargs=dict(model.model_kwargs),
                        preprocess=Preprocess(size=(128, 128), color="gray", mean=[0.2], std=[0.2]),
                        classes=["background", "a", "b"])
    save_checkpoint(model, ckpt, artifact)
    onnx_path = to_onnx(model, artifact.__class__.load(ckpt), tmp_path / "m.onnx").path  # routed to the detection exporter
    frame = np.random.default_rng(0).integers(0, 255, (90, 150, 3), dtype=np.uint8)
    results = []
    for path in (ckpt, onnx_path):
        seg = InstanceSegmenter(path, score_threshold=0.5)
        result = seg(frame)
        inst = result.instances
        assert isinstance(inst, Instances) and len(inst) > 0
        assert inst.masks.shape == (len(inst), 90, 150) and inst.masks.dtype == bool
        assert (inst.scores >= 0.5).all() and (inst.classes == 1).all()
        assert result.labels.shape == (90, 150) and result.probs.shape == (3, 90, 150)
        assert set(result.timings) == {"pre", "infer", "post", "crf"}
        view = seg.overlay(frame, result)
        assert view.shape == frame.shape and view.dtype == np.uint8 and (view != frame).any()
        results.append(inst)
    np.testing.assert_allclose(results[0].boxes, results[1].boxes, atol=1e-2)


def test_segmenter_on_an_instance_artifact_returns_instances(tmp_path):
    """`edgeseg.Segmenter(path)` on an instance artifact (extra.task) decodes instances (no class swap)."""
    import edgeseg
    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.models import create_model, save_checkpoint
    from edgeseg.runtime.torch_runner import TorchRunner

    torch.manual_seed(0)
    model = create_model("maskrcnn", num_classes=2, in_channels=1).eval()
    path = tmp_path / "inst.safetensors"
    save_checkpoint(model, path, Artifact(path=path, classes=["background", "head"],
                                          preprocess=Preprocess(size=(128, 128), color="gray", mean=[0.5], std=[0.25])))
    art = Artifact.load(path)
    art.extra["task"] = "instances"
    art.save()
    seg = edgeseg.Segmenter(path)
    assert type(seg) is edgeseg.Segmenter and isinstance(seg.runner, TorchRunner)
    result = seg(np.zeros((96, 160), np.uint8))
    assert result.labels.shape == (96, 160) and result.instances is not None
    seg.reset()
    seg.close()


@pytest.mark.slow
def test_edgeseg_export_routes_a_maskrcnn_checkpoint_to_the_detection_exporter(tmp_path, capsys):
    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.cli import main
    from edgeseg.models import save_checkpoint

    torch.manual_seed(0)
    model = create_model("maskrcnn", num_classes=2, in_channels=1).eval()
    path = tmp_path / "inst.safetensors"
    save_checkpoint(model, path, Artifact(path=path, classes=["background", "head"],
                                          preprocess=Preprocess(size=(128, 128), color="gray", mean=[0.5], std=[0.25])))
    assert main(["export", str(path), "-o", str(tmp_path / "out")]) == 0
    art = Artifact.load(tmp_path / "out" / "inst.onnx")
    assert art.extra["task"] == "instances" and len(art.outputs) == 4
