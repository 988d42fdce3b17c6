"""Instance datasets: COCO polygons and RLE, instance PNG folders, HC18 heads, composed multi-head canvases."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.artifact import Artifact, Preprocess
from edgeseg.errors import InputError
from edgeseg.instances.data import (
    InstanceDataset,
    InstanceItem,
    boxes_from_masks,
    coco_instances,
    compose_instances,
    hc18_instances,
    instance_png_folder,
)


def test_boxes_from_masks_use_pixel_edges():
    masks = np.zeros((2, 10, 12), np.uint8)
    masks[0, 2:5, 3:8] = 1
    np.testing.assert_array_equal(boxes_from_masks(masks), [[3, 2, 8, 5], [0, 0, 0, 0]])


def test_coco_polygon_and_rle(tmp_path):
    mask_utils = pytest.importorskip("pycocotools.mask")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 50), np.uint8))
    rle_mask = np.zeros((40, 50), np.uint8)
    rle_mask[5:15, 30:45] = 1
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode("ascii")
    data = {
        "images": [{"id": 7, "file_name": "a.png", "height": 40, "width": 50}],
        "categories": [{"id": 3, "name": "cell"}, {"id": 9, "name": "nucleus"}],
        "annotations": [
            # a 20x10 rectangle polygon at x 5..25, y 20..30
            {"id": 1, "image_id": 7, "category_id": 9, "iscrowd": 0, "area": 200, "bbox": [5, 20, 20, 10],
             "segmentation": [[5, 20, 25, 20, 25, 30, 5, 30]]},
            {"id": 2, "image_id": 7, "category_id": 3, "iscrowd": 0, "area": 150, "bbox": [30, 5, 15, 10],
             "segmentation": rle},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    items, names = coco_instances(tmp_path / "ann.json", tmp_path)
    assert names == ["background", "cell", "nucleus"]
    _, target = items[0].load()
    assert target["labels"].tolist() == [2, 1]  # category ids 9, 3 -> contiguous labels 2, 1
    np.testing.assert_array_equal(target["masks"][1], rle_mask)
    assert abs(int(target["masks"][0].sum()) - 200) <= 30  # polygon rasterisation includes edge pixels
    np.testing.assert_allclose(target["boxes"][1], [30, 5, 45, 15])


def test_instance_png_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "x.png"), np.full((20, 30), 100, np.uint8))
    label = np.zeros((20, 30), np.uint8)
    label[2:6, 2:9] = 1
    label[10:18, 20:28] = 4
    cv2.imwrite(str(tmp_path / "masks" / "x.png"), label)
    (item,) = instance_png_folder(tmp_path / "images", tmp_path / "masks", label=2)
    image, target = item.load()
    assert image.shape == (20, 30)
    assert target["labels"].tolist() == [2, 2]
    np.testing.assert_array_equal(target["boxes"], [[2, 2, 9, 6], [20, 10, 28, 18]])


def test_sixteen_bit_instance_ids_and_mask_files_keep_every_instance(tmp_path):
    # 16-bit label PNGs (e.g. Cityscapes instance ids): an 8-bit reader scales 1 and 300 down to 0 and 1
    cv2.imwrite(str(tmp_path / "x.png"), np.full((20, 30), 100, np.uint8))
    ids = np.zeros((20, 30), np.uint16)
    ids[2:6, 2:9], ids[10:18, 20:28] = 1, 300
    cv2.imwrite(str(tmp_path / "ids.png"), ids)
    _, target = InstanceItem(tmp_path / "x.png", instance_png=tmp_path / "ids.png").load()
    np.testing.assert_array_equal(target["boxes"], [[2, 2, 9, 6], [20, 10, 28, 18]])
    one = np.zeros((20, 30), np.uint16)
    one[5:9, 4:12] = 1  # a 0/1 mask saved at 16 bits
    cv2.imwrite(str(tmp_path / "one.png"), one)
    _, target = InstanceItem(tmp_path / "x.png", mask_files=(tmp_path / "one.png",)).load()
    np.testing.assert_array_equal(target["boxes"], [[4, 5, 12, 9]])


def test_hc18_each_mask_is_one_head_instance(hc18_dir):
    items = hc18_instances(hc18_dir)
    assert len(items) == len(list((hc18_dir / "images").glob("*.png")))  # one item per scan, none dropped
    image, target = items[0].load()
    assert target["masks"].shape == (1, *image.shape[:2]) and target["labels"].tolist() == [1]
    ds = InstanceDataset(items[:2], Preprocess(size=(128, 128), color="gray", mean=[0.2], std=[0.2]), flip=True)
    x, t = ds[0]
    assert x.shape == (1, 128, 128) and t["masks"].shape == (1, 128, 128)
    np.testing.assert_array_equal(t["boxes"], boxes_from_masks(t["masks"]))  # flips keep boxes consistent


def _head_crops(items, n, size=96):
    pieces = []
    for item in items[:n]:
        image, target = item.load()
        x1, y1, x2, y2 = target["boxes"][0].astype(int)
        crop, mask = image[y1:y2, x1:x2], target["masks"][0, y1:y2, x1:x2]
        scale = size / max(crop.shape)
        shape = (max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale)))
        pieces.append((cv2.resize(crop, shape), cv2.resize(mask, shape, interpolation=cv2.INTER_NEAREST)))
    return pieces


def test_compose_real_heads_into_one_canvas(hc18_dir):
    pieces = _head_crops(hc18_instances(hc18_dir), 3)
    canvas, target = compose_instances(pieces, (128, 320), np.random.default_rng(0))
    assert canvas.shape == (128, 320) and len(target["labels"]) == 3
    assert target["masks"].sum(0).max() == 1  # no overlap
    for i, (_, mask) in enumerate(pieces):
        assert target["masks"][i].sum() == (mask > 0).sum()
        x1, _, x2, _ = target["boxes"][i]
        assert i * 106 <= x1 and x2 <= (i + 1) * 106 + 1  # each head stays in its strip
    with pytest.raises(InputError, match="pieces"):
        compose_instances(pieces, (64, 320), np.random.default_rng(0))


SHIPPED_MASKRCNN = Path(__file__).resolve().parents[1] / "edgeseg/assets/hc18_maskrcnn.safetensors"


def _trained_checkpoint() -> Path:
    """The shipped Mask R-CNN, trained on HC18 composites (no BUSI); it must be in the repository."""
    assert SHIPPED_MASKRCNN.exists(), f"{SHIPPED_MASKRCNN} is missing: it ships with the repository"
    return SHIPPED_MASKRCNN


def _validation_items(hc18_dir):
    """HC18 items of the shipped model's validation patients (listed in its sidecar)."""
    names = set(Artifact.load(_trained_checkpoint()).extra["trained_on"]["val_files"])
    items = [it for it in hc18_instances(hc18_dir) if it.image.name in names]
    assert len(items) == len(names)
    return items


