"""Every ``cp.X.Y`` / ``cupy.X.Y`` the product code names exists on the real ``cupy`` module.

CuPy imports and exposes its whole API without a driver, so this needs no GPU. It catches names that
a fake CuPy in an offline test can invent (e.g. ``cupy.cuda.runtime.getLastError``, which CuPy lacks).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgeseg", "plugins", "export")
# `cp.` / `cupy.` not preceded by a name character or a dot (so `self.cp.x` and `np.cupy` are left out).
NAME = re.compile(r"(?<![\w.])(cp|cupy)((?:\.[A-Za-z_]\w*)+)")


def _uses() -> dict[str, list[str]]:
    uses: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                for match in NAME.finditer(line):
                    uses.setdefault("cupy" + match.group(2), []).append(f"{path.relative_to(ROOT)}:{lineno}")
    return uses


def test_product_code_names_cupy():
    assert "cupy.cuda.ExternalStream" in _uses()  # the walk sees the code it is meant to check


def test_every_cupy_name_exists():
    cupy = pytest.importorskip("cupy")
    missing = []
    for dotted, where in sorted(_uses().items()):
        obj = cupy
        for part in dotted.split(".")[1:]:
            if not hasattr(obj, part):
                missing.append(f"{dotted} (no {part!r}; used at {', '.join(where)})")
                break
            obj = getattr(obj, part)
    assert not missing, "names the real cupy does not have:\n" + "\n".join(missing)
