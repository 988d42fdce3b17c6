"""HC18 composites (2-4 real scans per canvas, regenerated from the seed) and BUSI lesions as instances."""

import cv2
import numpy as np
import pytest

from edgeseg.artifact import Preprocess
from edgeseg.errors import InputError
from edgeseg.instances.composites import CompositeDataset, compose_tiles
from edgeseg.instances.data import busi_instances, hc18_instances

PRE = Preprocess(size=(128, 160), color="gray", mean=[0.2], std=[0.2])


def test_composites_are_reproducible_and_hold_two_to_four_real_heads(hc18_dir):
    items = hc18_instances(hc18_dir)[:10]
    ds = CompositeDataset(items, PRE, length=20, seed=3)
    again = CompositeDataset(items, PRE, length=20, seed=3)
    counts = set()
    for i in range(len(ds)):
        canvas, target = ds.canvas_at(i)
        same_canvas, same_target = again.canvas_at(i)
        np.testing.assert_array_equal(canvas, same_canvas)
        np.testing.assert_array_equal(target["masks"], same_target["masks"])
        assert canvas.shape == (128, 160) and target["masks"].shape[1:] == (128, 160)
        counts.add(len(target["labels"]))
        assert target["masks"].sum(0).max() == 1  # tiles never overlap
    assert counts == {2, 3, 4}
    assert not np.array_equal(ds.canvas_at(0)[0], CompositeDataset(items, PRE, length=20, seed=4).canvas_at(0)[0])
    image, target = ds[0]
    assert image.shape == (1, 128, 160) and image.dtype == np.float32


def test_each_composite_head_is_a_real_scan_head(hc18_dir):
    """Every instance's pixels are the resized scan's head: the canvas inside each tile equals one fitted scan."""
    items = hc18_instances(hc18_dir)[:4]
    ds = CompositeDataset(items, PRE, length=1, seed=0, heads=(4, 4))
    canvas, target = ds.canvas_at(0)
    tiles = {tile.tobytes(): masks for tile, masks in ds.tiles}
    found = 0
    for g in range(4):
        x1, y1, x2, y2 = target["boxes"][g].astype(int)
        for tile, masks in ds.tiles:
            h, w = tile.shape
            ys, xs = np.nonzero(masks[0])
            y0, x0 = y1 - ys.min(), x1 - xs.min()
            if 0 <= y0 and 0 <= x0 and y0 + h <= 128 and x0 + w <= 160 and \
                    np.array_equal(canvas[y0:y0 + h, x0:x0 + w], tile):
                np.testing.assert_array_equal(target["masks"][g, y0:y0 + h, x0:x0 + w], masks[0])
                found += 1
                break
    assert found == 4 and len(tiles) == 4


def test_composite_errors_name_the_problem(hc18_dir):
    items = hc18_instances(hc18_dir)[:3]
    with pytest.raises(InputError, match="items: got 3 scans"):
        CompositeDataset(items, PRE, length=4)
    with pytest.raises(InputError, match="tiles: got 5"):
        compose_tiles([(np.zeros((4, 4), np.uint8), np.ones((1, 4, 4), np.uint8))] * 5, (16, 16),
                      np.random.default_rng(0))
    with pytest.raises(InputError, match="tile: got 9x4"):
        compose_tiles([(np.zeros((9, 4), np.uint8), np.ones((1, 9, 4), np.uint8))], (16, 16), np.random.default_rng(0))


def test_busi_layout_gives_one_instance_per_mask_file(tmp_path):
    for folder in ("benign", "malignant"):
        (tmp_path / folder / "images").mkdir(parents=True)
        (tmp_path / folder / "masks").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "benign/images/benign (1).png"), np.full((30, 40), 90, np.uint8))
    m0, m1 = np.zeros((30, 40), np.uint8), np.zeros((30, 40), np.uint8)
    m0[2:8, 3:9], m1[20:25, 30:38] = 255, 255
    cv2.imwrite(str(tmp_path / "benign/masks/benign (1)_mask.png"), m0)
    cv2.imwrite(str(tmp_path / "benign/masks/benign (1)_mask_1.png"), m1)
    cv2.imwrite(str(tmp_path / "malignant/images/malignant (2).png"), np.full((30, 40), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "malignant/masks/malignant (2)_mask.png"), np.zeros((30, 40), np.uint8))
    items = busi_instances(tmp_path)
    assert len(items) == 1  # the image without a lesion is no instance sample
    _, target = items[0].load()
    np.testing.assert_array_equal(target["boxes"], [[3, 2, 9, 8], [30, 20, 38, 25]])
    with pytest.raises(InputError, match="BUSI folder"):
        busi_instances(tmp_path / "nowhere")


def test_a_wider_grid_holds_eight_heads(hc18_dir):
    ds = CompositeDataset(hc18_instances(hc18_dir)[:10], PRE, length=2, seed=0, heads=(8, 8), grid=(2, 4))
    _, target = ds.canvas_at(1)
    assert len(target["labels"]) == 8 and target["masks"].sum(0).max() == 1
    assert (target["boxes"][:, 2] - target["boxes"][:, 0]).max() <= 160 // 4
    with pytest.raises(InputError, match="heads: got"):
        CompositeDataset(hc18_instances(hc18_dir)[:10], PRE, length=2, heads=(5, 5))
