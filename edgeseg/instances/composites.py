"""Multi-instance canvases from real single-instance scans, generated on the fly (never stored).

A composite tiles 2 to 4 real scans (each resized to fit one cell of a 2 x 2 grid, at a random offset in its
cell; a larger ``grid`` holds more) onto one black canvas; every scan's head mask is one instance. Canvas ``i`` of
a dataset with seed ``s`` is a pure function of ``(s, i)``: the same seed regenerates the same canvases, so nothing
is written to disk. Build the validation composites from validation patients only (``_split`` of the training
config).

``overlap > 0`` makes heads overlap: each tile is the fitted scan cropped to its head (plus a margin; heads keep
the scale of tiled composites) and the grid is packed so that neighbouring tiles overlap by that fraction. Tiles
are pasted in order: a later head hides what is under it, a later tile's background only fills empty canvas. Each
instance's mask is its visible part, and ``target["order"]`` records the paste order (0 = bottom).

>>> ds = CompositeDataset(val_items, preprocess, length=64, seed=1)   # doctest: +SKIP
>>> image, target = ds[0]     # (1, H, W) float32, target with 2-4 head instances         # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from .._deps import require
from ..artifact import Preprocess
from ..data.dataset import preprocess_image
from ..errors import InputError
from .data import InstanceItem, boxes_from_masks, target_from_masks


def _fit(image: np.ndarray, masks: np.ndarray, cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize a gray scan (H, W) and its masks (G, H, W) to fit ``cell`` (h, w), keeping the aspect ratio."""
    cv2 = require("cv2", "composing instance canvases")
    scale = min(cell[0] / image.shape[0], cell[1] / image.shape[1])
    w, h = max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return small, np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in masks])


def _head_crop(image: np.ndarray, masks: np.ndarray, boxes: np.ndarray, margin: float):
    """Crop a scan and its masks to the union of the instance boxes, grown by ``margin`` of their size."""
    x1, y1 = boxes[:, :2].min(0)
    x2, y2 = boxes[:, 2:].max(0)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    x1, y1 = max(int(x1 - dx), 0), max(int(y1 - dy), 0)
    x2, y2 = min(int(np.ceil(x2 + dx)), image.shape[1]), min(int(np.ceil(y2 + dy)), image.shape[0])
    return image[y1:y2, x1:x2], masks[:, y1:y2, x1:x2]


