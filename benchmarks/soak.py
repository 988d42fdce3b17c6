"""Soak test of the streaming loop: 10,000 frames with resident memory sampled; reports the growth.

Source: 24 real frames of Megamind.avi (opencv-doc), or numbered synthetic frames when it is missing, resized to
--size and looped. Segmenter (--model): "threshold" (default) is a real edgeseg.Segmenter on a tiny 1x1-conv ONNX
model through ONNX Runtime (real pre/post-processing and session allocations, ~1 ms of compute, so 10,000 frames
take about a minute here); "selfie" is the MediaPipe selfie model (about 40 ms per frame on this CPU). Every frame
is rendered (overlay) and encoded to an H.264 file, so capture, inference, rendering and the sink all run.

Memory is sampled from /proc/self/statm every --sample frames. The first --warmup frames are excluded from the
growth figures (allocator and codec warm-up). Growth = last sample - first sample after warm-up; slope = least
squares MB per 10,000 frames; noise = standard deviation of the residuals around that line.

    python benchmarks/soak.py                      # 10,000 frames, threshold model
    python benchmarks/soak.py --model selfie --frames 2000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import edgeseg
from edgeseg.bench.environment import capture as machine_info
from edgeseg.video import FrameSource, format_table
from edgeseg.video.testing import count_frames, numbered_frame, threshold_onnx

MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
RESULTS = REPO / "benchmarks" / "results"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def source_frames(size: tuple[int, int], count: int = 24) -> tuple[list[np.ndarray], str]:
    import cv2

    if MEGAMIND.exists():
        capture = cv2.VideoCapture(str(MEGAMIND))
        frames = []
        while len(frames) < count:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        capture.release()
        return frames, f"{MEGAMIND.name} (first {len(frames)} frames, resized to {size[0]}x{size[1]}, looped)"
    return [numbered_frame(i, size) for i in range(count)], f"synthetic numbered frames {size[0]}x{size[1]}, looped"


def make_model(name: str, workdir: Path) -> tuple[str, str]:
    if name == "threshold":
        return str(threshold_onnx(workdir / "threshold.onnx", size=(64, 96))), "1x1-conv threshold ONNX (ORT)"
    if name == "selfie":
        from edgeseg.apps.selfie import selfie_model_path

        return str(selfie_model_path()), "MediaPipe selfie segmenter ONNX (ORT)"
    raise SystemExit(f"--model: got {name!r}, expected threshold or selfie")


def slope_and_noise(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if x.size < 3:
        return float("nan"), float("nan")
    a, b = np.polyfit(x, y, 1)
    return float(a), float(np.std(y - (a * x + b)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=250)
    parser.add_argument("--size", default="160x120", help="frame size WxH")
    parser.add_argument("--model", default="threshold", choices=["threshold", "selfie"])
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--sink", default="h264", choices=["h264", "null"],
                        help="h264: overlay encoded to an .mp4 (its muxer keeps a per-frame index in memory until "
                             "close, ~0.2 KB/frame); null: overlay rendered and discarded")
    parser.add_argument("--out", default=str(RESULTS / "soak.json"))
    args = parser.parse_args()
    edgeseg.tune_process()  # as the edgeseg CLI does; the timings assume per-frame buffers keep their pages
    size = tuple(int(v) for v in args.size.lower().split("x"))

    threads_before = {t.name for t in threading.enumerate()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, model_desc = make_model(args.model, tmp)
        frames, source_desc = source_frames(size)
        video = tmp / "soak.mp4"
        samples = []  # (frame, rss MB)
        started = time.perf_counter()
        sink = str(video) if args.sink == "h264" else "null"
        run = edgeseg.stream(FrameSource(frames, fps=30, loop=True), model, sink=sink, threads=args.threads,
                             max_frames=args.frames, status=None)
        with run:
            for result in run:
                n = result.index + 1
                if n % args.sample == 0 or n == 1:
                    samples.append((n, rss_mb()))
        wall = time.perf_counter() - started
        summary = run.summary()
        decoded = count_frames(video) if args.sink == "h264" else None
    threads_after = {t.name for t in threading.enumerate()}

    x = np.array([s[0] for s in samples], float)
    y = np.array([s[1] for s in samples], float)
    steady = x >= args.warmup
    slope, noise = slope_and_noise(x[steady], y[steady])
    report = {
        "benchmark": "soak",
        "frames": summary["frames_processed"],
        "segmenter": model_desc,
        "source": source_desc,
        "sink": "H.264 .mp4 file (PyAV), overlay render" if args.sink == "h264" else "null, overlay render",
        "wall_s": round(wall, 2),
        "fps": summary["fps"],
        "frames_dropped": summary["frames_dropped"],
        "video_frames_decoded": decoded,
        "rss_mb": {
            "first_sample": round(y[0], 2),
            "after_warmup": round(y[steady][0], 2) if steady.any() else None,
            "end": round(y[-1], 2),
            "max": round(y.max(), 2),
            "growth_after_warmup": round(y[steady][-1] - y[steady][0], 2) if steady.any() else None,
            "slope_per_10k_frames": round(slope * 10_000, 3),
            "noise_std": round(noise, 3),
        },
        "rss_samples": [[int(a), round(b, 2)] for a, b in samples],
        "threads_left": sorted(threads_after - threads_before),
        "latency_ms": summary["latency_ms"],
        "machine": machine_info({"ort_intra_op_threads": args.threads}),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(summary))
    rss = report["rss_mb"]
    print(f"\nsoak: {report['frames']} frames in {wall:.1f} s ({report['fps']:.1f} fps), {model_desc}")
    print(f"RSS MB: first {rss['first_sample']}, after {args.warmup} warm-up frames {rss['after_warmup']}, "
          f"end {rss['end']}, max {rss['max']}")
    print(f"growth after warm-up {rss['growth_after_warmup']} MB; slope {rss['slope_per_10k_frames']} MB per "
          f"10k frames; noise (std) {rss['noise_std']} MB; threads left: {report['threads_left'] or 'none'}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
