"""Pair image files with their mask files by name, and split them by a group key without leakage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    """One training example: an image and the mask file(s) that label it (several are OR-ed)."""

    image: Path
    masks: tuple[Path, ...]

    @property
    def name(self) -> str:
        return self.image.name


def _list_images(folder: Path, image_glob: str) -> list[Path]:
    return sorted(p for p in folder.glob(image_glob) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def pair_folder(
    image_dir: str | Path,
    mask_dir: str | Path,
    image_glob: str = "*",
    mask_pattern: str = "{stem}.png",
    allow_unpaired_masks: bool = False,
) -> list[Sample]:
    """Pair every image in ``image_dir`` with the masks in ``mask_dir`` matching ``mask_pattern``.

    ``mask_pattern`` is a glob formatted with the image's ``{stem}`` and ``{name}``: ``"{stem}.png"`` pairs
    ``a.jpg`` with ``a.png``; ``"{stem}_*.png"`` pairs it with ``a_head.png`` and ``a_body.png`` (OR-ed).
    An image without a mask, or (unless ``allow_unpaired_masks``) a mask no image claims, is an InputError.
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    for field, folder in (("image_dir", image_dir), ("mask_dir", mask_dir)):
        if not folder.is_dir():
            raise InputError(f"{field}: got {str(folder)!r}, expected an existing folder")
    images = _list_images(image_dir, image_glob)
    if not images:
        raise InputError(
            f"image_dir: no images matching {image_glob!r} with a suffix in {IMAGE_SUFFIXES} in {image_dir}"
        )
    samples, missing, claimed = [], [], set()
    for image in images:
        pattern = mask_pattern.format(stem=image.stem, name=image.name)
        masks = tuple(sorted(p for p in mask_dir.glob(pattern) if p.is_file()))
        if not masks:
            missing.append(f"{image.name} (looked for {pattern!r})")
            continue
        claimed.update(masks)
        samples.append(Sample(image, masks))
    if missing:
        raise InputError(
            f"unpaired images: {len(missing)} image(s) in {image_dir} have no mask in {mask_dir}, e.g. "
            f"{missing[:3]}; expected every image to have a mask matching mask_pattern={mask_pattern!r}"
        )
    if not allow_unpaired_masks:
        orphans = sorted(p.name for p in mask_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                         and p not in claimed)
        if orphans:
            raise InputError(
                f"unpaired masks: {len(orphans)} mask(s) in {mask_dir} belong to no image, e.g. {orphans[:3]}; "
                "expected each mask to match an image (fix mask_pattern, or allow_unpaired_masks=True)"
            )
    return samples


def group_of(name: str, group_regex: str) -> str:
    """The group key of a file name: the first capture group of ``group_regex`` (or the whole match)."""
    match = re.search(group_regex, name)
    if match is None:
        raise InputError(f"group_regex: {group_regex!r} does not match file {name!r}; expected it to match every file")
    return match.group(1) if match.groups() else match.group(0)


def read_file_list(path: str | Path) -> list[str]:
    """File names, one per line, of a split list such as ``benchmarks/hc18_split.py`` writes (``#`` lines skipped)."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def split_by_group(
    samples: list[Sample], group_regex: str | None, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split into (train, val) so that all files of one group land on the same side.

    Groups (e.g. the patient prefix ``r"^(\\d{3})_"`` of HC18) are shuffled with ``seed`` and the first
    ``round(val_fraction * n_groups)`` go to validation. ``group_regex=None`` makes each file its own group.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction: got {val_fraction!r}, expected a number in [0, 1)")
    keys = [group_of(s.name, group_regex) if group_regex else s.name for s in samples]
    groups = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(groups))
    n_val = round(val_fraction * len(groups))
    if val_fraction > 0 and n_val == 0 and len(groups) > 1:
        n_val = 1
    val_groups = {groups[i] for i in order[:n_val]}
    train = [s for s, k in zip(samples, keys) if k not in val_groups]
    val = [s for s, k in zip(samples, keys) if k in val_groups]
    return train, val
