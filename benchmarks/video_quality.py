"""Video mask quality: flicker, temporal consistency, lag, boundary F and cost of the stabilisers and refiners.

Video part: MediaPipe's selfie model (`edgeseg fetch-selfie` first) runs once per frame of Debian opencv-doc's
vtest.avi (static camera, pedestrians) and Megamind.avi (a moving cartoon face); its model-resolution
foreground then goes through each render-stage MaskFilter setting (exactly what ``edgeseg run --stabilize X
--refine Y`` does per frame), and :class:`edgeseg.metrics.TemporalMetrics` scores the labels: flicker (label
changes where the frame did not change, |diff| < 8 gray levels), temporal consistency (IoU with the previous
mask warped by DIS optical flow) and lag IoU (the same on pixels that moved >= 1 px). The flow of each clip is
computed once and shared by every setting. ``moving px unlike raw``: the share of moving pixels whose label the
stabiliser changed from that frame's own (unstabilised) prediction, i.e. the ghost it adds (0 without one).

Still part: the shipped HC18 model on the HC18 validation split (benchmarks/results/hc18_val_files.txt),
bilinear vs guided upsampling: boundary F (DAVIS tolerance, 0.8% of the diagonal), boundary F at 2 px,
trimap IoU (5 px band) and mIoU against the ground-truth masks at the images' own resolution.

Cost: the filter per 640x480 frame (vtest frames resized) on one core (cv2.setNumThreads(1)), median of
interleaved rounds, including building the labels and the foreground the effect reads; ``extra`` is over the
plain bilinear path (which every frame pays anyway).

Run:  .venv/bin/python benchmarks/video_quality.py [--frames 300] [--hc18-limit 185]     (~3-5 min, 2 cores)
Writes benchmarks/results/video_quality/{video_quality.json,table.md,side_by_side.png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import edgeseg  # noqa: E402
from edgeseg.metrics import ConfusionMatrix, TemporalMetrics, boundary_f_score, trimap_iou  # noqa: E402
from edgeseg.pipeline import Segmentation, Segmenter  # noqa: E402
from edgeseg.postprocess import low_resolution_planes  # noqa: E402
from edgeseg.preprocess import Region  # noqa: E402
from edgeseg.stabilize import Stabilizer  # noqa: E402
from edgeseg.video.maskfilter import MaskFilter  # noqa: E402

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
CLIPS = {"vtest.avi": DATA / "vtest.avi", "Megamind.avi": DATA / "Megamind.avi"}
HC18 = Path("/work/shared/data/hc18")
OUT = REPO / "benchmarks" / "results" / "video_quality"
# (name, stabilize mode, alpha): today's --smooth 0.5, EMA at the motion filter's alpha, the motion filter
STABILIZERS = [("none", "none", None), ("ema 0.5", "ema", 0.5), ("ema 0.8", "ema", 0.8), ("motion 0.8", "motion", 0.8),
               ("motion 0.9", "motion", 0.9)]
REFINERS = ["none", "guided"]


def read_frames(path: Path, limit: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def low_res_outputs(segmenter: Segmenter, frames: list[np.ndarray]) -> list[tuple[np.ndarray, tuple[int, int]]]:
    out = []
    for frame in frames:
        planes, frame_hw, binary = low_resolution_planes(segmenter(frame))
        assert binary, "the selfie model is two-class"
        out.append((planes[0].copy(), frame_hw))
    return out


def as_result(foreground: np.ndarray, frame_hw: tuple[int, int]) -> Segmentation:
    """A fresh model-resolution result, as Segmenter.postprocess returns it (nothing resized yet)."""
    h, w = foreground.shape
    return Segmentation.at_model_resolution(foreground, Region(0, 0, h, w), frame_hw, {"post": 0.0})


def flows_of(frames: list[np.ndarray]) -> list[np.ndarray]:
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    return [dis.calc(grays[t], grays[t - 1], None) for t in range(1, len(grays))]


def make_filter(mode: str, alpha: float | None, refine: str) -> MaskFilter:
    return MaskFilter(Stabilizer(mode, alpha=alpha), refine)


def score_clip(frames, outputs, flows) -> list[dict]:
    moving = [None] + [np.hypot(f[..., 0], f[..., 1]) >= 1.0 for f in flows]
    raw: dict[str, list[np.ndarray]] = {}  # refine -> labels without stabilisation, per frame
    rows = []
    for name, mode, alpha in STABILIZERS:
        for refine in REFINERS:
            flow_iter = iter(flows)
            metrics = TemporalMetrics(flow_fn=lambda gray, prev, it=flow_iter: next(it))
            mask_filter = make_filter(mode, alpha, refine)
            kept = raw.setdefault(refine, []) if mode == "none" else None
            departed = counted = 0
            for t, (frame, (fg, frame_hw)) in enumerate(zip(frames, outputs)):
                result = as_result(fg, frame_hw)
                if mask_filter.active:
                    result = mask_filter(frame, result)
                labels = result.labels
                metrics.update(frame, labels)
                if kept is not None:
                    kept.append(labels.copy())
                elif t:  # moving pixels whose stabilised label is not this frame's own prediction: the ghost
                    departed += int((moving[t] & (labels != raw[refine][t])).sum())
                    counted += int(moving[t].sum())
            summary = metrics.summary()
            rows.append({"stabilize": name, "refine": refine,
                         **{k: summary[k] for k in ("flicker", "temporal_consistency", "lag_iou")},
                         "moving_px_unlike_raw": round(departed / counted, 6) if counted else 0.0})
    return rows


def cost_640x480(frames, segmenter: Segmenter, rounds: int) -> list[dict]:
    """Median ms per 640x480 frame on one core: filter + labels + foreground (what the overlay/effect read)."""
    import cv2

    cv2.setNumThreads(1)
    small = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA) for f in frames[:60]]
    outputs = low_res_outputs(segmenter, small)
    settings = [(n, m, a, r) for n, m, a in STABILIZERS for r in REFINERS]
    times = {(n, r): [] for n, _, _, r in settings}
    for _ in range(rounds):  # interleaved: load from other processes hits every setting alike
        for name, mode, alpha, refine in settings:
            mask_filter = make_filter(mode, alpha, refine)
            for frame, (fg, frame_hw) in zip(small, outputs):
                t0 = time.perf_counter()
                result = as_result(fg, frame_hw)
                if mask_filter.active:
                    result = mask_filter(frame, result)
                result.labels, result.foreground  # noqa: B018 - what the overlay and the effect read
                times[(name, refine)].append(time.perf_counter() - t0)
    base = float(np.median(times[("none", "none")])) * 1e3
    return [{"stabilize": n, "refine": r, "ms": round(float(np.median(t)) * 1e3, 3),
             "extra_ms": round(float(np.median(t)) * 1e3 - base, 3)} for (n, r), t in times.items()]


def score_hc18(limit: int | None) -> dict:
    from edgeseg.data import MaskSpec, load_image, read_mask
    from edgeseg.data.hc18 import read_file_list

    names = read_file_list(REPO / "benchmarks" / "results" / "hc18_val_files.txt")[: limit or None]
    segmenter = Segmenter(REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx", threads=1)
    guided = MaskFilter("none", "guided")
    scores = {r: {"bf": [], "bf2": [], "trimap": [], "cm": ConfusionMatrix(2)} for r in REFINERS}
    for name in names:
        image = load_image(HC18 / "images" / name)
        truth = read_mask(HC18 / "masks" / name, MaskSpec("binary")).astype(np.uint8)
        result = segmenter(image)
        planes, frame_hw, _ = low_resolution_planes(result)
        for refine in REFINERS:
            res = as_result(planes[0].copy(), frame_hw)
            labels = (guided(image, res) if refine == "guided" else res).labels
            s = scores[refine]
            s["bf"].append(boundary_f_score(labels, truth))
            s["bf2"].append(boundary_f_score(labels, truth, tolerance=2))
            s["trimap"].append(trimap_iou(labels, truth, width=5))
            s["cm"].update(labels, truth)
    segmenter.close()
    return {"images": len(names), "rows": [
        {"refine": r, "boundary_f": round(float(np.nanmean(s["bf"])), 4),
         "boundary_f_2px": round(float(np.nanmean(s["bf2"])), 4),
         "trimap_iou_5px": round(float(np.nanmean(s["trimap"])), 4), "mean_iou": round(s["cm"].mean_iou, 4)}
        for r, s in scores.items()]}


def side_by_side(frames, outputs, path: Path, index: int) -> None:
    """Top: frame, bilinear mask, guided mask. Bottom (1:1 crop at the hair edge): frame, green replacement with
    each mask (the BackgroundEffect the selfie command runs, feather 0)."""
    import cv2

    from edgeseg.apps.selfie import BackgroundEffect

    frame, (fg, frame_hw) = frames[index], outputs[index]
    bilinear = as_result(fg.copy(), frame_hw).foreground
    guided = MaskFilter("none", "guided")(frame, as_result(fg.copy(), frame_hw)).foreground
    effect = BackgroundEffect(color=(0, 200, 0), feather=0)
    green = [effect.composite(frame, m) for m in (bilinear, guided)]
    pw, ph = 240, round(240 * frame.shape[0] / frame.shape[1])

    def panel(img):
        img = cv2.cvtColor((img * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img
        return cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA)

    ys, xs = np.nonzero(bilinear > 0.5)
    top, cx = int(ys.min()), int(np.median(xs[ys < ys.min() + 10]))  # the top of the head: hair
    y0 = int(np.clip(top - ph // 3, 0, frame.shape[0] - ph))
    x0 = int(np.clip(cx - pw // 2, 0, frame.shape[1] - pw))

    def crop(img):
        return img[y0:y0 + ph, x0:x0 + pw]

    rows = [np.hstack([panel(frame), panel(bilinear), panel(guided)]),
            np.hstack([crop(frame), crop(green[0]), crop(green[1])])]
    image = np.vstack(rows)
    for i, label in enumerate(("frame", "bilinear", "guided (--refine)")):
        cv2.putText(image, label, (6 + i * pw, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def table(report: dict) -> str:
    lines = []
    for clip, data in report["clips"].items():
        lines += [f"**{clip}** ({data['frames']} frames, {data['size']}), selfie model", "",
                  "| stabilize | refine | flicker | temporal consistency | lag IoU (moving px) | moving px unlike raw |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['stabilize']} | {r['refine']} | {r['flicker']:.4f} | {r['temporal_consistency']:.4f} | "
                  f"{r['lag_iou']:.4f} | {r['moving_px_unlike_raw']:.4f} |" for r in data["rows"]]
        lines.append("")
    lines += ["**Cost per 640x480 frame, one core** (filter + labels + foreground; extra over none/bilinear)", "",
              "| stabilize | refine | ms | extra ms |", "|---|---|---|---|"]
    lines += [f"| {r['stabilize']} | {r['refine']} | {r['ms']:.3f} | {r['extra_ms']:+.3f} |" for r in report["cost"]]
    if report.get("hc18"):
        h = report["hc18"]
        lines += ["", f"**HC18 validation** ({h['images']} images), shipped hc18_fastseg model", "",
                  "| upsampling | boundary F (DAVIS tol.) | boundary F (2 px) | trimap IoU (5 px) | mIoU |",
                  "|---|---|---|---|---|"]
        lines += [f"| {'guided' if r['refine'] == 'guided' else 'bilinear'} | {r['boundary_f']:.4f} | "
                  f"{r['boundary_f_2px']:.4f} | {r['trimap_iou_5px']:.4f} | {r['mean_iou']:.4f} |" for r in h["rows"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per clip (default 300)")
    parser.add_argument("--hc18-limit", type=int, default=None, help="HC18 validation images (default all)")
    parser.add_argument("--cost-rounds", type=int, default=3, help="interleaved rounds of 60 frames (default 3)")
    parser.add_argument("--picture-frame", type=int, default=120, help="Megamind frame for the picture")
    args = parser.parse_args(argv)
    edgeseg.tune_process()  # as the edgeseg CLI does; the timings assume per-frame buffers keep their pages
    from edgeseg.apps.selfie import selfie_model_path

    OUT.mkdir(parents=True, exist_ok=True)
    segmenter = Segmenter(selfie_model_path(), threads=1)
    report = {"settings": {"static_threshold": 8.0, "motion_threshold_px": 1.0, "flow": "DIS medium",
                           "guided": {"radius": 2, "eps": 1e-3}, "motion_gray_noise_threshold": [4.0, 16.0]}, "clips": {}}
    megamind = None
    for clip, path in CLIPS.items():
        if not path.exists():
            print(f"skip {clip}: {path} missing (apt-get install opencv-doc)")
            continue
        t0 = time.perf_counter()
        frames = read_frames(path, args.frames)
        outputs = low_res_outputs(segmenter, frames)
        rows = score_clip(frames, outputs, flows_of(frames))
        report["clips"][clip] = {"frames": len(frames), "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
                                 "rows": rows}
        print(f"{clip}: {len(frames)} frames scored in {time.perf_counter() - t0:.0f} s", flush=True)
        if clip == "Megamind.avi":
            megamind = (frames, outputs)
        if clip == "vtest.avi":
            report["cost"] = cost_640x480(frames, segmenter, args.cost_rounds)
    if megamind is not None:
        index = min(args.picture_frame, len(megamind[0]) - 1)
        side_by_side(*megamind, OUT / "side_by_side.png", index)
    segmenter.close()
    if HC18.exists():
        t0 = time.perf_counter()
        report["hc18"] = score_hc18(args.hc18_limit)
        print(f"HC18: {report['hc18']['images']} images in {time.perf_counter() - t0:.0f} s", flush=True)
    (OUT / "video_quality.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = table(report)
    (OUT / "table.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
