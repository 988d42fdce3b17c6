"""HC18 specifics: head-size bands and a validation split stratified by head size, grouped by patient.

HC18 numbers patients by gestational age, so a split that only shuffles patients can leave the few
late-pregnancy heads (> 220 mm) almost absent from validation. :func:`split_stratified` shuffles
patients within each head-size band and takes the same fraction of every band.

>>> from edgeseg.data.hc18 import hc18_split                                  # doctest: +SKIP
>>> train, val = hc18_split("../shared/data/hc18", val_fraction=0.2, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .folder import Sample, group_of, pair_folder, read_file_list  # noqa: F401 (read_file_list: re-exported)

GROUP_REGEX = r"^(\d{3})_"
#: (label, low, high) in mm: first/second trimester, late second, third trimester.
BANDS = (("<150", 0.0, 150.0), ("150-220", 150.0, 220.0), (">220", 220.0, math.inf))


def band_of(hc_mm: float) -> str:
    """The label of the head-size band that ``hc_mm`` falls in (low edge inclusive)."""
    for label, low, high in BANDS:
        if low <= hc_mm < high:
            return label
    raise InputError(f"hc_mm: got {hc_mm!r}, expected a non-negative head circumference in mm")


def split_stratified(samples: list[Sample], values: Mapping[str, float], edges: Sequence[float],
                     group_regex: str | None, val_fraction: float = 0.2, seed: int = 0,
                     val_pool: Collection[str] | None = None) -> tuple[list[Sample], list[Sample]]:
    """(train, val) with ``round(val_fraction * groups)`` groups of every stratum in validation.

    ``values`` maps file name -> a number (HC in mm); a group (patient) takes its largest value, and
    ``edges`` cut values into strata (``[150, 220]``: < 150, 150-220, >= 220). ``val_pool``: if given,
    only these groups may go to validation (e.g. patients an earlier model never trained on); the count
    per stratum stays a fraction of all its groups.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction: got {val_fraction!r}, expected a number in [0, 1)")
    missing = [s.name for s in samples if s.name not in values]
    if missing:
        raise InputError(f"values: none for {len(missing)} file(s), e.g. {missing[:3]}; expected one per file")
    keys = [group_of(s.name, group_regex) if group_regex else s.name for s in samples]
    top: dict[str, float] = {}
    for sample, key in zip(samples, keys):
        top[key] = max(top.get(key, -math.inf), float(values[sample.name]))
    stratum = {k: int(np.searchsorted(np.asarray(edges, float), v, side="right")) for k, v in top.items()}
    rng = np.random.default_rng(seed)
    val_groups: set[str] = set()
    for index in range(len(edges) + 1):
        groups = sorted(k for k, s in stratum.items() if s == index)
        n_val = round(val_fraction * len(groups))
        if val_fraction > 0 and n_val == 0 and len(groups) > 1:
            n_val = 1
        pool = [g for g in groups if val_pool is None or g in val_pool]
        if len(pool) < n_val:
            raise InputError(f"val_pool: stratum {index} needs {n_val} validation groups, the pool holds "
                             f"{len(pool)}; expected a larger pool or a smaller val_fraction")
        val_groups.update(pool[i] for i in rng.permutation(len(pool))[:n_val])
    train = [s for s, k in zip(samples, keys) if k not in val_groups]
    val = [s for s, k in zip(samples, keys) if k in val_groups]
    return train, val


def hc18_split(data: str | Path, val_fraction: float = 0.2, seed: int = 0,
               val_pool: Collection[str] | None = None) -> tuple[list[Sample], list[Sample]]:
    """HC18's (train, val) pairs, stratified by head-size band (:data:`BANDS`) and grouped by patient."""
    from ..apps.ultrasound import read_hc_csv

    data = Path(data)
    samples = pair_folder(data / "images", data / "masks")
    reference = read_hc_csv(data / "pixel_size_and_hc.csv")
    values = {name: ref.hc_mm for name, ref in reference.items()}
    edges = [low for _, low, _ in BANDS[1:]]
    return split_stratified(samples, values, edges, GROUP_REGEX, val_fraction, seed, val_pool)
