"""Video mask quality: flicker, temporal consistency, lag, boundary F and cost of the stabilisers and refiners.

Video part: MediaPipe's selfie model (`edgeseg fetch-selfie` first) runs once per frame of Debian opencv-doc's
vtest.avi (static camera, pedestrians) and Megamind.avi (a moving cartoon face), and the shipped HC18 model runs
on pydicom-data's echocardiography cine (the ``edgeseg demo --ultrasound`` clip; a model trained on fetal-head
ultrasound, not on echo). Each model-resolution foreground then goes through each render-stage MaskFilter
setting (exactly what ``edgeseg run --stabilize X --refine Y`` does per frame), and
:class:`edgeseg.metrics.TemporalMetrics` scores the labels: flicker (label changes where the frame did not
change, |diff| < 8 gray levels), temporal consistency (IoU with the previous mask warped by DIS optical flow) and
lag IoU (the same on pixels that moved >= 1 px). The flow of each clip is computed once and shared by every
setting. ``moving px unlike raw``: the share of moving pixels whose label the stabiliser changed from that
frame's own (unstabilised) prediction, i.e. the ghost it adds (0 without one).

Still part: the shipped HC18 model on the HC18 validation split (benchmarks/results/hc18_val_files.txt) and,
with ``--busi MODEL``, a BUSI model on the validation files its sidecar records (research-only data: only the
scores are written), bilinear vs guided upsampling (the default: the radius/eps/blend benchmarks/guided_tuning.py chose on HC18
training images; subsample 1 = coefficients at the model's full output resolution; and the untuned filter,
eps 1e-3 without blend, that was the default before the tuning):
boundary F (DAVIS tolerance, 0.8% of the diagonal), boundary F at 2 px, trimap IoU (5 px band) and mIoU (pooled,
5 decimals: the differences are that small) against the ground-truth masks at the images' own resolution.

Cost: the filter per 640x480 frame on one core (OMP_NUM_THREADS=1 and cv2.setNumThreads(1)), including building
the labels and the foreground the effect reads: selfie model on vtest frames resized to 640x480, HC18 model on the
echo cine (640x480 already). Settings are interleaved round by round (the first round is warm-up and dropped), so
load from other processes hits every setting alike; wall-clock and thread CPU time, median and p99, and each as a
ratio to the plain bilinear path of the same run (which every frame pays anyway). The load average is recorded.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_quality.py [--busi runs/busi_best/model.onnx]
      (~8-15 min on 2 cores, longer on a loaded machine)
Writes benchmarks/results/video_quality/{video_quality.json,table.md,side_by_side.png}.
"""

from __future__ import annotations

import argparse
import json
import os
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
from edgeseg.refine import GuidedUpsampler  # noqa: E402
from edgeseg.stabilize import Stabilizer  # noqa: E402
from edgeseg.video.maskfilter import GUIDED_BLEND, GUIDED_EPS, GUIDED_RADIUS, MaskFilter  # noqa: E402

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
CLIPS = {"vtest.avi": DATA / "vtest.avi", "Megamind.avi": DATA / "Megamind.avi"}
HC18 = Path("/work/shared/data/hc18")
OUT = REPO / "benchmarks" / "results" / "video_quality"
# (name, stabilize mode, alpha): today's --smooth 0.5, EMA at the motion filter's alpha, the motion filter
STABILIZERS = [("none", "none", None), ("ema 0.5", "ema", 0.5), ("ema 0.8", "ema", 0.8), ("motion 0.8", "motion", 0.8),
               ("motion 0.9", "motion", 0.9)]
REFINERS = ["none", "guided"]
# still images: the default guided filter, the one with coefficients at the model's full output resolution, and
# "guided" is the tuned default (guided_tuning.json); "guided, untuned" the default before the tuning
STILL_REFINERS = {"bilinear": None, "guided": "guided",
                  "guided, subsample 1": GuidedUpsampler(GUIDED_RADIUS, GUIDED_EPS, subsample=1, blend=GUIDED_BLEND),
                  "guided, untuned (eps 1e-3, no blend)": GuidedUpsampler(radius=2, eps=1e-3, subsample=2)}
HC18_MODEL = REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx"
PARTS = ("video", "cost", "hc18", "busi", "demo")


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


def read_echo(limit: int) -> list[np.ndarray] | None:
    """The echo cine ``edgeseg demo --ultrasound`` plays (pydicom-data), or None when it is not installed."""
    from edgeseg.commands.demo import echo_cine
    from edgeseg.video import open_source

    path = echo_cine()
    if path is None:
        return None
    with open_source(path) as source:
        return [captured.image for _, captured in zip(range(limit), source)]