def test_shipped_maskrcnn_is_small_half_precision_and_hc18_only():
    torch = pytest.importorskip("torch")
    from safetensors import safe_open

    from edgeseg.models import load_checkpoint

    path = _trained_checkpoint()
    assert path.stat().st_size < 4_000_000
    art = Artifact.load(path)
    assert art.model == "maskrcnn" and art.extra["task"] == "instances" and art.extra["weights_dtype"] == "float16"
    assert "CC BY 4.0" in art.extra["data_attribution"] and art.extra["train"]["config"]["dataset"] == "hc18_composites"
    assert "shared/data/hc18" in art.extra["train"]["config"]["data"]
    with safe_open(str(path), "pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    model, _ = load_checkpoint(path)
    state = model.state_dict()
    for name, tensor in stored.items():
        if tensor.is_floating_point():
            assert str(tensor.dtype) == "torch.float16", name
            assert state[name].dtype == torch.float32 and (state[name] == tensor.float()).all(), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trained_model_finds_each_real_head_on_a_two_head_canvas(hc18_dir, seed):
    """The shipped model finds both real heads of a two-scan composite of validation patients (scans it never
    trained on, on a 300 x 400 canvas, not the square one of training): one detection per head."""
    import torch

    from edgeseg.instances.composites import CompositeDataset
    from edgeseg.instances.segmenter import InstanceSegmenter
    from edgeseg.ops.boxes import box_iou

    ds = CompositeDataset(_validation_items(hc18_dir), Preprocess(size=(300, 400), color="gray"), length=1,
                          seed=seed, heads=(2, 2))
    canvas, target = ds.canvas_at(0)
    assert len(target["labels"]) == 2
    inst = InstanceSegmenter(_trained_checkpoint(), score_threshold=0.5)(canvas).instances
    assert len(inst) >= 2
    iou = box_iou(torch.from_numpy(target["boxes"]), torch.from_numpy(inst.boxes)).numpy()
    for g in range(2):
        j = int(iou[g].argmax())
        gt, pred = target["masks"][g] > 0, inst.masks[j]
        assert iou[g, j] >= 0.5, f"head {g}: best box IoU {iou[g, j]:.2f}"
        assert (gt & pred).sum() / (gt | pred).sum() >= 0.5
    assert len(set(iou.argmax(1).tolist())) == 2  # two different detections, not one box over both


def test_overlapping_tiles_occlude_in_paste_order():
    """Two 8x8 tiles on a 1 x 2 grid with overlap 0.5 sit 4 columns apart: the later head hides the earlier one,
    the later background fills only empty canvas."""
    from edgeseg.instances.composites import compose_tiles

    tiles = []
    for value in (100, 200):
        mask = np.zeros((1, 8, 8), np.uint8)
        mask[0, 2:6, 1:7] = 1
        tiles.append((np.full((8, 8), value, np.uint8), mask))
    canvas, target = compose_tiles(tiles, (8, 16), np.random.default_rng(0), grid=(1, 2), overlap=0.5)
    first_x = int(np.nonzero(canvas[0] == 100)[0].min())  # rows 0-1 of a tile hold no head
    second_x = int(target["boxes"][1, 0]) - 1
    assert abs(second_x - first_x) == 4  # pitch (1 - 0.5) x 8
    expected = np.zeros((8, 16), np.uint8)
    expected[:, first_x:first_x + 8] = 100
    head2 = np.zeros((8, 16), bool)
    head2[2:6, second_x + 1:second_x + 7] = True
    rect2 = np.zeros((8, 16), bool)
    rect2[:, second_x:second_x + 8] = True
    expected[head2 | (rect2 & (expected == 0))] = 200
    np.testing.assert_array_equal(canvas, expected)
    head1 = np.zeros((8, 16), bool)
    head1[2:6, first_x + 1:first_x + 7] = True
    np.testing.assert_array_equal(target["masks"][0], head1 & ~head2)  # the visible part of the bottom head
    np.testing.assert_array_equal(target["masks"][1], head2)
    assert target["order"].tolist() == [0, 1]
    with pytest.raises(InputError, match="overlap: got 1.5"):
        compose_tiles(tiles, (8, 16), np.random.default_rng(0), grid=(1, 2), overlap=1.5)


def test_overlapping_hc18_composites_hide_part_of_a_real_head(hc18_dir):
    from edgeseg.instances.composites import CompositeDataset

    items = hc18_instances(hc18_dir)[:8]
    ds = CompositeDataset(items, Preprocess(size=(256, 256), color="gray"), length=6, seed=0, overlap=0.5)
    full_areas = sorted(int(m.sum()) for _, m in ds.tiles)
    hidden = 0
    for i in range(len(ds)):
        canvas, target = ds.canvas_at(i)
        assert target["masks"].sum(0).max() == 1  # visible parts are disjoint
        assert sorted(target["order"].tolist()) == list(range(len(target["labels"])))
        top = target["masks"][int(np.argmax(target["order"]))]
        assert top.sum() in full_areas  # nothing lies on the top head: it is whole
        hidden += sum(int(m.sum()) not in full_areas for m in target["masks"])
    assert hidden >= 3  # heads really overlap: several are partly covered
