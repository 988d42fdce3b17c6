"""Paired augmentation with OpenCV/NumPy: one geometric warp for image and mask, photometric on the image.

The geometric part (flip, scale/crop, small rotation, shift) is a single affine matrix applied with
bilinear interpolation to the image and nearest-neighbour to the mask, so labels never blend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._deps import require


@dataclass(frozen=True)
class Augment:
    """Random augmentation parameters; ``Augment()(image, mask, rng)`` returns a new (image, mask).

    ``scale`` > 1 zooms in (a random crop), < 1 zooms out (padding with ``image_fill`` / ``mask_fill``).
    ``rotate`` is the maximum absolute angle in degrees, ``shift`` the maximum shift as a fraction of size.
    ``brightness`` adds up to +-brightness*255, ``contrast`` multiplies by 1 +- contrast.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    scale: tuple[float, float] = (0.85, 1.2)
    rotate: float = 15.0
    shift: float = 0.08
    brightness: float = 0.15
    contrast: float = 0.2
    image_fill: int = 0
    mask_fill: int = 0

    def matrix(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """The 2x3 affine matrix of one random draw (flip, then rotate/scale about the centre, then shift)."""
        sx = -1.0 if rng.random() < self.hflip else 1.0
        sy = -1.0 if rng.random() < self.vflip else 1.0
        s = math.exp(rng.uniform(math.log(self.scale[0]), math.log(self.scale[1])))
        a = math.radians(rng.uniform(-self.rotate, self.rotate))
        tx, ty = rng.uniform(-self.shift, self.shift, size=2) * (width, height)
        cos, sin = math.cos(a) * s, math.sin(a) * s
        linear = np.array([[cos, -sin], [sin, cos]]) @ np.diag([sx, sy])
        centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        offset = centre - linear @ centre + (tx, ty)
        return np.hstack([linear, offset[:, None]])

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        """``image`` (H, W) or (H, W, C) uint8, ``mask`` (H, W) integer -> augmented copies, same shapes."""
        cv2 = require("cv2", "augmentation")
        height, width = mask.shape
        m = self.matrix(height, width, rng)
        image = cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=self.image_fill)
        mask = cv2.warpAffine(mask, m, (width, height), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=self.mask_fill)
        gain = 1.0 + rng.uniform(-self.contrast, self.contrast)
        bias = rng.uniform(-self.brightness, self.brightness) * 255.0
        mean = float(image.mean())
        image = np.clip((image.astype(np.float32) - mean) * gain + mean + bias, 0, 255).astype(np.uint8)
        return image, mask
