"""Streaming pipeline efficiency: end-to-end FPS and latency of `edgeseg.stream` vs the model's own rate.

For one model on one real video, per --threads setting (ONNX Runtime / torch intra-op threads):
  - model alone (the baseline): the Segmenter (pre + infer + post) called back to back on the video's frames
    -> latency p50/p99 and its rate 1 / p50; measured before the stream cases and after each repeat;
  - stream cases, run --repeats times interleaved with the baseline (so drifts in machine load hit both):
      file, no render (decode + segment), file + overlay (null sink), file + overlay -> H.264 file (what
      `edgeseg run --sink out.mp4` does; x264 preset veryfast, and ultrafast as `--preset ultrafast` sets),
      live: the file paced at its own frame rate like a camera (drop-latest);
  - efficiency = stream FPS / (1 / baseline p50) with the baseline measured around that repeat (live:
    / min(model rate, video fps)); the median and range over repeats are reported; "vs infer only" is the
    stricter ratio against the bare model's inference rate (the runner alone, no pre/post);
  - inference busy = share of the stream's wall time the inference thread spent in the segmenter. It is the
    pipeline efficiency measured inside one time window, so it does not depend on load drift between windows
    (this shared 2-core machine's load average moves between 2 and 10 within a minute).
End-to-end latency is capture timestamp -> render done; in file mode it includes queueing (the capture thread
runs ahead of inference by up to the queue size), in live mode it is what a camera user sees.

Models (--model): "hc18" (the shipped real-time fastseg, edgeseg/assets/hc18_fastseg.onnx, else its
.safetensors on torch, on the pydicom-data echo cine), "selfie" (MediaPipe selfie ONNX on Megamind.avi),
"fastseg-torch" (the fastseg architecture with random weights on the torch backend, on the echo cine), or "auto"
(the first available of these).

    python benchmarks/stream.py                       # auto model, threads 1 and 2
    python benchmarks/stream.py --model selfie --threads 1
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

import edgeseg
from edgeseg.bench.environment import capture as machine_info
from edgeseg.bench.stats import summarize
from edgeseg.video import open_source

MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
ASSETS = REPO / "edgeseg" / "assets"


def hc18_path() -> Path | None:
    """The shipped HC18 fastseg: the ONNX export when present, else the safetensors checkpoint (torch)."""
    for name in ("hc18_fastseg.onnx", "hc18_fastseg.safetensors"):
        if (ASSETS / name).exists():
            return ASSETS / name
    return None
RESULTS = REPO / "benchmarks" / "results"


def echo_cine() -> str | None:
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        return None
    return get_testdata_file("color3d_jpeg_baseline.dcm")


def choose(model: str) -> tuple[str, str]:
    """(model name, video path) for --model."""
    order = ["hc18", "selfie", "fastseg-torch"] if model == "auto" else [model]
    problems = []
    for name in order:
        if name in ("hc18", "fastseg-torch"):
            video = echo_cine()
            if video is None:
                problems.append(f"{name}: pydicom-data echo cine missing")
                continue
            if name == "hc18" and hc18_path() is None:
                problems.append(f"hc18: no hc18_fastseg.onnx or .safetensors in {ASSETS}")
                continue
            return name, video
        if name == "selfie":
            from edgeseg.apps.selfie import selfie_model_path
            from edgeseg.errors import ArtifactError

            try:
                selfie_model_path()
            except ArtifactError as exc:
                problems.append(f"selfie: {exc}")
                continue
            if not MEGAMIND.exists():
                problems.append("selfie: Megamind.avi missing (apt-get install opencv-doc)")
                continue
            return name, str(MEGAMIND)
        raise SystemExit(f"--model: got {name!r}, expected auto, hc18, selfie or fastseg-torch")
    raise SystemExit("no model available: " + "; ".join(problems))


def segmenter(name: str, threads: int):
    from edgeseg.pipeline import Segmenter

    if name == "hc18":
        path = hc18_path()
        backend = "ONNX Runtime" if path.suffix == ".onnx" else "torch CPU"
        return Segmenter(str(path), threads=threads), f"{path.name} ({backend}, {threads} thread(s))"
    if name == "selfie":
        from edgeseg.apps.selfie import selfie_model_path

        return Segmenter(selfie_model_path(), threads=threads), f"selfie_general.onnx (ONNX Runtime, {threads} thr)"
    import torch

    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.models import create_model
    from edgeseg.runtime import TorchRunner

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("fastseg", num_classes=2, in_channels=1).eval()
    artifact = Artifact(path="fastseg.safetensors", model="fastseg",
                        model_kwargs={"num_classes": 2, "in_channels": 1}, classes=["background", "head"],
                        preprocess=Preprocess(size=(256, 256), color="gray", mean=[0.5], std=[0.25]))
    return Segmenter(TorchRunner(model, artifact)), f"fastseg random weights (torch CPU, {threads} thread(s))"


def decode(video: str, limit: int) -> list[np.ndarray]:
    with open_source(video) as source:
        frames = []
        for image, _ in source:
            frames.append(image)
            if len(frames) == limit:
                break
    return frames


def model_alone(seg, frames: list[np.ndarray], warmup: int = 10) -> dict:
    for frame in frames[:warmup]:
        seg(frame)
    seconds, infer = [], []
    for frame in frames:
        frame = frame.copy()  # in cache, like a frame the capture thread has just decoded
        t0 = time.perf_counter()
        result = seg(frame)
        result.labels  # noqa: B018 - built on first read, and the stream's overlay reads it: same work both sides
        seconds.append(time.perf_counter() - t0)
        infer.append(result.timings["infer"])
    s, i = summarize(seconds), summarize(infer)
    return {"segmenter_ms": {"p50": s.median * 1e3, "p99": s.p99 * 1e3}, "infer_ms": {"p50": i.median * 1e3,
            "p99": i.p99 * 1e3}, "rate_fps": 1.0 / s.median, "count": s.count}


def stream_case(seg, video: str, sink: str, realtime: bool, render: bool, sink_options: dict | None = None,
                skip: int = 10) -> dict:
    run = edgeseg.stream(video, seg, sink=sink, realtime=realtime, render=None if render else False,
                         sink_options=sink_options)
    e2e, done = [], []
    with run:
        for result in run:
            e2e.append(result.timings["end_to_end"])
            done.append(time.perf_counter())
    summary = run.summary()
    steady_e2e = e2e[skip:] if len(e2e) > 2 * skip else e2e
    span = done[-1] - done[skip] if len(done) > 2 * skip else done[-1] - done[0]
    count = len(done) - 1 - (skip if len(done) > 2 * skip else 0)
    lat = summarize(steady_e2e)
    return {"fps": count / span, "frames": summary["frames_processed"], "dropped": summary["frames_dropped"],
            "end_to_end_ms": {"p50": lat.median * 1e3, "p99": lat.p99 * 1e3},
            "stages_p50_ms": {k: v.get("p50") for k, v in summary["latency_ms"].items()},
            "thread_busy_fraction": summary.get("thread_busy_fraction"), "bottleneck": summary.get("bottleneck")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="auto")
    parser.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    parser.add_argument("--alone-frames", type=int, default=120, help="frames for the model-alone baseline")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every case")
    parser.add_argument("--out", default=str(RESULTS / "stream.json"))
    args = parser.parse_args()
    edgeseg.tune_process()  # as the edgeseg CLI does; the timings assume per-frame buffers keep their pages
    name, video = choose(args.model)
    frames = decode(video, args.alone_frames)
    cases = []
    with_tmp = Path(args.out).with_suffix(".tmp.mp4")
    case_specs = (("file_norender", "null", False, False, None), ("file_null", "null", False, True, None),
                  ("file_h264", str(with_tmp), False, True, None),
                  ("file_h264_ultrafast", str(with_tmp), False, True, {"preset": "ultrafast"}),
                  ("live_null", "null", True, True, None))
    source = open_source(video)
    source.open()
    video_fps = source.fps
    source.close()
    for threads in [int(t) for t in args.threads.split(",")]:
        seg, desc = segmenter(name, threads)
        alones = [model_alone(seg, frames)]
        runs = {spec[0]: [] for spec in case_specs}
        for _ in range(args.repeats):  # interleaved, so slow drifts in machine load hit both sides alike
            for key, sink, realtime, render, sink_options in case_specs:
                runs[key].append(stream_case(seg, video, sink, realtime, render, sink_options))
            alones.append(model_alone(seg, frames))
        with_tmp.unlink(missing_ok=True)
        # baseline of repeat r: mean of the model-alone p50 measured just before and just after it
        base_ms = [(a["segmenter_ms"]["p50"] + b["segmenter_ms"]["p50"]) / 2 for a, b in zip(alones, alones[1:])]
        # the stricter baseline: the model's inference alone (what the inference thread does in a staged stream)
        infer_ms = [(a["infer_ms"]["p50"] + b["infer_ms"]["p50"]) / 2 for a, b in zip(alones, alones[1:])]
        p50 = float(np.median([a["segmenter_ms"]["p50"] for a in alones]))
        p99 = float(np.median([a["segmenter_ms"]["p99"] for a in alones]))
        row = {"threads": threads, "model": desc, "alone_runs": alones,
               "alone": {"segmenter_ms": {"p50": p50, "p99": p99},
                         "infer_ms": {"p50": float(np.median([a["infer_ms"]["p50"] for a in alones]))},
                         "rate_fps": 1e3 / p50}}
        for key, cases_r in runs.items():
            live = key.startswith("live")
            effs, effs_infer = [], []
            for r, case in enumerate(cases_r):
                ideal, ideal_infer = 1e3 / base_ms[r], 1e3 / infer_ms[r]
                if live and video_fps:  # a paced source cannot go faster than its frame rate
                    ideal, ideal_infer = min(ideal, video_fps), min(ideal_infer, video_fps)
                effs.append(case["fps"] / ideal)
                effs_infer.append(case["fps"] / ideal_infer)
            row[key] = {
                "fps": float(np.median([c["fps"] for c in cases_r])),
                "efficiency": float(np.median(effs)), "efficiency_range": [float(min(effs)), float(max(effs))],
                "efficiency_vs_infer": float(np.median(effs_infer)),
                "end_to_end_ms": {q: float(np.median([c["end_to_end_ms"][q] for c in cases_r]))
                                  for q in ("p50", "p99")},
                "dropped": int(np.median([c["dropped"] for c in cases_r])),
                "inference_busy": float(np.median([(c["thread_busy_fraction"] or {}).get("inference", 0)
                                                   for c in cases_r])),
                "stages_p50_ms": {k: float(np.median([c["stages_p50_ms"][k] or 0 for c in cases_r]))
                                  for k in cases_r[0]["stages_p50_ms"]},
                "runs": cases_r,
            }
        cases.append(row)
        print(f"threads={threads}: model alone {p50:.1f} ms ({1e3 / p50:.1f} fps); stream file, overlay "
              f"{row['file_null']['fps']:.1f} fps (efficiency {row['file_null']['efficiency']:.2f})", flush=True)
    report = {"benchmark": "stream", "video": video, "video_fps": video_fps, "video_size": source.size,
              "video_frames": source.describe().get("declared_frames") or len(frames), "cases": cases,
              "repeats": args.repeats,
              "efficiency_definition": "stream FPS / (1 / model-alone segmenter p50 latency), median over "
                                       "interleaved repeats; live: / min(model rate, video fps)",
              "efficiency_vs_infer_definition": "the same with the model-alone inference p50 (runner only, no "
                                                "pre/post) as the baseline",
              "machine": machine_info({"intra_op_threads": args.threads})}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")
    return 0


def print_table(report: dict) -> None:
    print(f"\nvideo: {Path(report['video']).name} ({report['video_size'][0]}x{report['video_size'][1]}, "
          f"{report['video_fps']:.1f} fps); machine: {report['machine']['cpu']}, "
          f"{report['machine']['cores_usable']} cores")
    header = ("threads", "case", "FPS", "efficiency (range)", "vs infer only", "inference busy",
              "e2e p50 ms", "e2e p99 ms", "dropped", "infer p50 ms", "render p50 ms")
    rows = []
    for row in report["cases"]:
        alone = row["alone"]
        rows.append((str(row["threads"]), "model alone (segmenter)", f"{alone['rate_fps']:.1f}", "1 (baseline)",
                     f"{alone['infer_ms']['p50'] / alone['segmenter_ms']['p50']:.2f}", "-",
                     f"{alone['segmenter_ms']['p50']:.1f}", f"{alone['segmenter_ms']['p99']:.1f}", "-",
                     f"{alone['infer_ms']['p50']:.1f}", "-"))
        for key, label in (("file_norender", "stream file, no render"), ("file_null", "stream file, overlay"),
                           ("file_h264", "stream file, overlay -> H.264"),
                           ("file_h264_ultrafast", "stream file, overlay -> H.264 ultrafast"),
                           ("live_null", "stream live (paced), overlay")):
            c = row[key]
            lo, hi = c["efficiency_range"]
            rows.append((str(row["threads"]), label, f"{c['fps']:.1f}", f"{c['efficiency']:.2f} ({lo:.2f}-{hi:.2f})",
                         f"{c['efficiency_vs_infer']:.2f}", f"{c['inference_busy']:.0%}",
                         f"{c['end_to_end_ms']['p50']:.1f}", f"{c['end_to_end_ms']['p99']:.1f}", str(c["dropped"]),
                         f"{c['stages_p50_ms']['infer']:.1f}", f"{c['stages_p50_ms'].get('render') or 0:.1f}"))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"model: {report['cases'][0]['model']}")
    print("efficiency = stream FPS / model-alone rate (live: / min(model rate, video fps)), median of interleaved "
          "repeats (range); vs infer only: the same against the bare model's inference rate (no pre/post).\ninference busy = share of the stream's wall time the inference thread spent in the "
          "segmenter (1.0: the model is the only limit; measured in the same time window, so immune to load drift).")


if __name__ == "__main__":
    sys.exit(main())