def compose_tiles(tiles: list[tuple[np.ndarray, np.ndarray]], canvas: tuple[int, int],
                  rng: np.random.Generator, grid: tuple[int, int] = (2, 2),
                  overlap: float = 0.0) -> tuple[np.ndarray, dict]:
    """Place (gray scan (h, w) uint8, masks (G, h, w)) tiles into distinct random cells of a ``grid`` (rows, cols)
    over a black ``canvas`` (H, W), each at a random offset in its cell. Returns (canvas uint8, target with one
    class-1 instance per mask).

    ``overlap > 0``: the grid is packed so that neighbouring tiles overlap by ``overlap`` of the largest tile's
    height / width (pitch = (1 - overlap) x that size), tiles centred on their cells and the packed grid at a
    random place on the canvas; later heads occlude earlier ones, masks are the visible parts and
    ``target["order"]`` is each instance's paste index (0 = bottom)."""
    rows, cols = grid
    if not 1 <= len(tiles) <= rows * cols:
        raise InputError(f"tiles: got {len(tiles)}, expected 1 to {rows * cols} (one per cell of the "
                         f"{rows} x {cols} grid)")
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"overlap: got {overlap!r}, expected a fraction of a tile in [0, 1)")
    h, w = canvas
    ch, cw = h // rows, w // cols
    for tile, _ in tiles:
        if tile.shape[0] > ch or tile.shape[1] > cw:
            raise InputError(f"tile: got {tile.shape[0]}x{tile.shape[1]}, expected at most the cell size {ch}x{cw}")
    if overlap > 0:
        big_h, big_w = max(t.shape[0] for t, _ in tiles), max(t.shape[1] for t, _ in tiles)
        pitch_y, pitch_x = big_h * (1 - overlap), big_w * (1 - overlap)
        top = int(rng.integers(0, h - int(pitch_y * (rows - 1) + big_h) + 1))
        left = int(rng.integers(0, w - int(pitch_x * (cols - 1) + big_w) + 1))
    image = np.zeros((h, w), np.uint8)
    covered = np.zeros((h, w), bool)
    masks, order = [], []
    for index, (cell, (tile, tile_masks)) in enumerate(zip(rng.permutation(rows * cols)[: len(tiles)], tiles)):
        th, tw = tile.shape
        if overlap == 0:
            y = (cell // cols) * ch + int(rng.integers(0, ch - th + 1))
            x = (cell % cols) * cw + int(rng.integers(0, cw - tw + 1))
        else:
            y = min(top + int(round((cell // cols) * pitch_y + (big_h - th) / 2)), h - th)
            x = min(left + int(round((cell % cols) * pitch_x + (big_w - tw) / 2)), w - tw)
        window = (slice(y, y + th), slice(x, x + tw))
        head = tile_masks.any(0)
        paste = head | ~covered[window]
        image[window][paste] = tile[paste]
        covered[window] = True
        for m in masks:
            m[window][head] = 0  # hidden under this head
        for m in tile_masks:
            full = np.zeros((h, w), np.uint8)
            full[window] = m
            masks.append(full)
            order.append(index)
    target = target_from_masks(np.stack(masks), np.ones(len(masks), np.int64))
    if overlap > 0:
        target["order"] = np.asarray(order, np.int64)[[m.any() for m in masks]]
    return image, target


class CompositeDataset:
    """``ds[i] -> (image (1, H, W) float32 normalised, target)``: canvas ``i`` of seed ``seed``, 2..4 real scans.

    Scans are decoded once and kept at cell size (canvas / ``grid``), so memory stays small. ``flip`` mirrors
    each tile at random (part of the same seeded draw). ``grid=(2, 4)`` allows up to 8 heads per canvas.
    ``overlap > 0`` crops each fitted scan to its head (``margin`` of the head box around it) and packs the
    tiles so that neighbouring heads overlap (see :func:`compose_tiles`); the targets then carry ``order``.
    """

    def __init__(self, items: list[InstanceItem], preprocess: Preprocess, length: int, seed: int = 0,
                 heads: tuple[int, int] = (2, 4), flip: bool = False, grid: tuple[int, int] = (2, 2),
                 overlap: float = 0.0, margin: float = 0.1):
        if len(items) < heads[1]:
            raise InputError(f"items: got {len(items)} scans, expected at least {heads[1]} to draw distinct ones")
        if not 1 <= heads[0] <= heads[1] <= grid[0] * grid[1]:
            raise InputError(f"heads: got {heads}, expected 1 <= min <= max <= {grid[0] * grid[1]} (grid {grid})")
        if length < 1:
            raise InputError(f"length: got {length}, expected >= 1 composites")
        self.preprocess, self.length, self.seed, self.heads, self.flip = preprocess, length, seed, heads, flip
        if not 0.0 <= overlap < 1.0:
            raise InputError(f"overlap: got {overlap!r}, expected a fraction of a tile in [0, 1)")
        self.grid, self.overlap = tuple(grid), float(overlap)
        h, w = (int(v) for v in preprocess.size)
        self.canvas = (h, w)
        self.tiles = []
        for item in items:
            image, target = item.load()
            if image.ndim == 3:
                image = image[..., 0]
            tile = _fit(image, target["masks"], (h // grid[0], w // grid[1]))
            if overlap > 0:  # the head at the scale of a tiled composite, cut out of its scan
                tile = _head_crop(*tile, boxes_from_masks(tile[1]), margin)
            self.tiles.append(tile)

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
        return compose_tiles(tiles, self.canvas, rng, self.grid, self.overlap)

    def __getitem__(self, index: int):
        canvas, target = self.canvas_at(index)
        return preprocess_image(canvas, self.preprocess), target
