"""The model zoo table: parameters and GFLOPs at 256x256 and 512x512 for every model, and ONNX Runtime
latency at 256x256 on this CPU (median and p99 after warm-up, FPS, ratio to deeplabv3 measured in the
same run).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts a multiply-add as 2 FLOPs
and counts convolutions, transposed convolutions and matrix products (deformable convolution: its
matrix product, registered below); element-wise ops, pooling, resizing and bilinear sampling are not
counted. Models are built for 3 input channels and 2 classes with random weights (neither changes
cost or latency meaningfully).

    python benchmarks/model_table.py                   # every model, latency included (a few minutes)
    python benchmarks/model_table.py --no-latency      # parameters and FLOPs only (seconds)
    python benchmarks/model_table.py --models fastseg deeplabv3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "model_table.json"
SIZES = ((256, 256), (512, 512))
BASELINE = "deeplabv3"
SKIP = {"tflite_graph"}  # built from an imported .tflite graph, not from a name


def _register_deform_conv_flops(torch) -> None:
    """Count edgeseg's deformable convolution like a convolution: 2 * N*Cout*Ho*Wo * Cin/groups*kh*kw."""
    from torch.utils.flop_counter import register_flop_formula

    import edgeseg.ops.deform_conv  # noqa: F401 - registers torch.ops.edgeseg.deform_conv2d

    @register_flop_formula(torch.ops.edgeseg.deform_conv2d)
    def _flops(input_shape, weight_shape, offset_shape, *args, out_shape=None, **kwargs) -> int:
        n, c_out, ho, wo = out_shape
        return 2 * n * c_out * ho * wo * weight_shape[1] * weight_shape[2] * weight_shape[3]


def count(torch, model, size: tuple[int, int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, *size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


def latency(torch, model, size: tuple[int, int], threads: int, iterations: int, warmup: int) -> dict:
    """Static 1x3xHxW ONNX export (dynamo) timed in ONNX Runtime CPU; seconds."""
    import onnxruntime as ort
    from edgeseg.export.onnx_export import custom_translation_table

    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    table = custom_translation_table()
    kwargs = {"custom_translation_table": table} if table else {}
    with torch.no_grad():
        program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, **kwargs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(program.model_proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        session.run(None, feed)
        samples.append(time.perf_counter() - start)
    s = np.asarray(samples)
    return {"median_s": float(np.median(s)), "p99_s": float(np.percentile(s, 99)), "iterations": iterations,
            "warmup": warmup, "fps": float(1 / np.median(s))}


def _short_reason(exc: BaseException) -> str:
    """Exception type and first line of its message, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:80] if text else ''}"


def markdown(rows: list[dict], with_latency: bool) -> str:
    head = "| model | params (M) | GFLOPs 256x256 | GFLOPs 512x512 |"
    rule = "|---|---:|---:|---:|"
    if with_latency:
        head += " ORT 256x256 median ms | p99 ms | FPS | latency vs deeplabv3 |"
        rule += "---:|---:|---:|---:|"
    lines = [head, rule]
    for r in rows:
        line = f"| `{r['model']}` | {r['params_m']:.2f} | {r['gflops']['256x256']:.2f} | {r['gflops']['512x512']:.2f} |"
        if with_latency:
            lat = r.get("ort_latency_256")
            if lat:
                ratio = r.get("latency_ratio_to_baseline")
                line += (f" {lat['median_s'] * 1e3:.1f} | {lat['p99_s'] * 1e3:.1f} | {lat['fps']:.0f} | "
                         f"{'' if ratio is None else f'{ratio:.2f}x'} |")
            else:
                line += f" n/a ({r.get('latency_error', 'skipped')}) | | | |"
        lines.append(line)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="default: every zoo model")
    parser.add_argument("--no-latency", action="store_true", help="parameters and FLOPs only")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from edgeseg.bench.environment import capture
    from edgeseg.models import create_model, list_models

    torch.set_num_threads(args.threads)
    _register_deform_conv_flops(torch)
    names = args.models or [m for m in list_models() if m not in SKIP]
    with_latency = not args.no_latency
    if with_latency and BASELINE not in names:
        names = [BASELINE, *names]
    load_before = os.getloadavg()
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = create_model(name, num_classes=2, in_channels=3).eval()
        row = {"model": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
               "input_multiple": getattr(model, "input_multiple", 1),
               "gflops": {f"{h}x{w}": count(torch, model, (h, w)) for h, w in SIZES}}
        if with_latency:
            try:
                row["ort_latency_256"] = latency(torch, model, SIZES[0], args.threads, args.iterations, args.warmup)
            except Exception as exc:  # noqa: BLE001 - one model that does not export must not hide the others
                row["latency_error"] = _short_reason(exc)
        rows.append(row)
        print(f"{name}: done", file=sys.stderr, flush=True)
    base = next((r for r in rows if r["model"] == BASELINE and "ort_latency_256" in r), None)
    for r in rows:
        if base and "ort_latency_256" in r:
            r["latency_ratio_to_baseline"] = r["ort_latency_256"]["median_s"] / base["ort_latency_256"]["median_s"]
    table = markdown(rows, with_latency)
    print(table)
    print(f"1-minute load average before/after: {load_before[0]:.1f}/{os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores", file=sys.stderr)
    report = {
        "benchmark": "model_table",
        "flops_convention": "FlopCounterMode: 1 multiply-add = 2 FLOPs; convs, transposed convs, matmuls and "
                            "deformable-conv matmuls counted; element-wise, pooling, resize, sampling not counted",
        "input": "1x3xHxW, 2 classes, random weights",
        "latency": None if not with_latency else {"backend": "onnxruntime CPUExecutionProvider", "size": "256x256",
                                                  "threads": args.threads, "baseline": BASELINE},
        "machine": capture({"ort_intra_op_num_threads": args.threads, "torch_num_threads": args.threads}),
        # Other processes share the CPU; the 1-minute load average says how much (cores = os.cpu_count()).
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "rows": rows,
        "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
