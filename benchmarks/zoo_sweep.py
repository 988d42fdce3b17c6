"""Sweep the model zoo on this machine: ONNX Runtime vs PyTorch eager at 256x256 and 512x512.

Builds every zoo model (random weights: latency does not depend on them), saves its checkpoint, exports
it to ONNX with dynamic height/width, then runs `edgeseg bench sweep` over (model x backend x size) and
writes the report, plots and JSON to benchmarks/results/zoo_sweep/.

    python benchmarks/zoo_sweep.py                  # all models, 256 and 512
    python benchmarks/zoo_sweep.py --models fastseg deeplabv3 --iterations 30
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "zoo_sweep"
SKIP = {"tflite_graph", "deeplabv3_crf", "maskrcnn"}  # imported graph; custom CRF node (not an ORT op); instance outputs


def build_artifacts(models: list[str], work: Path, channels: int = 3, classes: int = 2) -> list[Path]:
    import torch

    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.export.onnx_export import onnx_from_torch
    from edgeseg.models import create_model, load_checkpoint, save_checkpoint

    paths = []
    for name in models:
        torch.manual_seed(0)
        model = create_model(name, num_classes=classes, in_channels=channels).eval()
        ckpt = work / f"{name}.safetensors"
        save_checkpoint(model, ckpt, Artifact(path=ckpt, classes=[f"c{i}" for i in range(classes)],
                                              preprocess=Preprocess(size=(256, 256))))
        model, artifact = load_checkpoint(ckpt)
        start = time.perf_counter()
        onnx_from_torch(model, artifact, work / f"{name}.onnx")
        print(f"exported {name} in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
        paths += [work / f"{name}.onnx", ckpt]
    return paths


def main() -> int:
    from edgeseg.models import list_models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[m for m in list_models() if m not in SKIP])
    parser.add_argument("--sizes", nargs="*", default=["256x256", "512x512"])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--duration", type=float, default=20.0, help="cap per configuration, seconds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from edgeseg.bench.sweep import SweepSpec, run_sweep, write_report

    with tempfile.TemporaryDirectory() as tmp:
        artifacts = build_artifacts(args.models, Path(tmp))
        spec = SweepSpec(artifacts=[str(p) for p in artifacts], backends=["onnxruntime", "torch"],
                         sizes=[tuple(int(v) for v in s.split("x")) for s in args.sizes],
                         iterations=args.iterations, duration=args.duration, warmup=args.warmup, threads=args.threads)
        (args.out).mkdir(parents=True, exist_ok=True)
        (args.out / "spec.json").write_text(json.dumps({**spec.__dict__, "artifacts": [Path(a).name for a in spec.artifacts]},
                                                       indent=1) + "\n")

        def progress(i, n, artifact, backend, size):
            print(f"[{i + 1}/{n}] {Path(artifact).name} {backend} {size[0]}x{size[1]}", file=sys.stderr, flush=True)

        results = run_sweep(spec, progress=progress)
        for r in results:
            r.artifact = Path(r.artifact).name
        report = write_report(results, args.out)
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