def low_res_outputs(segmenter: Segmenter, frames: list[np.ndarray]) -> list[tuple[np.ndarray, tuple[int, int]]]:
    out = []
    for frame in frames:
        planes, frame_hw, binary = low_resolution_planes(segmenter(frame))
        assert binary, "the selfie and HC18 models are two-class"
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
    upsampler = STILL_REFINERS.get(refine, refine)
    if isinstance(upsampler, GuidedUpsampler):  # a fresh one: no buffers shared between settings
        upsampler = GuidedUpsampler(upsampler.radius, upsampler.eps, upsampler.clip, upsampler.subsample,
                                    upsampler.blend)
    return MaskFilter(Stabilizer(mode, alpha=alpha), upsampler)


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


def cost_640x480(frames, segmenter: Segmenter, rounds: int, resize: bool) -> dict:
    """Per-frame cost at 640x480 on one core: filter + labels + foreground (what the overlay/effect read).

    Wall-clock (perf_counter) and this thread's CPU time (thread_time: what the filter itself used, less
    sensitive to other processes taking the core), median and p99 over all frames of the kept rounds, and each
    as a ratio to the plain bilinear path measured in the same rounds."""
    import cv2

    cv2.setNumThreads(1)
    small = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA) if resize else f for f in frames[:60]]
    assert all(f.shape[:2] == (480, 640) for f in small), "cost is measured on 640x480 frames"
    outputs = low_res_outputs(segmenter, small)
    settings = [(n, m, a, r) for n, m, a in STABILIZERS for r in REFINERS]
    settings += [(n, m, a, r) for r in ("guided, subsample 1", "guided, untuned (eps 1e-3, no blend)")
                 for n, m, a in STABILIZERS if n in ("none", "motion 0.8")]
    wall = {(n, r): [] for n, _, _, r in settings}
    cpu = {(n, r): [] for n, _, _, r in settings}
    load = [round(x, 2) for x in os.getloadavg()]
    for k in range(rounds + 1):  # interleaved: load from other processes hits every setting alike; round 0 warms up
        for name, mode, alpha, refine in settings:
            mask_filter = make_filter(mode, alpha, refine)
            for frame, (fg, frame_hw) in zip(small, outputs):
                t0, c0 = time.perf_counter(), time.thread_time()
                result = as_result(fg, frame_hw)
                if mask_filter.active:
                    result = mask_filter(frame, result)
                result.labels, result.foreground  # noqa: B018 - what the overlay and the effect read
                c1, t1 = time.thread_time(), time.perf_counter()
                if k:
                    wall[(name, refine)].append(t1 - t0)
                    cpu[(name, refine)].append(c1 - c0)

    def ms(values, q):
        return float(np.percentile(values, q)) * 1e3

    base_wall, base_cpu = ms(wall[("none", "none")], 50), ms(cpu[("none", "none")], 50)
    rows = [{"stabilize": n, "refine": r, "wall_ms": round(ms(wall[(n, r)], 50), 3),
             "wall_p99_ms": round(ms(wall[(n, r)], 99), 3), "cpu_ms": round(ms(cpu[(n, r)], 50), 3),
             "cpu_p99_ms": round(ms(cpu[(n, r)], 99), 3),
             "extra_wall_ms": round(ms(wall[(n, r)], 50) - base_wall, 3),
             "extra_cpu_ms": round(ms(cpu[(n, r)], 50) - base_cpu, 3),
             "wall_ratio": round(ms(wall[(n, r)], 50) / base_wall, 2),
             "cpu_ratio": round(ms(cpu[(n, r)], 50) / base_cpu, 2)} for n, _, _, r in settings]
    return {"frames": len(small), "rounds": rounds, "load_average": load + [round(x, 2) for x in os.getloadavg()],
            "low_resolution": list(outputs[0][0].shape), "rows": rows}


