"""A map-style dataset (usable by ``torch.utils.data.DataLoader``) over paired image/mask files.

Images and masks are decoded once, resized to the training size and kept in memory as uint8, so an
epoch costs only augmentation and normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._deps import require
from ..artifact import COLOR_ORDERS, Preprocess
from ..errors import InputError
from .augment import Augment
from .class_folders import read_sample_mask
from .folder import Sample
from .masks import MaskSpec


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8: (H, W) for grayscale files, (H, W, 3) BGR for colour ones."""
    cv2 = require("cv2", "reading images")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"image file {path}: cannot be read (missing or not an image)")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return image


def convert_color(image: np.ndarray, color: str) -> np.ndarray:
    """(H, W) gray or (H, W, 3) BGR uint8 -> (H, W) for ``color="gray"``, else (H, W, 3) in ``color`` order."""
    cv2 = require("cv2", "colour conversion")
    if color not in COLOR_ORDERS:
        raise InputError(f"color: got {color!r}, expected one of {COLOR_ORDERS}")
    if color == "gray":
        return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)  # R = G = B, in either order
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if color == "rgb" else image


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Stretch to ``size`` (H, W) with bilinear interpolation, exactly as :mod:`edgeseg.preprocess` does at
    inference time (training on another interpolation would shift the input distribution)."""
    cv2 = require("cv2", "resizing")
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 -> (C, H, W) float32 ``(pixel / 255 - mean) / std``."""
    x = image.astype(np.float32) / 255.0
    if x.ndim == 2:
        x = x[..., None]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_image(image: np.ndarray, pre: Preprocess) -> np.ndarray:
    """A BGR (H, W, 3) or gray (H, W) uint8 frame -> the model input (C, H', W') float32 of ``pre``."""
    return normalize(resize_image(convert_color(image, pre.color), tuple(pre.size)), pre.mean, pre.std)


class SegmentationDataset:
    """``ds[i] -> (image (C, H, W) float32 normalised, mask (H, W) int64)`` at ``preprocess.size``.

    ``augment`` (an :class:`Augment`) is applied with a generator seeded by ``(seed, epoch, i)``, so runs
    are reproducible whatever the loader's worker count; call ``set_epoch(e)`` once per epoch.
    """

    def __init__(self, samples: Sequence[Sample], preprocess: Preprocess, mask: MaskSpec | None = None,
                 augment: Augment | None = None, seed: int = 0):
        if not samples:
            raise InputError("samples: got an empty list, expected at least one image/mask pair")
        self.samples = list(samples)
        self.preprocess = preprocess
        self.mask_spec = mask or MaskSpec()
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._cache: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample at full resolution: (image uint8 in ``preprocess.color``, mask (H, W) class indices)."""
        sample = self.samples[index]
        image = convert_color(load_image(sample.image), self.preprocess.color)
        mask = read_sample_mask(sample, self.mask_spec, image.shape[:2])
        if image.shape[:2] != mask.shape:
            raise InputError(
                f"mask of {sample.image.name}: size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from the "
                f"image's {image.shape[1]}x{image.shape[0]}; expected masks at the image's resolution"
            )
        return image, mask

    def _resized(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        cached = self._cache[index]
        if cached is None:
            cv2 = require("cv2", "resizing masks")
            image, mask = self.load_pair(index)
            height, width = self.preprocess.size
            image = resize_image(image, (height, width))
            mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
            cached = self._cache[index] = (image, mask)
        return cached

    def __getitem__(self, index: int):
        image, mask = self._resized(index)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, mask = self.augment(image, mask, rng)
        x = normalize(image, self.preprocess.mean, self.preprocess.std)
        return x, mask.astype(np.int64)
