"""Folder datasets of images and masks: pairing, mask decoding, group-wise splits, augmentation.

>>> from edgeseg.data import pair_folder, split_by_group, SegmentationDataset   # doctest: +SKIP
>>> samples = pair_folder("hc18/images", "hc18/masks")                          # doctest: +SKIP
>>> train, val = split_by_group(samples, r"^(\\d{3})_", val_fraction=0.2, seed=0)  # doctest: +SKIP
>>> ds = SegmentationDataset(train, size=(256, 256), color="gray", mask=MaskSpec("binary"))  # doctest: +SKIP
>>> image, mask = ds[0]     # (1, 256, 256) float32, (256, 256) int64              # doctest: +SKIP

Needs OpenCV (and Pillow for palette masks); imported here, so this package is not imported by
``edgeseg/__init__.py``.
"""

from .augment import Augment
from .dataset import SegmentationDataset, load_image, preprocess_image
from .folder import Sample, pair_folder, split_by_group
from .masks import MaskSpec, read_mask

__all__ = [
    "Augment", "MaskSpec", "Sample", "SegmentationDataset", "load_image", "pair_folder",
    "preprocess_image", "read_mask", "split_by_group",
]