def score_still(segmenter: Segmenter, pairs, refiners: dict | None = None) -> dict:
    """Bilinear vs guided labels of ``pairs`` (image, truth) against the truth: boundary F (DAVIS tolerance and
    2 px), trimap IoU (5 px) and mIoU. Each upsampling gets the same model output (the Segmenter's own result
    for bilinear, the render-stage MaskFilter for guided, as ``edgeseg run --refine guided`` does).
    ``refiners``: name -> None (bilinear), "guided" or a GuidedUpsampler; default :data:`STILL_REFINERS`."""
    filters = {name: (MaskFilter("none", r) if r is not None else None)
               for name, r in (refiners or STILL_REFINERS).items()}
    scores, count = {}, 0
    for image, truth in pairs:
        result = segmenter(image)
        planes, frame_hw, binary = low_resolution_planes(result)
        count += 1
        for name, mask_filter in filters.items():
            res = as_result(planes[0].copy(), frame_hw) if binary else result
            labels = (mask_filter(image, res) if mask_filter is not None else res).labels
            classes = 2 if binary else planes.shape[0]
            s = scores.setdefault(name, {"bf": [], "bf2": [], "trimap": [], "cm": ConfusionMatrix(classes)})
            s["bf"].append(boundary_f_score(labels, truth))
            s["bf2"].append(boundary_f_score(labels, truth, tolerance=2))
            s["trimap"].append(trimap_iou(labels, truth, width=5))
            s["cm"].update(labels, truth)
    return {"images": count, "rows": [
        {"refine": r, "boundary_f": round(float(np.nanmean(s["bf"])), 4),
         "boundary_f_2px": round(float(np.nanmean(s["bf2"])), 4),
         "trimap_iou_5px": round(float(np.nanmean(s["trimap"])), 4), "mean_iou": round(s["cm"].mean_iou, 5)}
        for r, s in scores.items()]}


def score_hc18(limit: int | None, refiners: dict | None = None) -> dict:
    from edgeseg.data import MaskSpec, load_image, read_mask
    from edgeseg.data.hc18 import read_file_list

    names = read_file_list(REPO / "benchmarks" / "results" / "hc18_val_files.txt")[: limit or None]
    segmenter = Segmenter(HC18_MODEL, threads=1)
    pairs = ((load_image(HC18 / "images" / n), read_mask(HC18 / "masks" / n, MaskSpec("binary")).astype(np.uint8))
             for n in names)
    try:
        return score_still(segmenter, pairs, refiners)
    finally:
        segmenter.close()


