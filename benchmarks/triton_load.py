"""Triton serving under load: 1, 2, 4, 8 concurrent clients on loopback, with and without dynamic batching.

Two real Triton servers (PyTriton, one ONNX Runtime instance each with ``--threads`` intra-op threads)
serve the HC18 fastseg model side by side on 127.0.0.1: one with the dynamic batcher, one with
``--no-dynamic-batching``. For N = 1, 2, 4, 8 client threads (each its own ``TritonRunner``, gRPC by
default) send the same preprocessed real HC18 frame (1, 1, 256, 256) back to back after a warm-up, for
``--duration`` seconds or ``--max-requests`` per client. Cells alternate (local, dynamic, off / off,
dynamic, local) for ``--rounds`` rounds so the shared machine's drifting load hits every column alike;
rounds are pooled. Reported: throughput (requests / wall time) and client-side latency p50/p99.
Baseline measured in the same rounds: the local ``OnnxRuntimeRunner`` with the same threads, one caller;
ratio = served throughput / local throughput.

Run (needs the Triton venv: `bash scripts/setup_triton.sh`; ~2-3 min):
  .venv/bin/python benchmarks/triton_load.py
  .venv/bin/python benchmarks/triton_load.py --clients 1 4 --duration 3 --protocol http
Writes benchmarks/results/triton_load.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx"
HC18_IMAGE = REPO.parent / "shared" / "data" / "hc18" / "images" / "000_HC.png"
RESULTS = REPO / "benchmarks" / "results" / "triton_load.json"


def frame_input(model: Path) -> np.ndarray:
    """A real HC18 frame, preprocessed as the sidecar says: (1, C, H, W) float32."""
    import cv2

    from edgeseg.artifact import Artifact
    from edgeseg.preprocess import Preprocessor

    frame = cv2.imread(str(HC18_IMAGE)) if HC18_IMAGE.exists() else None
    if frame is None:
        frame = np.random.default_rng(0).integers(0, 255, (540, 800, 3), dtype=np.uint8)
    return Preprocessor(Artifact.load(model).preprocess)(frame)[0]


def stats(latencies: list[float], wall_s: float) -> dict:
    lat = np.asarray(latencies) * 1e3
    return {"requests": int(lat.size), "wall_s": round(wall_s, 3), "throughput_rps": round(lat.size / wall_s, 2),
            "p50_ms": round(float(np.median(lat)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}


def merge(cells: list[dict]) -> dict:
    """Pool the rounds of one cell: all latencies, total requests over total wall time."""
    latencies = [v for c in cells for v in c.pop("_latencies")]
    merged = stats(latencies, sum(c["wall_s"] for c in cells))
    merged["rounds"] = len(cells)
    merged["errors"] = [e for c in cells for e in c.get("errors", [])][:3]
    return merged


def merge_all(baselines: list[dict]) -> dict:
    rps = [b["throughput_rps"] for b in baselines]
    return {"throughput_rps": round(float(np.median(rps)), 2), "p50_ms": round(float(np.median([b["p50_ms"] for b in baselines])), 2),
            "p99_ms": round(float(np.median([b["p99_ms"] for b in baselines])), 2), "per_group": baselines}


def local_baseline(model: Path, x: np.ndarray, threads: int, duration: float, max_requests: int, warmup: int) -> dict:
    from edgeseg.runtime import create_runner

    with create_runner(model, backend="onnxruntime", threads=threads) as runner:
        for _ in range(warmup):
            runner.infer({"input": x})
        latencies, start = [], time.perf_counter()
        while len(latencies) < max_requests and time.perf_counter() - start < duration:
            t = time.perf_counter()
            runner.infer({"input": x})
            latencies.append(time.perf_counter() - t)
        result = stats(latencies, time.perf_counter() - start)
        result["_latencies"] = latencies
        return result


def load_cell(model: Path, url: str, x: np.ndarray, clients: int, duration: float, max_requests: int,
              warmup: int) -> dict:
    """``clients`` threads hammer the server; every wait is bounded by ``duration`` (+ request timeouts)."""
    from edgeseg.runtime import create_runner

    runners = [create_runner(model, backend="triton", url=url, timeout_s=30).activate() for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        try:
            for _ in range(warmup):
                runners[i].infer({"input": x})
        except Exception as exc:  # noqa: BLE001 - reported in the result
            errors.append(f"{type(exc).__name__}: {exc}")
        barrier.wait(120)
        while not errors and len(latencies[i]) < max_requests and time.perf_counter() < deadline[0]:
            t = time.perf_counter()
            try:
                runners[i].infer({"input": x})
            except Exception as exc:  # noqa: BLE001 - reported in the result
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            latencies[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + 1e9
    barrier.wait(120)
    start = time.perf_counter()
    deadline[0] = start + duration
    for t in threads:
        t.join(duration + 60)
    wall = time.perf_counter() - start
    for r in runners:
        r.deactivate()
    flat = [v for lat in latencies for v in lat]
    result = stats(flat, wall)
    result["errors"] = errors[:3]
    result["_latencies"] = flat
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per (mode, clients) cell and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per cell")
    parser.add_argument("--max-requests", type=int, default=400, help="per client per cell")
    parser.add_argument("--warmup", type=int, default=3, help="requests per client before timing")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads (server and baseline); 1 is fastest on a loaded 2-core box")
    parser.add_argument("--max-queue-delay-us", type=int, default=100)
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import edgeseg.triton  # noqa: F401 - registers the triton backend
    from edgeseg.bench.environment import capture
    from edgeseg.triton.local import LocalServer

    x = frame_input(args.model)
    load_before = os.getloadavg()
    common = ["--threads", str(args.threads), "--max-queue-delay-us", str(args.max_queue_delay_us)]
    rows, baselines = [], []
    # Both servers run side by side (an idle one costs nothing) and the cells alternate between them and
    # the local baseline, round by round, so the shared machine's changing load hits every column alike.
    with LocalServer(args.model, *common) as dynamic, LocalServer(args.model, *common, "--no-dynamic-batching") as off:
        servers = {"dynamic": dynamic, "off": off}
        for clients in args.clients:
            samples: dict[str, list[dict]] = {"local": [], "dynamic": [], "off": []}
            for round_index in range(args.rounds):
                order = ["local", "dynamic", "off"] if round_index % 2 == 0 else ["off", "dynamic", "local"]
                for mode in order:
                    if mode == "local":
                        samples[mode].append(local_baseline(args.model, x, args.threads, args.duration,
                                                            args.max_requests, args.warmup))
                        continue
                    server = servers[mode]
                    url = server.grpc_url if args.protocol == "grpc" else server.http_url
                    samples[mode].append(load_cell(args.model, url, x, clients, args.duration, args.max_requests,
                                                   args.warmup))
            base = merge(samples["local"])
            baselines.append({"clients_group": clients, **base})
            for mode in ("dynamic", "off"):
                cell = merge(samples[mode])
                cell.update(batching=mode, clients=clients, loadavg_1min=round(os.getloadavg()[0], 2),
                            ratio_to_local=round(cell["throughput_rps"] / base["throughput_rps"], 3))
                rows.append(cell)
                print(f"  {mode:8s} clients={clients}: {cell['throughput_rps']:.1f} req/s, p50 {cell['p50_ms']:.1f} ms, "
                      f"p99 {cell['p99_ms']:.1f} ms ({cell['ratio_to_local']:.2f}x local {base['throughput_rps']:.1f})",
                      flush=True)
    baseline = merge_all(baselines)

    result = {
        "benchmark": "triton_load", "model": str(args.model.relative_to(REPO) if args.model.is_relative_to(REPO)
                                                 else args.model),
        "input_shape": list(x.shape), "protocol": args.protocol, "duration_s": args.duration, "rounds": args.rounds,
        "max_requests": args.max_requests, "warmup": args.warmup, "max_queue_delay_us": args.max_queue_delay_us,
        "server": "PyTriton 0.7.0 tritonserver (Python backend) + ONNX Runtime CPU, 1 instance, loopback",
        "baseline_note": "local OnnxRuntimeRunner, 1 caller, same threads; ratio_to_local uses the baseline measured "
                         "in the same clients group (alternating rounds)",
        "baseline_local_ort": baseline, "rows": rows,
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "machine": capture(threads={"ort_intra_op": args.threads}),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nlocal ONNX Runtime, 1 caller, {args.threads} threads (median of groups): {baseline['throughput_rps']:.1f} req/s, "
          f"p50 {baseline['p50_ms']:.1f} ms, p99 {baseline['p99_ms']:.1f} ms\n")
    print("| batching | clients | req/s | p50 ms | p99 ms | vs local ORT |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batching']} | {r['clients']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['ratio_to_local']:.2f}x |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
