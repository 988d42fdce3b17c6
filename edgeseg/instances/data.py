"""Instance datasets: COCO JSON (polygons and RLE, via pycocotools), instance-PNG folders, HC18 heads.

A target is a dict of NumPy arrays for one image: ``boxes`` (G, 4) float32 xyxy (pixel edges: a mask
covering columns 3..7 has x1=3, x2=8), ``labels`` (G,) int64 >= 1, ``masks`` (G, H, W) uint8 {0, 1}.

>>> items = hc18_instances("../shared/data/hc18")                     # doctest: +SKIP
>>> ds = InstanceDataset(items, Preprocess(size=(256, 256), color="gray", mean=[0.2], std=[0.2]))  # doctest: +SKIP
>>> image, target = ds[0]    # (1, 256, 256) float32, dict of arrays at 256x256             # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._deps import require
from ..artifact import Preprocess
from ..data.dataset import load_image, preprocess_image
from ..data.folder import pair_folder
from ..data.masks import read_label_image, read_mask
from ..errors import InputError


@dataclass(frozen=True)
class InstanceItem:
    """One image file and a function-free description of its instances (decoded on load)."""

    image: Path
    masks: np.ndarray | None = None      # (G, H, W) uint8, already decoded (COCO)
    labels: np.ndarray | None = None     # (G,) int64
    instance_png: Path | None = None     # or a PNG whose pixel value k > 0 is instance k
    label: int = 1                       # class of every instance of an instance PNG or mask file
    mask_files: tuple[Path, ...] = ()    # or one binary mask file per instance (BUSI), decoded on load

    def load(self) -> tuple[np.ndarray, dict]:
        """(image (H, W[, 3]) uint8, target dict at the image's size)."""
        image = load_image(self.image)
        if self.instance_png is not None:
            masks = instance_masks_from_png(self.instance_png)
            labels = np.full(masks.shape[0], self.label, np.int64)
        elif self.mask_files:
            masks = np.stack([_binary_mask(f) for f in self.mask_files])
            labels = np.full(masks.shape[0], self.label, np.int64)
        else:
            masks, labels = self.masks, self.labels
        if masks.shape[1:] != image.shape[:2]:
            raise InputError(f"masks of {self.image.name}: got size {masks.shape[1:]}, expected the image size "
                             f"{image.shape[:2]}")
        return image, target_from_masks(masks, labels)


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """(G, H, W) {0, 1} -> (G, 4) float32 xyxy tight boxes (pixel edges); an empty mask gives zeros."""
    boxes = np.zeros((masks.shape[0], 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if ys.size:
            boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return boxes


def target_from_masks(masks: np.ndarray, labels: np.ndarray) -> dict:
    """Drop empty masks and build the target dict (boxes from the masks)."""
    masks = (np.asarray(masks) > 0).astype(np.uint8)
    keep = masks.reshape(masks.shape[0], -1).any(1)
    masks, labels = masks[keep], np.asarray(labels, np.int64)[keep]
    return {"boxes": boxes_from_masks(masks), "labels": labels, "masks": masks}


def instance_masks_from_png(path: Path) -> np.ndarray:
    """A PNG whose pixel value k > 0 marks instance k (first channel if colour) -> (G, H, W) uint8."""
    label = read_label_image(path)
    ids = [int(v) for v in np.unique(label) if v > 0]
    return np.stack([label == k for k in ids]).astype(np.uint8) if ids else np.zeros((0, *label.shape), np.uint8)


def _binary_mask(path: Path) -> np.ndarray:
    """A mask file (any value > 0 is foreground, first channel if colour, any bit depth) -> (H, W) bool."""
    return read_mask(path).astype(bool)


def instance_png_folder(image_dir, mask_dir, mask_pattern: str = "{stem}.png", label: int = 1) -> list[InstanceItem]:
    """Pair images with instance PNGs (value k > 0 = instance k, all of class ``label``)."""
    return [InstanceItem(s.image, instance_png=s.masks[0], label=label)
            for s in pair_folder(image_dir, mask_dir, mask_pattern=mask_pattern)]


def hc18_instances(root) -> list[InstanceItem]:
    """HC18 (``root/images``, ``root/masks``): each head mask is one instance of class 1 ("head")."""
    root = Path(root)
    return [InstanceItem(s.image, instance_png=s.masks[0], label=1)
            for s in pair_folder(root / "images", root / "masks")]


def coco_instances(annotation_json, image_dir) -> tuple[list[InstanceItem], list[str]]:
    """Read a COCO instances JSON (polygon or RLE segmentations) -> (items, class names with "background"
    first). COCO category ids are mapped to contiguous labels 1..C in id order; crowd annotations are skipped."""
    coco_mod = require("pycocotools.coco", "reading COCO annotations")
    coco = coco_mod.COCO(str(annotation_json))
    cat_ids = sorted(coco.getCatIds())
    to_label = {c: i + 1 for i, c in enumerate(cat_ids)}
    names = ["background"] + [coco.loadCats(c)[0]["name"] for c in cat_ids]
    items = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a.get("iscrowd", 0)]
        h, w = info["height"], info["width"]
        masks = np.stack([coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        labels = np.array([to_label[a["category_id"]] for a in anns], np.int64)
        items.append(InstanceItem(Path(image_dir) / info["file_name"], masks=masks, labels=labels))
    return items, names


def resize_target(target: dict, size: tuple[int, int]) -> dict:
    """Resize masks (nearest) to ``size`` (H, W) and recompute the boxes from them."""
    cv2 = require("cv2", "resizing masks")
    h, w = size
    masks = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in target["masks"]]) \
        if len(target["masks"]) else np.zeros((0, h, w), np.uint8)
    return target_from_masks(masks, target["labels"])


class InstanceDataset:
    """``ds[i] -> (image (C, H, W) float32 normalised, target dict at preprocess.size)``; decoded once and kept.

    ``flip=True`` mirrors each image horizontally with probability 0.5 (seeded by ``seed`` and the call count).
    """

    def __init__(self, items: list[InstanceItem], preprocess: Preprocess, flip: bool = False, seed: int = 0):
        if not items:
            raise InputError("items: got an empty list, expected at least one image")
        self.preprocess, self.flip = preprocess, flip
        self.rng = np.random.default_rng(seed)
        self.cache = []
        for item in items:
            image, target = item.load()
            self.cache.append((preprocess_image(image, preprocess), resize_target(target, tuple(preprocess.size))))

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int):
        image, target = self.cache[index]
        if self.flip and self.rng.random() < 0.5:
            w = image.shape[-1]
            boxes = target["boxes"].copy()
            boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
            return (np.ascontiguousarray(image[..., ::-1]),
                    {"boxes": boxes, "labels": target["labels"], "masks": np.ascontiguousarray(target["masks"][..., ::-1])})
        return image, target


def compose_instances(pieces: list[tuple[np.ndarray, np.ndarray]], canvas: tuple[int, int],
                      rng: np.random.Generator, background: int = 0) -> tuple[np.ndarray, dict]:
    """Paste (image crop (h, w) uint8, mask crop (h, w) {0, 1}) pieces side by side into one gray canvas
    (H, W) without overlap: piece i goes into the i-th of ``len(pieces)`` equal vertical strips, at a random
    vertical offset. Returns (canvas uint8, target with one instance per piece, class 1)."""
    h, w = canvas
    strip = w // len(pieces)
    image = np.full((h, w), background, np.uint8)
    masks = np.zeros((len(pieces), h, w), np.uint8)
    for i, (crop, mask) in enumerate(pieces):
        ch, cw = crop.shape[:2]
        if ch > h or cw > strip:
            raise InputError(f"pieces[{i}]: got a {ch}x{cw} crop, expected at most {h}x{strip} to fit its strip")
        y = int(rng.integers(0, h - ch + 1))
        x = i * strip + int(rng.integers(0, strip - cw + 1))
        image[y:y + ch, x:x + cw] = crop
        masks[i, y:y + ch, x:x + cw] = mask > 0
    return image, target_from_masks(masks, np.ones(len(pieces), np.int64))


def busi_instances(root, folders=("benign", "malignant")) -> list[InstanceItem]:
    """BUSI (``root/<folder>/images/<name>.png``, masks ``<name>_mask.png``, ``<name>_mask_1.png``, ...): each mask
    file is one lesion instance of class 1; images whose masks are all empty are left out. Masks are decoded on
    ``load()``, not kept. Research use only: never ship BUSI or a model trained on it."""
    items = []
    for folder in folders:
        images = sorted((Path(root) / folder / "images").glob("*.png"))
        if not images:
            raise InputError(f"BUSI folder {Path(root) / folder / 'images'}: got no .png images, expected the "
                             f"layout of ../shared/data/busi/README.md")
        for path in images:
            files = tuple(sorted((Path(root) / folder / "masks").glob(f"{path.stem}_mask*.png")))
            if any(_binary_mask(f).any() for f in files):  # decoded once to check, then dropped
                items.append(InstanceItem(path, mask_files=files, label=1))
    return items
