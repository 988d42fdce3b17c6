"""benchmarks/instances_compare.py --dataset busi: train, export and score each method on a BUSI-layout folder."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.data.folder import Sample, split_by_group

REPO = Path(__file__).resolve().parents[1]


def _fake_busi(root: Path, n: int = 10) -> Path:
    """A BUSI-layout folder of synthetic scans: bright ellipses on noise, one or two lesions per image."""
    rng = np.random.default_rng(0)
    for folder in ("benign", "malignant"):
        (root / folder / "images").mkdir(parents=True)
        (root / folder / "masks").mkdir(parents=True)
        for i in range(n):
            name = f"{folder} ({i + 1})"
            image = rng.integers(0, 60, (80, 96), dtype=np.uint8)
            for k in range(1 + i % 2):
                mask = np.zeros((80, 96), np.uint8)
                cv2.ellipse(mask, (24 + 48 * k, 40), (14, 10), 0, 0, 360, 255, -1)
                image[mask > 0] = 200
                cv2.imwrite(str(root / folder / "masks" / f"{name}_mask{'' if k == 0 else f'_{k}'}.png"), mask)
            cv2.imwrite(str(root / folder / "images" / f"{name}.png"), image)
    return root


@pytest.mark.slow
def test_busi_rows_train_each_method_and_score_the_split_by_image(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("pycocotools")
    sys.path.insert(0, str(REPO / "benchmarks"))
    import instances_compare

    data = _fake_busi(tmp_path / "busi")
    out, work = tmp_path / "results", tmp_path / "work"
    assert instances_compare.main(["--dataset", "busi", "--data", str(data), "--methods", "maskrcnn",
                                   "--max-steps", "2", "--size", "64", "--work", str(work), "--out", str(out)]) == 0
    (row,) = json.loads((out / "compare_busi.json").read_text())["rows"]
    assert row["method"] == "maskrcnn" and row["steps"] == 2 and row["images"] == 4  # 20 images, 20 % by image
    assert 0.0 <= row["mask_AP"] <= 1.0 and row["params"] > 0
    _, val = split_by_group([Sample(p, ()) for p in sorted(data.glob("*/images/*.png"))], None, 0.2, 0)
    two = [s.name for s in val if int(s.name.split("(")[1].split(")")[0]) % 2 == 0]  # (2), (4)... have 2 lesions
    assert row["multi_lesion_images"] == len(two)
    assert ("multi_mask_AP" in row) == bool(two)
    assert (work / "busi_maskrcnn.onnx").exists() and not list(out.glob("*.safetensors"))
    assert "| maskrcnn | 64 |" in (out / "compare_busi.md").read_text()
