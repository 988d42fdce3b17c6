"""Multi-instance canvases from real single-instance scans, generated on the fly (never stored).

A composite tiles 2 to 4 real scans (each resized to fit one cell of a 2 x 2 grid, at a random offset in its
cell; a larger ``grid`` holds more) onto one black canvas; every scan's head mask is one instance. Canvas ``i`` of a dataset with seed ``s``
is a pure function of ``(s, i)``: the same seed regenerates the same canvases, so nothing is written to disk.
Build the validation composites from validation patients only (``_split`` of the training config).

>>> ds = CompositeDataset(val_items, preprocess, length=64, seed=1)   # doctest: +SKIP
>>> image, target = ds[0]     # (1, H, W) float32, target with 2-4 head instances         # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from .._deps import require
from ..artifact import Preprocess
from ..data.dataset import preprocess_image
from ..errors import InputError
from .data import InstanceItem, target_from_masks


def _fit(image: np.ndarray, masks: np.ndarray, cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize a gray scan (H, W) and its masks (G, H, W) to fit ``cell`` (h, w), keeping the aspect ratio."""
    cv2 = require("cv2", "composing instance canvases")
    scale = min(cell[0] / image.shape[0], cell[1] / image.shape[1])
    w, h = max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return small, np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in masks])


def compose_tiles(tiles: list[tuple[np.ndarray, np.ndarray]], canvas: tuple[int, int],
                  rng: np.random.Generator, grid: tuple[int, int] = (2, 2)) -> tuple[np.ndarray, dict]:
    """Place (gray scan (h, w) uint8, masks (G, h, w)) tiles into distinct random cells of a ``grid`` (rows, cols)
    over a black ``canvas`` (H, W), each at a random offset in its cell. Returns (canvas uint8, target with one
    class-1 instance per mask)."""
    rows, cols = grid
    if not 1 <= len(tiles) <= rows * cols:
        raise InputError(f"tiles: got {len(tiles)}, expected 1 to {rows * cols} (one per cell of the "
                         f"{rows} x {cols} grid)")
    h, w = canvas
    ch, cw = h // rows, w // cols
    image = np.zeros((h, w), np.uint8)
    masks = []
    for cell, (tile, tile_masks) in zip(rng.permutation(rows * cols)[: len(tiles)], tiles):
        th, tw = tile.shape
        if th > ch or tw > cw:
            raise InputError(f"tile: got {th}x{tw}, expected at most the cell size {ch}x{cw}")
        y = (cell // cols) * ch + int(rng.integers(0, ch - th + 1))
        x = (cell % cols) * cw + int(rng.integers(0, cw - tw + 1))
        image[y:y + th, x:x + tw] = tile
        for m in tile_masks:
            full = np.zeros((h, w), np.uint8)
            full[y:y + th, x:x + tw] = m
            masks.append(full)
    return image, target_from_masks(np.stack(masks), np.ones(len(masks), np.int64))


class CompositeDataset:
    """``ds[i] -> (image (1, H, W) float32 normalised, target)``: canvas ``i`` of seed ``seed``, 2..4 real scans.

    Scans are decoded once and kept at cell size (canvas / ``grid``), so memory stays small. ``flip`` mirrors
    each tile at random (part of the same seeded draw). ``grid=(2, 4)`` allows up to 8 heads per canvas.
    """

    def __init__(self, items: list[InstanceItem], preprocess: Preprocess, length: int, seed: int = 0,
                 heads: tuple[int, int] = (2, 4), flip: bool = False, grid: tuple[int, int] = (2, 2)):
        if len(items) < heads[1]:
            raise InputError(f"items: got {len(items)} scans, expected at least {heads[1]} to draw distinct ones")
        if not 1 <= heads[0] <= heads[1] <= grid[0] * grid[1]:
            raise InputError(f"heads: got {heads}, expected 1 <= min <= max <= {grid[0] * grid[1]} (grid {grid})")
        if length < 1:
            raise InputError(f"length: got {length}, expected >= 1 composites")
        self.preprocess, self.length, self.seed, self.heads, self.flip = preprocess, length, seed, heads, flip
        self.grid = tuple(grid)
        h, w = (int(v) for v in preprocess.size)
        self.canvas = (h, w)
        self.tiles = []
        for item in items:
            image, target = item.load()
            if image.ndim == 3:
                image = image[..., 0]
            self.tiles.append(_fit(image, target["masks"], (h // grid[0], w // grid[1])))

    def __len__(self) -> int:
        return self.length

    def canvas_at(self, index: int) -> tuple[np.ndarray, dict]:
        """(gray canvas (H, W) uint8, target) of composite ``index`` (deterministic in seed and index)."""
        if not 0 <= index < self.length:
            raise IndexError(f"composite index {index} out of range [0, {self.length})")
        rng = np.random.default_rng([self.seed, index])
        n = int(rng.integers(self.heads[0], self.heads[1] + 1))
        tiles = []
        for k in rng.choice(len(self.tiles), n, replace=False):
            tile, masks = self.tiles[int(k)]
            if self.flip and rng.random() < 0.5:
                tile, masks = tile[:, ::-1], masks[..., ::-1]
            tiles.append((tile, masks))
        return compose_tiles(tiles, self.canvas, rng, self.grid)

    def __getitem__(self, index: int):
        canvas, target = self.canvas_at(index)
        return preprocess_image(canvas, self.preprocess), target
