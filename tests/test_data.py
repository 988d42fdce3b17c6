"""The data pipeline on real HC18 files (pairing, patient split, mask decoding) and on small made-up folders."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
Image = pytest.importorskip("PIL.Image")

from edgeseg.artifact import Preprocess
from edgeseg.data import (
    Augment,
    MaskSpec,
    SegmentationDataset,
    pair_folder,
    preprocess_image,
    read_mask,
    split_by_group,
)
from edgeseg.errors import InputError

HC18_GROUP = r"^(\d{3})_"
FEW = ["010_HC.png", "010_2HC.png", "014_HC.png", "014_2HC.png", "014_3HC.png", "017_HC.png", "017_2HC.png",
       "000_HC.png", "001_HC.png", "002_HC.png", "003_HC.png", "004_HC.png"]


@pytest.fixture()
def few_hc18(hc18_dir, tmp_path):
    """A copy of 12 real HC18 pairs from 8 patients (some with 2-3 scans)."""
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        for name in FEW:
            shutil.copy(hc18_dir / sub / name, tmp_path / sub / name)
    return tmp_path


def test_pairs_real_hc18_files_by_name(few_hc18):
    samples = pair_folder(few_hc18 / "images", few_hc18 / "masks")
    assert sorted(s.name for s in samples) == sorted(FEW)
    assert all(s.masks == (few_hc18 / "masks" / s.name,) for s in samples)


def test_patient_split_never_puts_one_patient_on_both_sides(hc18_dir):
    samples = pair_folder(hc18_dir / "images", hc18_dir / "masks")
    train, val = split_by_group(samples, HC18_GROUP, val_fraction=0.2, seed=0)
    patients = lambda ss: {re.match(HC18_GROUP, s.name).group(1) for s in ss}
    images = sorted(p.name for p in (hc18_dir / "images").glob("*.png"))
    assert sorted(s.name for s in samples) == images  # every image paired with its mask, none dropped
    assert sorted(s.name for s in train + val) == images
    assert not patients(train) & patients(val)
    assert len(patients(val)) == round(0.2 * len(patients(samples)))
    # multi-scan patients exist, so a file-level split would have leaked
    assert len(samples) > len(patients(samples))
    again = split_by_group(samples, HC18_GROUP, val_fraction=0.2, seed=0)[1]
    other = split_by_group(samples, HC18_GROUP, val_fraction=0.2, seed=1)[1]
    assert [s.name for s in again] == [s.name for s in val]
    assert {s.name for s in other} != {s.name for s in val}


def test_hc18_mask_decodes_to_a_filled_binary_head(hc18_dir):
    mask = read_mask(hc18_dir / "masks" / "000_HC.png", MaskSpec("binary"))
    raw = cv2.imread(str(hc18_dir / "masks" / "000_HC.png"))
    assert mask.shape == raw.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    assert np.array_equal(mask, (raw[..., 2] > 0).astype(np.uint8))  # channel 0 (R) of the RGB PNG
    # a filled head: the centre of the foreground's bounding box is foreground
    ys, xs = np.nonzero(mask)
    assert mask[(ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2] == 1


def test_dataset_item_is_normalised_gray_at_training_size(few_hc18):
    samples = pair_folder(few_hc18 / "images", few_hc18 / "masks")
    pre = Preprocess(size=(64, 96), color="gray", mean=[0.2], std=[0.5])
    ds = SegmentationDataset(samples, pre, MaskSpec("binary"))
    x, y = ds[0]
    assert x.shape == (1, 64, 96) and x.dtype == np.float32
    assert y.shape == (64, 96) and y.dtype == np.int64 and set(np.unique(y)) <= {0, 1} and y.any()
    image = cv2.imread(str(samples[0].image), cv2.IMREAD_UNCHANGED)
    assert np.allclose(x, preprocess_image(image, pre))
    assert x.min() == pytest.approx((0 - 0.2) / 0.5, abs=0.05)


def _write(path, array):
    Image.fromarray(array).save(path)


def _write_palette(path, array):
    img = Image.fromarray(array.astype(np.uint8), mode="L").convert("P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.putdata(array.reshape(-1).tolist())
    img.save(path)


def test_several_masks_for_one_image_are_ored(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), np.zeros((4, 5, 3), np.uint8))
    left, right = np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8)
    left[:, :2], right[:, 3:] = 255, 255
    _write(tmp_path / "ann" / "a_left.png", left)
    _write(tmp_path / "ann" / "a_right.png", right)
    (sample,) = pair_folder(tmp_path / "img", tmp_path / "ann", mask_pattern="{stem}_*.png")
    assert len(sample.masks) == 2
    mask = read_mask(sample.masks, MaskSpec("binary"))
    assert mask.tolist() == [[1, 1, 0, 1, 1]] * 4


def test_palette_and_index_masks_decode_to_class_indices(tmp_path):
    classes = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    _write_palette(tmp_path / "p.png", classes)
    assert Image.open(tmp_path / "p.png").mode == "P"
    assert read_mask(tmp_path / "p.png", MaskSpec("palette", num_classes=3)).tolist() == classes.tolist()
    _write(tmp_path / "i.png", classes)
    assert read_mask(tmp_path / "i.png", MaskSpec("index", num_classes=3)).tolist() == classes.tolist()
    rgb = np.array([[[0, 0, 0], [255, 0, 0], [0, 255, 0]]], np.uint8)
    _write(tmp_path / "c.png", rgb)
    spec = MaskSpec("palette", num_classes=3, colors=((0, 0, 0), (255, 0, 0), (0, 255, 0)))
    assert read_mask(tmp_path / "c.png", spec).tolist() == [[0, 1, 2]]


def test_unknown_class_values_are_an_input_error(tmp_path):
    _write(tmp_path / "i.png", np.array([[0, 1, 7, 255]], np.uint8))
    with pytest.raises(InputError, match=r"unknown class values \[7\]"):
        read_mask(tmp_path / "i.png", MaskSpec("index", num_classes=3, ignore_index=255))
    with pytest.raises(InputError, match=r"unknown class values \[7, 255\]"):
        read_mask(tmp_path / "i.png", MaskSpec("index", num_classes=3))


def test_unpaired_images_and_masks_are_input_errors(few_hc18):
    (few_hc18 / "masks" / "000_HC.png").unlink()
    with pytest.raises(InputError, match=r"unpaired images: 1 image.*000_HC.png"):
        pair_folder(few_hc18 / "images", few_hc18 / "masks")
    shutil.copy(few_hc18 / "masks" / "001_HC.png", few_hc18 / "masks" / "999_HC.png")
    (few_hc18 / "images" / "000_HC.png").unlink()
    with pytest.raises(InputError, match=r"unpaired masks: 1 mask.*999_HC.png"):
        pair_folder(few_hc18 / "images", few_hc18 / "masks")


def test_image_and_mask_size_mismatch_is_an_input_error(few_hc18):
    mask = cv2.imread(str(few_hc18 / "masks" / "000_HC.png"))
    cv2.imwrite(str(few_hc18 / "masks" / "000_HC.png"), mask[:100])
    samples = [s for s in pair_folder(few_hc18 / "images", few_hc18 / "masks") if s.name == "000_HC.png"]
    ds = SegmentationDataset(samples, Preprocess(size=(32, 32), color="gray", mean=[0.0], std=[1.0]))
    with pytest.raises(InputError, match=r"000_HC.png: size 800x100 \(WxH\) differs from the image's 800x540"):
        ds[0]


def test_augment_moves_image_and_mask_together():
    # an image whose pixel value encodes its mask: after augmentation they must still agree
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 20:50] = 1
    image = np.where(mask == 1, 200, 20).astype(np.uint8)
    aug = Augment(rotate=20, scale=(0.8, 1.3), shift=0.1, brightness=0.0, contrast=0.0, hflip=0.5)
    for _ in range(10):
        out_img, out_mask = aug(image, mask, rng)
        assert set(np.unique(out_mask)) <= {0, 1}          # nearest: no blended labels
        inner = cv2.erode(out_mask, np.ones((3, 3), np.uint8))
        outer = cv2.dilate(out_mask, np.ones((3, 3), np.uint8))
        assert (out_img[inner == 1] > 150).all() and (out_img[outer == 0] < 60).all()
        assert abs(int(out_mask.sum()) - int(mask.sum())) < 0.8 * mask.sum()


def test_augmentation_is_reproducible_per_epoch(few_hc18):
    samples = pair_folder(few_hc18 / "images", few_hc18 / "masks")[:2]
    pre = Preprocess(size=(32, 32), color="gray", mean=[0.0], std=[1.0])
    ds = SegmentationDataset(samples, pre, augment=Augment(), seed=3)
    a = ds[1][0]
    assert np.array_equal(a, ds[1][0])
    ds.set_epoch(1)
    assert not np.array_equal(a, ds[1][0])
