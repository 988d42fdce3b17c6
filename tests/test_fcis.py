"""FCIS: position-sensitive assembly against literal NumPy, the inside/outside votes, a tiny end-to-end run."""

import numpy as np
import pytest
import torch

from edgeseg.models import create_model
from edgeseg.models.fcis import PositionSensitiveHead, assemble, cell_index


def test_assemble_matches_a_literal_numpy_computation():
    k, m, groups = 2, 5, 3
    pooled = np.random.default_rng(0).normal(size=(2, groups * k * k, m, m)).astype(np.float32)
    want = np.zeros((2, groups, m, m), np.float32)
    for r in range(2):
        for g in range(groups):
            for u in range(m):
                for v in range(m):
                    i, j = u * k // m, v * k // m  # the grid cell pixel (u, v) falls in
                    want[r, g, u, v] = pooled[r, g * k * k + i * k + j, u, v]
    np.testing.assert_array_equal(assemble(torch.from_numpy(pooled), k).numpy(), want)
    assert cell_index(2, 5).tolist()[0] == [0, 0, 0, 1, 1] and cell_index(2, 5).tolist()[4] == [2, 2, 2, 3, 3]


def test_head_votes_inside_outside_per_cell():
    """Constant maps per cell: an RoI covering the whole map reads each cell's own inside/outside channel."""
    k, c = 2, 2
    head = PositionSensitiveHead(channels=4, num_classes=c, stride=1, k=k, mask_size=4)
    scores = torch.zeros(1, 2 * c * k * k, 8, 8)
    for ch in range(2 * c * k * k):
        scores[0, ch] = float(ch)
    boxes = torch.zeros(1, 4 * k * k, 8, 8)
    inside, outside, logits, deltas = head((scores, boxes), torch.tensor([[0.0, 0.0, 0.0, 8.0, 8.0]]), 4)
    # channel = (inside/outside * C + class) * k*k + cell; output pixel (u, v) -> cell (u // 2) * 2 + v // 2
    np.testing.assert_array_equal(inside[0, 1].numpy(), [[4, 4, 5, 5], [4, 4, 5, 5], [6, 6, 7, 7], [6, 6, 7, 7]])
    np.testing.assert_array_equal(outside[0, 0].numpy(), inside[0, 0].numpy() + 8)
    want = np.maximum(inside.numpy(), outside.numpy()).mean((2, 3))  # category score: mean of max(in, out)
    np.testing.assert_allclose(logits.numpy(), want)
    assert deltas.shape == (1, 4)


def test_losses_reach_every_part_and_eval_outputs():
    torch.manual_seed(0)
    model = create_model("fcis", num_classes=2, in_channels=1, k=3)
    masks = torch.zeros(1, 128, 128, dtype=torch.uint8)
    masks[0, 20:80, 30:90] = 1
    target = {"boxes": torch.tensor([[30, 20, 90, 80]], dtype=torch.float32), "labels": torch.tensor([1]),
              "masks": masks}
    losses = model.train()(torch.randn(1, 1, 128, 128), [target])
    assert {"rpn_objectness", "box_classifier", "box_regression", "mask"} <= set(losses)
    sum(losses.values()).backward()
    assert model.ps_head.scores.weight.grad.abs().sum() > 0 and model.ps_head.boxes.weight.grad.abs().sum() > 0
    out = model.eval()(torch.randn(1, 1, 128, 128))[0]
    assert out["masks"].shape[1:] == (28, 28) and out["boxes"].shape[1] == 4
    assert not hasattr(model, "mask_head")  # no per-RoI conv head


@pytest.mark.slow
def test_train_export_segment_and_evaluate_end_to_end(hc18_dir, tmp_path):
    """A few training steps on HC18 composites, ONNX export (RoiAlign + NMS inside the graph), ONNX Runtime and
    PyTorch agreeing through InstanceSegmenter, and eval-instances' COCO AP."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("pycocotools")
    from edgeseg.instances.evaluate import evaluate_model_on_folder
    from edgeseg.instances.export import export_artifact
    from edgeseg.instances.segmenter import InstanceSegmenter
    from edgeseg.instances.train import InstanceTrainConfig, train_instances
    from edgeseg.models import load_checkpoint

    from test_bottomup import _mini_hc18

    data = _mini_hc18(hc18_dir, tmp_path)
    out = tmp_path / "fcis.safetensors"
    cfg = InstanceTrainConfig(data=str(data), out=str(out), size=96, batch_size=2, max_steps=2, model="fcis",
                              dataset="hc18_composites", val_composites=2, val_fraction=0.5, threads=1,
                              model_kwargs={"k": 3})
    report = train_instances(cfg, log=lambda *_: None)
    assert report["steps"] == 2 and report["images"] == 2
    model, artifact = load_checkpoint(out)
    assert artifact.model == "fcis"
    onnx_path = export_artifact(model, artifact, tmp_path / "fcis.onnx")
    frame = np.random.default_rng(0).integers(0, 255, (150, 130), dtype=np.uint8)
    a = InstanceSegmenter(onnx_path, score_threshold=0.0)(frame).instances
    b = InstanceSegmenter(out, score_threshold=0.0)(frame).instances
    assert len(a) == len(b) and a.masks.shape[1:] == (150, 130)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    ap = evaluate_model_on_folder(out, data, split="all", dataset="hc18_composites", composites=2, canvas=160)
    assert ap["images"] == 2 and 0 <= ap["segm"]["AP"] <= 1


@pytest.mark.slow
def test_decomposed_export_builds_with_tensorrt_rtx(rtx, tmp_path):
    """TensorRT-RTX has no RoiAlign (its parser needs a ROIAlign plugin) nor NMS: the decomposed route puts the
    encoder, FPN and RPN head in the engine graph and the position-sensitive assembly in the host graph."""
    import onnx
    from _routes import build_rtx

    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.instances.export import export_artifact
    from edgeseg.ops.routes import export_route

    torch.manual_seed(0)
    model = create_model("fcis", num_classes=2, in_channels=1, width=0.5, channels=16, k=3).eval()
    artifact = Artifact(path=tmp_path / "f.safetensors", model="fcis", model_kwargs=dict(model.model_kwargs),
                        classes=["background", "head"], preprocess=Preprocess(size=(64, 64), color="gray", mean=[0.5], std=[0.25]))
    with export_route("decomposed"):
        path = export_artifact(model, artifact, tmp_path / "f.onnx")
    assert not {n.op_type for n in onnx.load(str(path)).graph.node} & {"RoiAlign", "NonMaxSuppression", "NonZero"}
    host = {n.op_type for n in onnx.load(str(tmp_path / "f.post.onnx")).graph.node}
    assert "GridSample" in host and "RoiAlign" not in host
    _, size = build_rtx(path)
    assert size > 0
