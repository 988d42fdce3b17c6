"""Choose the guided upsampler's radius, eps and blend on HC18 training images, then score the choice on validation.

The render-stage guided filter (``--refine guided``: :class:`edgeseg.refine.GuidedUpsampler` in
:class:`edgeseg.video.maskfilter.MaskFilter`) has three knobs that decide its masks: the box radius, the
regularisation ``eps`` and ``blend`` (the guided output only where the model is unsure, the bilinear one where it
is confident). The subsample stays at 2: at 1 the filter costs more than the 1.5 ms per 640x480 frame budget with
the motion stabiliser (benchmarks/video_quality.py). Each setting of the grid runs on the HC18 training images
(every file not in benchmarks/results/hc18_val_files.txt) through the same MaskFilter the CLI runs; the choice is
the highest mean boundary F (DAVIS tolerance) among the settings whose pooled mIoU is at least bilinear's. Then
bilinear, the current default and the choice are scored on the HC18 validation split and, with ``--busi MODEL``,
on the BUSI validation files of that model's sidecar (research-only data: only scores are written).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/guided_tuning.py --busi runs/busi_best/gcn_br.onnx
      (~20 min on a loaded 2-core machine)
Writes benchmarks/results/video_quality/guided_tuning.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import edgeseg  # noqa: E402
from edgeseg.metrics import ConfusionMatrix, boundary_f_score  # noqa: E402
from edgeseg.pipeline import Segmenter  # noqa: E402
from edgeseg.postprocess import low_resolution_planes  # noqa: E402
from edgeseg.refine import GuidedUpsampler  # noqa: E402
from edgeseg.video.maskfilter import MaskFilter  # noqa: E402
from hc18_flag_limit import training_files  # noqa: E402
from video_quality import HC18, HC18_MODEL, OUT, as_result, score_busi, score_hc18  # noqa: E402

SUBSAMPLE = 2
RADII = (2, 4)                    # at the model's output resolution (1 and 2 on the subsample-2 coefficient grid)
EPS = (1e-5, 1e-4, 1e-3, 1e-2)
BLENDS = (None, 0.5, 1.0)


def name_of(up: GuidedUpsampler) -> str:
    return f"radius {up.radius}, eps {up.eps:g}, blend {up.blend}"


def training_names(limit: int | None) -> list[str]:
    names = sorted(training_files(HC18, REPO / "benchmarks" / "results" / "hc18_val_files.txt"))
    return names[: limit or None]


def sweep(names: list[str], grid: list[GuidedUpsampler]) -> list[dict]:
    """Boundary F (mean over images) and pooled mIoU of bilinear and every grid setting on ``names``."""
    from edgeseg.data import MaskSpec, load_image, read_mask

    segmenter = Segmenter(HC18_MODEL, threads=1)
    filters = {"bilinear": None, **{name_of(up): MaskFilter("none", up) for up in grid}}
    bf = {k: [] for k in filters}
    cm = {k: ConfusionMatrix(2) for k in filters}
    t0 = time.perf_counter()
    try:
        for n, name in enumerate(names):
            image = load_image(HC18 / "images" / name)
            truth = read_mask(HC18 / "masks" / name, MaskSpec("binary")).astype(np.uint8)
            result = segmenter(image)
            planes, frame_hw, binary = low_resolution_planes(result)
            assert binary, "the HC18 model is two-class"
            for key, mask_filter in filters.items():
                labels = result.labels if mask_filter is None else \
                    mask_filter(image, as_result(planes[0].copy(), frame_hw)).labels
                bf[key].append(boundary_f_score(labels, truth))
                cm[key].update(labels, truth)
            if n % 50 == 0:
                print(f"{n}/{len(names)} images, {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        segmenter.close()
    return [{"setting": k, "boundary_f": round(float(np.nanmean(bf[k])), 5), "mean_iou": round(cm[k].mean_iou, 5)}
            for k in filters]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-limit", type=int, default=None, help="HC18 training images (default all)")
    parser.add_argument("--busi", type=Path, default=None, help="a BUSI model to score the choice on (validation)")
    parser.add_argument("--busi-data", type=Path, default=Path("/work/shared/data/busi"), help="BUSI root folder")
    parser.add_argument("--out", type=Path, default=OUT / "guided_tuning.json")
    args = parser.parse_args(argv)
    edgeseg.tune_process()
    grid = [GuidedUpsampler(r, e, subsample=SUBSAMPLE, blend=b) for r, e, b in itertools.product(RADII, EPS, BLENDS)]
    names = training_names(args.train_limit)
    rows = sweep(names, grid)
    bilinear = rows[0]
    allowed = [r for r in rows[1:] if r["mean_iou"] >= bilinear["mean_iou"]]
    if not allowed:
        print("no setting keeps bilinear's mIoU on the training images")
        return 1
    best = max(allowed, key=lambda r: r["boundary_f"])
    chosen = grid[rows.index(best) - 1]
    default = MaskFilter("none", "guided").upsampler
    print(f"training ({len(names)} images): bilinear {bilinear}; chosen {best}", flush=True)
    refiners = {"bilinear": None, f"default ({name_of(default)})": "guided", f"chosen ({name_of(chosen)})": chosen}
    report = {"training_images": len(names), "subsample": SUBSAMPLE,
              "rule": "highest boundary F among settings with mIoU >= bilinear (training images)",
              "training": rows, "chosen": {"radius": chosen.radius, "eps": chosen.eps, "blend": chosen.blend},
              "hc18_val": score_hc18(None, refiners)}
    if args.busi is not None:
        report["busi_val"] = score_busi(args.busi, args.busi_data, None, refiners)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for key in ("hc18_val", "busi_val"):
        for r in report.get(key, {}).get("rows", []):
            print(key, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