def score_busi(model: Path, data: Path, limit: int | None, refiners: dict | None = None) -> dict:
    """A BUSI class-folders model on the validation files of its sidecar (benign, malignant lesions)."""
    from edgeseg.artifact import Artifact
    from edgeseg.data import load_image
    from edgeseg.data.class_folders import read_sample_mask
    from edgeseg.evaluate import mask_spec_of, select_samples

    artifact = Artifact.load(model)
    samples = select_samples(artifact, data, None, "val")[: limit or None]
    spec = mask_spec_of(artifact)
    segmenter = Segmenter(model, threads=1)

    def pairs():
        for sample in samples:
            image = load_image(sample.image)
            yield image, read_sample_mask(sample, spec, image.shape[:2]).astype(np.uint8)

    try:
        report = score_still(segmenter, pairs(), refiners)
    finally:
        segmenter.close()
    return {"model": model.name, "classes": list(artifact.classes),
            "size": list(artifact.preprocess.size), **report}


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
        lines += [f"**{clip}** ({data['frames']} frames, {data['size']}), {data.get('model', 'selfie')} model", "",
                  "| stabilize | refine | flicker | temporal consistency | lag IoU (moving px) | moving px unlike raw |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['stabilize']} | {r['refine']} | {r['flicker']:.4f} | {r['temporal_consistency']:.4f} | "
                  f"{r['lag_iou']:.4f} | {r['moving_px_unlike_raw']:.4f} |" for r in data["rows"]]
        lines.append("")
    for name, cost in report.get("cost", {}).items():
        lines += [f"**Cost per 640x480 frame, one core, {name}** (filter + labels + foreground; model output "
                  f"{cost['low_resolution'][0]}x{cost['low_resolution'][1]}; {cost['frames']} frames x "
                  f"{cost['rounds']} rounds after warm-up; load average before/after "
                  f"{', '.join(str(x) for x in cost['load_average'])} on {os.cpu_count()} cores)", "",
                  "| stabilize | refine | wall ms (p99) | extra wall ms | x bilinear | CPU ms (p99) | extra CPU ms "
                  "| x bilinear |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['stabilize']} | {r['refine']} | {r['wall_ms']:.3f} ({r['wall_p99_ms']:.2f}) | "
                  f"{r['extra_wall_ms']:+.3f} | {r['wall_ratio']:.2f} | {r['cpu_ms']:.3f} ({r['cpu_p99_ms']:.2f}) | "
                  f"{r['extra_cpu_ms']:+.3f} | {r['cpu_ratio']:.2f} |" for r in cost["rows"]]
        lines.append("")
    demo = report.get("demo")
    if demo:
        lines += [f"**`edgeseg demo` stages, CPU ms per frame** (Megamind.avi 720x528, {demo['frames']} frames, one "
                  f"after another; decode {demo['decode_ms']:.2f} ms; load average "
                  f"{', '.join(str(x) for x in demo['load_average_before'])} on {demo['cores']} cores)", "",
                  "| setting | segmenter | filter | blur effect | H.264 encode | all | implied fps (H.264) "
                  "| implied fps (null sink) |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {k} | {v['segmenter_ms']:.2f} | {v['filter_ms']:.2f} | {v['effect_ms']:.2f} | "
                  f"{v['encode_ms']:.2f} | {v['total_ms']:.2f} | {v['implied_fps_h264']:.0f} | "
                  f"{v['implied_fps_null_sink']:.0f} |" for k, v in demo["settings"].items()]
        lines.append("")
    for key, title in (("hc18", "HC18 validation"), ("busi", "BUSI validation")):
        still = report.get(key)
        if not still:
            continue
        model = "shipped hc18_fastseg model" if key == "hc18" else f"{still['model']} ({'/'.join(still['classes'])}, " \
            f"input {still['size'][0]}x{still['size'][1]}; not shipped)"
        lines += [f"**{title}** ({still['images']} images), {model}", "",
                  "| upsampling | boundary F (DAVIS tol.) | boundary F (2 px) | trimap IoU (5 px) | mIoU |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['refine']} | {r['boundary_f']:.4f} | {r['boundary_f_2px']:.4f} | {r['trimap_iou_5px']:.4f} | "
                  f"{r['mean_iou']:.5f} |" for r in still["rows"]]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def demo_stage_costs(frames, segmenter: Segmenter) -> dict:
    """CPU per frame of each stage of ``edgeseg demo``'s defaults (selfie model, motion stabiliser, background
    blur 21, H.264 veryfast to demo.mp4) and of the same with ``--refine guided``, one frame after another in
    one thread (process CPU time, so the encoder's and the runtime's own threads count), and the frame rates
    they imply for the stream's three threads (capture: decode + pre; inference; render: post + filter + effect
    + encode) on this machine's cores: min(cores / all stages, 1 / the busiest thread), with the whole
    Segmenter call counted in the inference thread (a bound from below)."""
    import tempfile

    import cv2

    from edgeseg.apps.selfie import BackgroundEffect
    from edgeseg.video import open_sink

    cv2.setNumThreads(1)
    cap = cv2.VideoCapture(str(CLIPS["Megamind.avi"]))
    decode = []
    while True:
        c0 = time.process_time()
        ok, _ = cap.read()
        if not ok:
            break
        decode.append(time.process_time() - c0)
    cap.release()
    effect = BackgroundEffect(blur=21)
    out = {"frames": len(frames), "cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()],
           "decode_ms": round(float(np.median(decode)) * 1e3, 3), "settings": {}}
    for refine in ("none", "guided"):
        mask_filter = MaskFilter("motion", refine)
        stages = {"segmenter": [], "filter": [], "effect": [], "encode": []}
        with tempfile.TemporaryDirectory() as tmp, open_sink(Path(tmp) / "demo.mp4", fps=24) as sink:
            for frame in frames:
                c0 = time.process_time()
                result = segmenter(frame)
                c1 = time.process_time()
                result = mask_filter(frame, result)
                c2 = time.process_time()
                image = effect(frame, result)
                c3 = time.process_time()
                sink.write(image)
                c4 = time.process_time()
                for key, a, b in zip(stages, (c0, c1, c2, c3), (c1, c2, c3, c4)):
                    stages[key].append(b - a)
        ms = {k: round(float(np.median(v[5:])) * 1e3, 3) for k, v in stages.items()}  # first frames: warm-up
        total = out["decode_ms"] + sum(ms.values())
        busiest = max(out["decode_ms"], ms["segmenter"], ms["filter"] + ms["effect"] + ms["encode"])
        null_total = total - ms["encode"]
        null_busiest = max(out["decode_ms"], ms["segmenter"], ms["filter"] + ms["effect"])
        out["settings"][f"motion, refine {refine}"] = {
            **{f"{k}_ms": v for k, v in ms.items()}, "total_ms": round(total, 3),
            "implied_fps_h264": round(min(os.cpu_count() / total, 1 / busiest) * 1e3, 1),
            "implied_fps_null_sink": round(min(os.cpu_count() / null_total, 1 / null_busiest) * 1e3, 1)}
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def score_video(name: str, frames, segmenter: Segmenter, model: str) -> dict:
    t0 = time.perf_counter()
    outputs = low_res_outputs(segmenter, frames)
    rows = score_clip(frames, outputs, flows_of(frames))
    print(f"{name}: {len(frames)} frames scored in {time.perf_counter() - t0:.0f} s", flush=True)
    return {"frames": len(frames), "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "model": model,
            "rows": rows}, outputs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per clip (default 300)")
    parser.add_argument("--hc18-limit", type=int, default=None, help="HC18 validation images (default all)")
    parser.add_argument("--busi", type=Path, default=None,
                        help="a BUSI class-folders model (.onnx/.safetensors + sidecar) to score on its validation files")
    parser.add_argument("--busi-data", type=Path, default=Path("/work/shared/data/busi"), help="BUSI root folder")
    parser.add_argument("--cost-rounds", type=int, default=3, help="interleaved rounds of 60 frames (default 3)")
    parser.add_argument("--picture-frame", type=int, default=120, help="Megamind frame for the picture")
    parser.add_argument("--only", choices=PARTS, nargs="+", default=list(PARTS),
                        help="parts to run (default all; the JSON keeps the parts not run from its last version; "
                             "busi needs --busi)")
    args = parser.parse_args(argv)
    edgeseg.tune_process()  # as the edgeseg CLI does; the timings assume per-frame buffers keep their pages
    from edgeseg.apps.selfie import selfie_model_path

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "video_quality.json"
    report = json.loads(path.read_text(encoding="utf-8")) if path.exists() and set(args.only) < set(PARTS) else {}
    guided = MaskFilter("none", "guided").upsampler
    report["settings"] = {"static_threshold": 8.0, "motion_threshold_px": 1.0, "flow": "DIS medium",
                          "guided": {"radius": guided.radius, "eps": guided.eps, "subsample": guided.subsample,
                                     "blend": guided.blend},
                          "motion_gray_noise_threshold": [4.0, 16.0]}
    report.setdefault("clips", {})
    if not isinstance(report.get("cost"), dict):  # an older report's single cost list
        report["cost"] = {}
    selfie = Segmenter(selfie_model_path(), threads=1)
    hc18 = Segmenter(HC18_MODEL, threads=1)
    megamind = None
    clips = CLIPS if {"video", "cost", "demo"} & set(args.only) else {}
    for clip, clip_path in clips.items():
        if not clip_path.exists():
            print(f"skip {clip}: {clip_path} missing (apt-get install opencv-doc)")
            continue
        frames = read_frames(clip_path, args.frames)
        if "video" in args.only:
            report["clips"][clip], outputs = score_video(clip, frames, selfie, "selfie")
            if clip == "Megamind.avi":
                megamind = (frames, outputs)
        if clip == "Megamind.avi" and "demo" in args.only:
            report["demo"] = demo_stage_costs(frames, selfie)
        if clip == "vtest.avi" and "cost" in args.only:
            report["cost"]["selfie model, vtest.avi resized"] = cost_640x480(frames, selfie, args.cost_rounds, True)
    echo = read_echo(args.frames) if {"video", "cost"} & set(args.only) else []
    if echo is None:
        print("skip the echo cine: pydicom-data is not installed (pip install pydicom-data)")
    elif echo:
        if "video" in args.only:
            report["clips"]["echo cine (pydicom-data)"], _ = score_video("echo cine", echo, hc18, "HC18")
        if "cost" in args.only:
            report["cost"]["HC18 model, echo cine"] = cost_640x480(echo, hc18, args.cost_rounds, False)
    if megamind is not None:
        index = min(args.picture_frame, len(megamind[0]) - 1)
        side_by_side(*megamind, OUT / "side_by_side.png", index)
    selfie.close()
    hc18.close()
    if "hc18" in args.only and HC18.exists():
        t0 = time.perf_counter()
        report["hc18"] = score_hc18(args.hc18_limit)
        print(f"HC18: {report['hc18']['images']} images in {time.perf_counter() - t0:.0f} s", flush=True)
    if "busi" in args.only and args.busi is not None:
        t0 = time.perf_counter()
        report["busi"] = score_busi(args.busi, args.busi_data, None)
        print(f"BUSI: {report['busi']['images']} images in {time.perf_counter() - t0:.0f} s", flush=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = table(report)
    (OUT / "table.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
