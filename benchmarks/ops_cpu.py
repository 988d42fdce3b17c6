"""CPU latency of edgeseg's custom ops against a plain-PyTorch baseline of the same shape.

* ``deform_conv2d`` (DCNv2: random offsets and mask, bias) vs ``torch.nn.functional.conv2d`` of the same
  shape: N=1, C=64 -> 64, 3x3, padding 1, at 64x64 and 128x128; forward, and forward+backward (gradients
  of every input).
* ``roi_align`` on a (2, 256, 64, 64) feature map (stride 16 of a 1024x1024 image), output 7x7, aligned,
  100 and 1000 random boxes of 16-400 image pixels; forward, and forward+backward (input gradient). The
  baseline is the usual pure-PyTorch RoIAlign: one ``F.grid_sample`` per image over all its RoIs' sampling
  points (2x2 per bin, bilinear) followed by a 2x2 ``avg_pool2d``; ours runs with ``sampling_ratio=2`` (the
  same samples) and with the adaptive ratio.

Ours and the baseline run alternately (A, B, A, B, ...) so background load hits both alike; after warm-up
each case runs for ``--budget`` seconds (at least ``--min-iters`` and at most ``--max-iters`` calls, and
no longer than ``--limit`` seconds once it has 3). The table gives the median and p99 in milliseconds and ratio = our median / baseline median with a 95%
bootstrap interval.

Run:
  .venv/bin/python benchmarks/ops_cpu.py                 # ~2 minutes
  .venv/bin/python benchmarks/ops_cpu.py --budget 1      # quick look
Writes benchmarks/results/ops_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from edgeseg.bench.environment import capture
from edgeseg.bench.stats import bootstrap_ratio, summarize
from edgeseg.ops import deform_conv2d, roi_align

RESULTS = Path(__file__).resolve().parent / "results" / "ops_cpu.json"


def alternate(fn_a, fn_b, budget_s: float, warmup: int, min_iters: int, max_iters: int, limit_s: float):
    """Call fn_a and fn_b alternately; their latency samples in seconds after ``warmup`` calls each.

    Runs for ``budget_s`` (at least ``min_iters`` pairs, at most ``max_iters``), but stops any case after
    ``limit_s`` once it has 3 pairs, so one slow case cannot take minutes (the count is reported).
    """
    for _ in range(warmup):
        fn_a()
        fn_b()
    a, b = [], []
    start = time.perf_counter()
    while len(a) < max_iters and (len(a) < min_iters or time.perf_counter() - start < budget_s):
        if len(a) >= 3 and time.perf_counter() - start > limit_s:
            break
        for fn, samples in ((fn_a, a), (fn_b, b)):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return a, b


def _forward_backward(fn, tensors):
    def run():
        for t in tensors:
            t.grad = None
        fn().sum().backward()

    return run


def deform_conv_cases(size: int):
    """(label, ours, baseline) for forward and forward+backward at (1, 64, size, size)."""
    g = torch.Generator().manual_seed(size)
    x = torch.randn(1, 64, size, size, generator=g)
    weight = torch.randn(64, 64, 3, 3, generator=g) * 0.05
    bias = torch.randn(64, generator=g)
    offset = torch.randn(1, 18, size, size, generator=g) * 2.0
    mask = torch.rand(1, 9, size, size, generator=g)
    ours = lambda x, o, w, b, m: deform_conv2d(x, o, w, b, padding=1, mask=m)
    base = lambda x, w, b: F.conv2d(x, w, b, padding=1)
    yield "forward", lambda: ours(x, offset, weight, bias, mask), lambda: base(x, weight, bias)
    grads = [t.clone().requires_grad_() for t in (x, offset, weight, bias, mask)]
    base_grads = [grads[0], grads[2], grads[3]]
    yield ("forward+backward", _forward_backward(lambda: ours(*grads), grads),
           _forward_backward(lambda: base(*base_grads), base_grads))


def random_rois(count: int, images: int, image_size: int, generator) -> torch.Tensor:
    """(count, 5) boxes of 16-400 px inside an image_size x image_size image."""
    wh = 16 + torch.rand(count, 2, generator=generator) * 384
    xy = torch.rand(count, 2, generator=generator) * (image_size - wh)
    batch = torch.randint(0, images, (count, 1), generator=generator).float()
    return torch.cat([batch, xy, xy + wh], 1)


def baseline_roi_align(features, rois, output_size: int, spatial_scale: float, samples: int = 2):
    """Baseline RoIAlign in plain PyTorch (aligned, ``samples`` x ``samples`` per bin): one grid_sample per
    image over all its RoIs' sampling points, then avg_pool2d. (K, 5) rois -> (K, C, out, out).
    Not edgeseg.ops.roi.roi_align_grid_sample (the exportable op): this one has no inside mask (a sample beyond
    the map reads the border, not 0) and takes its arguments in another order."""
    n, c, h, w = features.shape
    k = output_size * samples
    steps = (torch.arange(k, dtype=features.dtype) + 0.5) / k  # sample centres across the box, in [0, 1]
    out = features.new_empty((rois.shape[0], c, output_size, output_size))
    for image in range(n):
        select = rois[:, 0] == image
        boxes = rois[select, 1:] * spatial_scale - 0.5  # feature-map pixel coordinates (aligned)
        xs = boxes[:, 0:1] + steps * (boxes[:, 2:3] - boxes[:, 0:1])  # (R, k)
        ys = boxes[:, 1:2] + steps * (boxes[:, 3:4] - boxes[:, 1:2])
        r = xs.shape[0]
        grid = torch.stack([((xs + 0.5) / w * 2 - 1)[:, None, :].expand(r, k, k),
                            ((ys + 0.5) / h * 2 - 1)[:, :, None].expand(r, k, k)], -1)
        sampled = F.grid_sample(features[image : image + 1], grid.reshape(1, r * k, k, 2), mode="bilinear",
                                padding_mode="border", align_corners=False)  # (1, C, R*k, k)
        out[select] = F.avg_pool2d(sampled.reshape(c, r, k, k).transpose(0, 1), samples)
    return out


def roi_align_cases(count: int):
    g = torch.Generator().manual_seed(count)
    features = torch.randn(2, 256, 64, 64, generator=g)
    rois = random_rois(count, 2, 1024, g)
    scale = 1 / 16
    yield ("forward", lambda: roi_align(features, rois, 7, scale, 2, True),
           lambda: baseline_roi_align(features, rois, 7, scale))
    yield ("forward (adaptive ratio)", lambda: roi_align(features, rois, 7, scale, -1, True),
           lambda: baseline_roi_align(features, rois, 7, scale))
    leaf = features.clone().requires_grad_()
    yield ("forward+backward", _forward_backward(lambda: roi_align(leaf, rois, 7, scale, 2, True), [leaf]),
           _forward_backward(lambda: baseline_roi_align(leaf, rois, 7, scale), [leaf]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per case (default 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-iters", type=int, default=10)
    parser.add_argument("--max-iters", type=int, default=300)
    parser.add_argument("--limit", type=float, default=15.0, help="seconds after which a slow case stops (>= 3 pairs)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: stable numbers)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    suites = [("deform_conv2d", "conv2d", f"1x64x{s}x{s} -> 64, 3x3", deform_conv_cases(s)) for s in (64, 128)]
    suites += [("roi_align", "grid_sample", f"{k} boxes, 2x256x64x64 -> 7x7", roi_align_cases(k)) for k in (100, 1000)]
    rows, load_before = [], os.getloadavg()
    for op, baseline, shape, cases in suites:
        for mode, ours, base in cases:
            a, b = alternate(ours, base, args.budget, args.warmup, args.min_iters, args.max_iters, args.limit)
            ratio = bootstrap_ratio(b, a)  # ours / baseline
            rows.append({"op": op, "shape": shape, "mode": mode, "baseline": baseline,
                         "ours": summarize(a).to_dict(), "base": summarize(b).to_dict(),
                         "ratio": ratio.ratio, "ratio_ci95": [ratio.low, ratio.high],
                         "samples": {"ours": a, "baseline": b}})
            r = rows[-1]
            print(f"{op:<14} {shape:<30} {mode:<25} ours {1e3 * r['ours']['median']:9.2f} ms "
                  f"(p99 {1e3 * r['ours']['p99']:9.2f})  {baseline} {1e3 * r['base']['median']:8.2f} ms "
                  f"(p99 {1e3 * r['base']['p99']:8.2f})  x{r['ratio']:.2f}  [{r['ours']['count']} runs]", flush=True)

    print("\n" + markdown_table(rows))
    result = {"benchmark": "ops_cpu", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "config": vars(args) | {"out": str(args.out)},
              "environment": capture(threads={"torch.get_num_threads": torch.get_num_threads()}),
              "load_average": {"before": load_before, "after": os.getloadavg()}, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def markdown_table(rows) -> str:
    lines = ["| op | shape | mode | runs | ours median (p99) ms | baseline | baseline median (p99) ms | ratio (95% CI) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['shape']} | {r['mode']} | {r['ours']['count']} | {1e3 * r['ours']['median']:.2f} "
                     f"({1e3 * r['ours']['p99']:.2f}) | {r['baseline']} | {1e3 * r['base']['median']:.2f} "
                     f"({1e3 * r['base']['p99']:.2f}) | {r['ratio']:.2f}x ({r['ratio_ci95'][0]:.2f}-"
                     f"{r['ratio_ci95'][1]:.2f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
