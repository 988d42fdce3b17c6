"""edgeseg.ops.nms against the literal NumPy reference, plus ties, empty input and ONNX export."""

import numpy as np
import pytest
import torch

from edgeseg.errors import InputError
from edgeseg.ops import nms
from edgeseg.ops.boxes import batched_nms, box_iou
from edgeseg.ops.reference.nms import iou_one, nms_reference


def _random_boxes(rng, k, size=100.0):
    xy = rng.uniform(0, size, (k, 2))
    wh = rng.uniform(1, size / 3, (k, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_reference_on_random_boxes(seed, threshold):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 80)
    scores = rng.uniform(0, 1, 80).astype(np.float32)
    kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
    np.testing.assert_array_equal(kept, nms_reference(boxes, scores, threshold))


def test_box_iou_matches_reference():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 5)
    expected = np.array([[iou_one(x, y) for y in b] for x in a])
    np.testing.assert_allclose(box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy(), expected, atol=1e-6)


def test_ties_keep_lower_index_first():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10.5], [50, 50, 60, 60]])
    scores = torch.tensor([0.5, 0.9, 0.9, 0.9])
    # index 1 and 2 tie at 0.9 and overlap: 1 wins; 3 ties too but overlaps nothing; 0 is suppressed by 1
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]
    assert nms_reference(boxes.numpy(), scores.numpy(), 0.5).tolist() == [1, 3]


def test_chain_suppression_is_greedy_not_fast_nms():
    # A suppresses B, B would suppress C, but B is gone, so C survives (Fast-NMS would drop C)
    boxes = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.4).tolist() == [0, 2]


def test_empty_input():
    kept = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert kept.shape == (0,) and kept.dtype == torch.long


def test_identical_boxes_keep_one_and_threshold_is_strict():
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 5)
    assert nms(boxes, torch.arange(5.0), 0.5).tolist() == [4]
    # IoU exactly 0.5 is not "greater than" 0.5: both kept
    half = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]])
    assert nms(half, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]


def test_batched_nms_keeps_overlapping_boxes_of_other_classes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    kept = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 0]), 0.5)
    assert kept.tolist() == [0, 1]


def test_bad_input_names_field():
    with pytest.raises(InputError, match="boxes"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(InputError, match="scores"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


def test_onnx_export_runs_nonmaxsuppression_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edgeseg.ops.onnx_translations import translation_table

    class Model(torch.nn.Module):
        def forward(self, boxes, scores):
            return nms(boxes, scores, 0.5)

    rng = np.random.default_rng(3)
    boxes = _random_boxes(rng, 60)
    scores = rng.permutation(60).astype(np.float32) / 60  # distinct scores: ORT's tie order is its own
    path = tmp_path / "nms.onnx"
    example = (torch.from_numpy(boxes), torch.from_numpy(scores))
    k = torch.export.Dim("k", min=2)
    torch.onnx.export(Model().eval(), example, str(path), dynamo=True, opset_version=19,
                      custom_translation_table=translation_table(),
                      dynamic_shapes=({0: k}, {0: k}))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for n in (60, 17):
        (kept,) = session.run(None, {names[0]: boxes[:n], names[1]: scores[:n]})
        np.testing.assert_array_equal(kept, nms_reference(boxes[:n], scores[:n], 0.5))
