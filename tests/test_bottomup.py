"""Bottom-up instances: pairwise loss and seed rule against literal NumPy, touching heads, a tiny end-to-end run."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgeseg.models import create_model
from edgeseg.models.bottomup import BottomUp, instances_from_seeds, pairwise_loss, select_seeds


def test_pairwise_loss_matches_a_literal_numpy_computation():
    e = np.array([[0.0, 0.0], [0.5, 0.0], [2.0, 1.0], [0.0, 3.0]])
    ids = np.array([1, 1, 2, 0])
    total, count = 0.0, 0
    for p in range(4):
        for q in range(4):
            if p == q:
                continue
            d2 = float(np.sum((e[p] - e[q]) ** 2))
            sigma = 2.0 / (1.0 + math.exp(d2))
            y = 1.0 if ids[p] == ids[q] else 0.0
            total += -(y * math.log(sigma) + (1 - y) * math.log(1 - sigma))
            count += 1
    got = pairwise_loss(torch.tensor(e, dtype=torch.float64), torch.tensor(ids))
    assert float(got) == pytest.approx(total / count, rel=1e-9)


def test_pairwise_loss_prefers_separated_instances():
    ids = torch.tensor([1, 1, 2, 2])
    good = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [3.1, 0.0]])
    bad = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.1, 0.0], [3.1, 0.0]])
    assert float(pairwise_loss(good, ids)) < 0.1 < float(pairwise_loss(bad, ids))


def test_seed_selection_matches_a_literal_numpy_computation():
    e = np.array([[0.0, 0.0], [0.2, 0.1], [3.0, 0.0], [3.1, 0.2], [0.0, 2.0], [1.5, 1.5]])
    s = np.array([0.9, 0.95, 0.6, 0.5, 0.3, 0.8])
    alpha = 1.0
    chosen = []
    for _ in range(4):
        best, best_p = -np.inf, None
        for p in range(len(e)):
            if p in chosen:
                continue
            value = math.log(s[p])
            if chosen:
                value += alpha * math.log(min(float(np.sum((e[p] - e[q]) ** 2)) for q in chosen))
            if value > best:
                best, best_p = value, p
        chosen.append(best_p)
    got = select_seeds(torch.tensor(e, dtype=torch.float64), torch.tensor(s, dtype=torch.float64), 4, alpha)
    assert got.tolist() == chosen
    assert chosen[:2] == [1, 2]  # best seediness first, then far in embedding space over the seedier p0 / p5


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_two_overlapping_heads_give_two_instances():
    """Constructed embedding field: two overlapping discs (B drawn over A), one embedding per disc."""
    h = w = 40
    a, b = _disc(h, w, 16, 14, 10), _disc(h, w, 22, 26, 10)
    assert (a & b).sum() > 20  # they do overlap
    a = a & ~b
    emb = np.zeros((2, h, w), np.float32)
    emb[0][b] = 4.0
    yy, xx = np.mgrid[:h, :w]
    seed = np.full((h, w), -8.0, np.float32)
    seed[a] = 3.0 - 0.3 * np.hypot(yy - 16, xx - 14)[a]
    seed[b] = 3.0 - 0.3 * np.hypot(yy - 22, xx - 26)[b]
    cls = np.stack([np.where(a | b, -6.0, 6.0), np.where(a | b, 6.0, -6.0)]).astype(np.float32)
    model = BottomUp(2, 1, embedding_dim=2, max_instances=4).eval()
    out = model.detect(torch.from_numpy(emb), torch.from_numpy(seed), torch.from_numpy(cls), (h, w))
    inst = instances_from_seeds(out["scores"].numpy(), out["labels"].numpy(), out["image_masks"].numpy(),
                                score_threshold=0.3)
    assert len(inst) == 2
    for gt in (a, b):
        ious = [(gt & m).sum() / (gt | m).sum() for m in inst.masks]
        assert max(ious) > 0.95
    assert inst.classes.tolist() == [1, 1]


def test_instances_from_seeds_drops_duplicates_and_low_scores():
    m = np.zeros((3, 10, 10), np.float32)
    m[0, 2:6, 2:6] = 0.9
    m[1, 2:6, 2:7] = 0.8  # IoU 0.8 with the first: a repeat
    m[2, 7:9, 7:9] = 0.9
    inst = instances_from_seeds([0.9, 0.7, 0.2], [1, 1, 1], m, score_threshold=0.1)
    assert inst.scores.tolist() == pytest.approx([0.9, 0.2])
    np.testing.assert_array_equal(inst.boxes[1], [7, 7, 9, 9])
    assert len(instances_from_seeds([0.9, 0.7, 0.2], [1, 1, 1], m, score_threshold=0.5)) == 1


def test_eval_outputs_and_losses():
    torch.manual_seed(0)
    model = create_model("bottomup", num_classes=2, in_channels=1, max_instances=3)
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 4:30, 4:30] = 1
    masks[1, 34:60, 30:62] = 1
    target = {"boxes": torch.tensor([[4, 4, 30, 30], [30, 34, 62, 60]], dtype=torch.float32),
              "labels": torch.tensor([1, 1]), "masks": masks}
    losses = model.train()(torch.randn(2, 1, 64, 64), [target, target])
    assert set(losses) == {"pairwise", "seediness", "semantic"}
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.out.parameters())
    out = model.eval()(torch.randn(1, 1, 64, 64))[0]
    assert out["image_masks"].shape == (3, 64, 64) and out["scores"].shape == (3,)
    with pytest.raises(Exception, match="targets"):
        model.train()(torch.zeros(1, 1, 64, 64))


def _mini_hc18(hc18_dir, tmp_path, n=12):
    """A copy of the first ``n`` HC18 scans and masks (real data; a small folder keeps loading fast)."""
    import shutil
    for sub in ("images", "masks"):
        (tmp_path / "hc18" / sub).mkdir(parents=True)
        for path in sorted((hc18_dir / sub).glob("*.png"))[:n]:
            shutil.copy(path, tmp_path / "hc18" / sub / path.name)
    return tmp_path / "hc18"


@pytest.mark.slow
def test_train_export_segment_and_evaluate_end_to_end(hc18_dir, tmp_path):
    """A few training steps on HC18 composites, ONNX export (seed selection inside the graph), the same
    instances from ONNX Runtime and PyTorch through InstanceSegmenter, and eval-instances' COCO AP."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("pycocotools")
    from edgeseg.instances.evaluate import evaluate_model_on_folder
    from edgeseg.instances.export import export_artifact
    from edgeseg.instances.segmenter import InstanceSegmenter
    from edgeseg.instances.train import InstanceTrainConfig, train_instances
    from edgeseg.models import load_checkpoint

    data = _mini_hc18(hc18_dir, tmp_path)
    out = tmp_path / "bu.safetensors"
    cfg = InstanceTrainConfig(data=str(data), out=str(out), size=96, batch_size=2, max_steps=2, model="bottomup",
                              dataset="hc18_composites", val_composites=2, val_fraction=0.5, threads=1,
                              model_kwargs={"max_instances": 3})
    report = train_instances(cfg, log=lambda *_: None)
    assert report["steps"] == 2 and report["images"] == 2 and 0 <= report["segm"]["AP"] <= 1
    with pytest.raises(Exception, match="init_weights .*got a 'bottomup' model"):
        train_instances(replace(cfg, model="fcis", model_kwargs={}, init_weights=str(out)), log=lambda *_: None)
    model, artifact = load_checkpoint(out)
    onnx_path = export_artifact(model, artifact, tmp_path / "bu.onnx")
    frame = np.random.default_rng(0).integers(0, 255, (150, 130), dtype=np.uint8)
    a = InstanceSegmenter(onnx_path, score_threshold=0.0)(frame).instances
    b = InstanceSegmenter(out, score_threshold=0.0)(frame).instances
    assert a.masks.shape[1:] == (150, 130) and len(a) == len(b)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    assert (a.masks != b.masks).mean() < 0.01
    ap = evaluate_model_on_folder(onnx_path, data, split="all", dataset="hc18_composites", composites=2, canvas=160)
    assert ap["images"] == 2 and 0 <= ap["segm"]["AP"] <= 1


