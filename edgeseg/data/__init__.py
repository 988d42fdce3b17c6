"""Folder datasets of images and masks: pairing, mask decoding, group-wise splits, augmentation.

>>> from edgeseg.data import MaskSpec, Preprocess, SegmentationDataset, pair_folder, split_by_group  # doctest: +SKIP
>>> samples = pair_folder("hc18/images", "hc18/masks")                          # doctest: +SKIP
>>> train, val = split_by_group(samples, r"^(\\d{3})_", val_fraction=0.2, seed=0)  # doctest: +SKIP
>>> pre = Preprocess(size=(256, 256), color="gray", mean=[0.17], std=[0.17])     # doctest: +SKIP
>>> ds = SegmentationDataset(train, pre, MaskSpec("binary"), augment=Augment())   # doctest: +SKIP
>>> image, mask = ds[0]     # (1, 256, 256) float32, (256, 256) int64              # doctest: +SKIP

Importing needs only NumPy; reading and augmenting load OpenCV (and Pillow for masks) on first use.
"""

from ..artifact import Preprocess
from .augment import Augment
from .dataset import SegmentationDataset, load_image, preprocess_image
from .folder import Sample, pair_folder, split_by_group
from .masks import MaskSpec, read_mask

__all__ = [
    "Augment", "MaskSpec", "Preprocess", "Sample", "SegmentationDataset", "load_image", "pair_folder",
    "preprocess_image", "read_mask", "split_by_group",
]
