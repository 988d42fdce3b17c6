"""Class-per-folder datasets: the folder names the class, its mask files only say where the object is.

Layout (BUSI and many medical/defect sets), for each class folder ``ROOT/<class>/``:

- ``images/X.png`` + ``masks/X_mask.png`` (separate sub-folders), or
- ``X.png`` + ``X_mask.png`` side by side (the mask suffix tells them apart).

Extra instances of one image (``X_mask_1.png``, ``X_mask_2.png``) are OR-ed into the same mask. Every
non-zero mask pixel gets the folder's class index; folders named in ``background`` (e.g. ``normal``)
hold images whose masks are all background (their mask files may be missing).

>>> from edgeseg.data.class_folders import class_folder_samples             # doctest: +SKIP
>>> samples, classes = class_folder_samples("busi", mask_suffix="_mask", background=["normal"])  # doctest: +SKIP
>>> classes                                      # ['background', 'benign', 'malignant']  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .folder import IMAGE_SUFFIXES, Sample
from .masks import MaskSpec, read_mask

LAYOUTS = ("pairs", "class-folders")


@dataclass(frozen=True)
class ClassSample(Sample):
    """A :class:`Sample` whose mask pixels take class ``label`` (0: the image is all background)."""

    label: int = 0
    folder: str = ""

    @property
    def name(self) -> str:
        """``<folder>/<file>``: unique across class folders that reuse file names."""
        return f"{self.folder}/{self.image.name}"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _mask_regex(stem: str, suffix: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(stem)}{re.escape(suffix)}(_\d+)?\.[A-Za-z]+$")


def _folder_pairs(folder: Path, suffix: str, allow_missing: bool) -> list[tuple[Path, tuple[Path, ...]]]:
    """(image, masks) pairs of one class folder, in either layout."""
    if (folder / "images").is_dir():
        images = _files(folder / "images")
        mask_dir = folder / "masks"
        masks = _files(mask_dir) if mask_dir.is_dir() else []
    else:
        is_mask = re.compile(rf"{re.escape(suffix)}(_\d+)?$")
        files = _files(folder)
        images = [p for p in files if not is_mask.search(p.stem)]
        masks = [p for p in files if is_mask.search(p.stem)]
    by_prefix: dict[str, list[Path]] = {}
    for m in masks:  # index masks by the part before the suffix
        cut = m.stem.rfind(suffix)
        if cut > 0:
            by_prefix.setdefault(m.stem[:cut], []).append(m)
    pairs, missing = [], []
    for image in images:
        pattern = _mask_regex(image.stem, suffix)
        found = tuple(sorted(m for m in by_prefix.get(image.stem, []) if pattern.match(m.name)))
        if not found and not allow_missing:
            missing.append(image.name)
        pairs.append((image, found))
    if missing:
        raise InputError(
            f"class folder {folder}: {len(missing)} image(s) have no mask named <stem>{suffix}.png, e.g. "
            f"{missing[:3]}; expected one per image (check --mask-suffix, or list the folder in --background)"
        )
    return pairs


def class_folder_samples(root: str | Path, mask_suffix: str = "_mask", background: Sequence[str] = ("normal",),
                         classes: Sequence[str] | None = None) -> tuple[list[ClassSample], list[str]]:
    """All samples under ``root`` and the class names (index 0 = ``"background"``).

    ``classes``: the class names in index order (``classes[0]`` is background; the others must be folder
    names); default ``["background"]`` + the sorted folder names not in ``background``.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data: got {str(root)!r}, expected an existing folder with one sub-folder per class")
    if not mask_suffix:
        raise InputError("mask_suffix: got an empty string, expected the mask name suffix, e.g. '_mask'")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(f"data: {root} has no sub-folders, expected one folder per class (e.g. benign/, malignant/)")
    unknown_bg = sorted(set(background) - set(folders))
    if unknown_bg:
        raise InputError(f"background: folder(s) {unknown_bg} not in {root}; expected some of {folders}")
    foreground = [f for f in folders if f not in set(background)]
    if classes is None:
        classes = ["background", *foreground]
    else:
        classes = list(classes)
        if sorted(classes[1:]) != sorted(foreground):
            raise InputError(f"classes: got {classes}, expected a background name followed by the class folders "
                             f"{foreground} (in the index order you want); folders in background: {list(background)}")
    index = {name: i for i, name in enumerate(classes) if i > 0}
    samples = []
    for folder in folders:
        label = index.get(folder, 0)
        for image, masks in _folder_pairs(root / folder, mask_suffix, allow_missing=label == 0):
            samples.append(ClassSample(image, masks, label, folder))
    if not samples:
        raise InputError(f"data: no images with suffixes {IMAGE_SUFFIXES} in the class folders of {root}")
    return samples, classes


def interleave(samples: Sequence[ClassSample]) -> list[ClassSample]:
    """The samples taken from each folder in turn (first of each, second of each, ...), so that the first
    N of the result cover every class."""
    folders: dict[str, list[ClassSample]] = {}
    for s in samples:
        folders.setdefault(s.folder, []).append(s)
    queues = list(folders.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def read_sample_mask(sample: Sample, spec: MaskSpec, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The (H, W) class-index mask of any sample: class folders OR their files into the folder's class."""
    if not isinstance(sample, ClassSample):
        return read_mask(sample.masks, spec)
    if not sample.masks:
        if shape is None:
            raise InputError(f"{sample.name}: has no mask file and no image size was given")
        return np.zeros(shape, np.uint8)
    union = read_mask(sample.masks, MaskSpec("binary", threshold=spec.threshold, channel=spec.channel))
    return (union * np.uint8(sample.label)).astype(np.uint8)