@pytest.mark.slow
def test_exported_graph_with_seed_selection_builds_with_tensorrt_rtx(rtx, tmp_path):
    """The whole graph, seed selection included, parses and builds with TensorRT-RTX (no GPU needed)."""
    from _routes import build_rtx

    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.instances.export import export_artifact

    torch.manual_seed(0)
    model = create_model("bottomup", num_classes=2, in_channels=1, width=0.5, channels=16, max_instances=2).eval()
    artifact = Artifact(path=tmp_path / "b.safetensors", model="bottomup", model_kwargs=dict(model.model_kwargs),
                        classes=["background", "head"], preprocess=Preprocess(size=(64, 64), color="gray", mean=[0.5], std=[0.25]))
    path = export_artifact(model, artifact, tmp_path / "b.onnx")
    _, size = build_rtx(path)
    assert size > 0


@pytest.mark.slow
def test_edgeseg_export_routes_a_bottomup_checkpoint_to_the_instance_exporter(tmp_path):
    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.cli import main
    from edgeseg.models import save_checkpoint

    torch.manual_seed(0)
    model = create_model("bottomup", num_classes=2, in_channels=1, width=0.5, channels=16, max_instances=2).eval()
    path = tmp_path / "bu.safetensors"
    save_checkpoint(model, path, Artifact(path=path, classes=["background", "head"],
                                          preprocess=Preprocess(size=(64, 64), color="gray", mean=[0.5], std=[0.25])))
    assert main(["export", str(path), "-o", str(tmp_path / "out")]) == 0
    art = Artifact.load(tmp_path / "out" / "bu.onnx")
    assert art.extra["task"] == "instances" and art.extra["decoder"] == "bottomup"
    assert [o.name for o in art.outputs] == ["scores", "labels", "image_masks"]
