"""Benchmark latency you can trust: the whole frame (pre, infer, post, CRF) and the model alone, with
median, p90, p99, min, max and throughput, the machine it ran on, and plots.

Examples:
  edgeseg bench edgeseg/assets/hc18_fastseg.onnx                       # ONNX Runtime, 200 runs
  edgeseg bench model.onnx --backend onnxruntime --size 512x512 --iterations 100 --out runs/ort512
  edgeseg bench model.safetensors --backend torch --duration 20 --warmup 20
  edgeseg bench model.onnx --batch 4                                   # adds model-only batched throughput
  edgeseg bench model.onnx --source video.mp4 --sink out.mp4          # glass to glass: capture ... encode
  edgeseg bench compare --interleave a.onnx b.onnx                     # A/B blocks alternating in one process
  edgeseg bench compare runs/a/result.json runs/b/result.json          # two saved runs, B/A per stage
  edgeseg bench history runs/nightly --metric infer                    # a metric across saved runs, regressions
  edgeseg bench sweep sweep.yaml --out benchmarks/results/sweep        # models x backends x sizes report

Every run writes result.json (schema edgeseg.bench v1, documented in edgeseg/bench/result.py), result.csv
and latency.png into --out. Each run is recorded in --blocks blocks; `bench compare` tests B/A across block
medians (iterations of one run are autocorrelated) and calls a difference under the A/A noise floor "within
noise". `--interleave` is the recommended way to compare two models: drift of a shared machine then hits A and B
alike (README, "Comparing runs").
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from ..sizes import parse_size
from ._bare_onnx import add_bare_onnx_options, model_with_assumptions

HELP = "benchmark an artifact (or: bench compare [--interleave] A B, bench history DIR, bench sweep SPEC)"


def add_arguments(parser) -> None:
    parser.add_argument("target", nargs="+", metavar="ARTIFACT | compare A B | history DIR | sweep SPEC",
                        help="a model file with its sidecar, or a sub-mode")
    parser.add_argument("--backend", default="auto", help="auto, onnxruntime, torch, tensorrt (default: auto)")
    parser.add_argument("--size", action="append", default=None, metavar="HxW",
                        help="model input size; repeat to measure several (default: the sidecar's size)")
    parser.add_argument("--batch", type=int, default=1, help="also time model-only inference at this batch size")
    parser.add_argument("--iterations", type=int, default=200, help="timed runs per configuration (default 200)")
    parser.add_argument("--duration", type=float, default=None, help="stop each configuration after S seconds")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    parser.add_argument("--crf", action="store_true", help="include the dense CRF stage")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the backend")
    parser.add_argument("--source", default=None,
                        help="glass to glass: frames read live from a video/folder/camera, rendered and written to "
                             "--sink, every stage timed (default: synthetic 480x640 frames, model stages only)")
    parser.add_argument("--sink", default="null",
                        help="with --source: where rendered frames go (null, out.mp4 to time H.264 encoding, window)")
    parser.add_argument("--out", default=None, help="output folder for JSON, CSV and plots (default: runs/bench-<model>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--blocks", type=int, default=None,
                        help="record the timed runs as N blocks (default 10, fewer for short runs)")
    parser.add_argument("--interleave", nargs=2, metavar=("A", "B"), default=None,
                        help="compare: measure two artifacts now, alternating their blocks in one process")
    parser.add_argument("--min-effect", type=float, default=None, metavar="PCT",
                        help="compare/history: smallest difference in %% reported as real (default: the "
                             "calibrated A/A noise, 2 %% interleaved, 6 %% separate runs)")
    parser.add_argument("--metric", default="infer", help="history: stage to track (default infer)")
    parser.add_argument("--pause-ms", type=float, default=1.0,
                        help="compare --interleave: random idle of 0 to this many ms before each frame, so the "
                             "frame loop does not lock step with the scheduler on a loaded machine (default 1)")
    parser.add_argument("--reload-every", type=int, default=2, metavar="PAIRS",
                        help="compare --interleave: rebuild both models every N block pairs (0: never; default 2)")
    add_bare_onnx_options(parser, input_size=False)  # --size sets the size


def run(args) -> int:
    mode = args.target[0]
    if mode == "compare":
        return _compare(args)
    if mode == "sweep":
        return _sweep(args)
    if mode == "history":
        return _history(args)
    if len(args.target) != 1:
        raise InputError(f"ARTIFACT: got {len(args.target)} paths, expected one (or `compare A B`, `sweep SPEC`)")
    return _bench(args, Path(mode))


def _bench(args, artifact: Path) -> int:
    from ..bench.glass import glass_table, is_glass, run_glass
    from ..bench.measure import run_benchmark
    from ..bench.plots import plot_distribution

    from ..outputs import ensure_writable

    sizes = [parse_size(s, "--size") for s in args.size] if args.size else [None]
    out = ensure_writable(args.out or f"runs/bench-{artifact.stem}", "--out", folder=True)
    model = model_with_assumptions(args, artifact)  # an Artifact for a bare ONNX given --mean/--std/...
    if args.source:
        if args.batch > 1:
            raise InputError(f"--batch: got {args.batch} with --source; glass to glass runs one frame at a time "
                             "(measure batches without --source)")
        results = [
            run_glass(model, args.source, sink=args.sink, backend=args.backend, size=size, iterations=args.iterations,
                      duration=args.duration, warmup=args.warmup, crf=args.crf, threads=args.threads,
                      blocks=args.blocks, progress=not args.no_progress)
            for size in sizes
        ]
    else:
        if args.sink != "null":
            raise InputError(f"--sink: got {args.sink!r} without --source; the sink is part of the glass-to-glass "
                             "measurement of a real source")
        results = [
            run_benchmark(model, backend=args.backend, size=size, batch=args.batch, iterations=args.iterations,
                          duration=args.duration, warmup=args.warmup, crf=args.crf, threads=args.threads,
                          progress=not args.no_progress, blocks=args.blocks)
            for size in sizes
        ]
    classes = _class_names(model)
    for result in results:
        folder = out if len(results) == 1 else out / f"{result.input_size[0]}x{result.input_size[1]}"
        folder.mkdir(parents=True, exist_ok=True)
        if classes:
            result.config["classes"] = classes
        result.save_json(folder / "result.json")
        result.save_csv(folder / "result.csv")
        plot_distribution(result, folder / "latency.png", stage="glass_to_glass" if is_glass(result) else "end_to_end")
        print(glass_table(result) if is_glass(result) else result.table())
        if classes:
            print(f"classes: {', '.join(f'{i} {name}' for i, name in enumerate(classes))}")
        env = result.environment
        print(f"machine: {env['cpu']}, {env['cores_usable']} cores, threads {result.config['threads']}; "
              f"gpu: {env['gpu']['detail']}")
        print(f"wrote {folder}/result.json, result.csv, latency.png\n")
    return 0


def _class_names(model) -> list[str] | None:
    """The class names of the benchmarked model: its sidecar's, or a bare ONNX's assumed ones; None if unreadable."""
    from ..artifact import Artifact
    from ..errors import ArtifactError

    if isinstance(model, Artifact):
        return list(model.classes)
    try:  # a bare .onnx: load reads the graph as the bench did (its one-line announcement is logged once)
        return list(Artifact.load(model).classes)
    except (ArtifactError, InputError):
        return None


def _min_effect(args) -> float | None:
    if args.min_effect is None:
        return None
    if not 0 <= args.min_effect < 100:
        raise InputError(f"--min-effect: got {args.min_effect}, expected a percentage in [0, 100) such as 3")
    return args.min_effect / 100


def _compare(args) -> int:
    from ..bench.compare import compare, comparison_table
    from ..bench.result import BenchResult

    floor = _min_effect(args)
    if len(args.target) != (1 if args.interleave else 3):
        raise InputError("compare: expected two result files (edgeseg bench compare A.json B.json) or two "
                         "artifacts with --interleave (edgeseg bench compare --interleave a.onnx b.onnx)")
    if args.interleave:
        a, b = _interleave(args, *(Path(p) for p in args.interleave))
    else:
        a, b = (BenchResult.load(p) for p in args.target[1:])
    print(comparison_table(a, b, compare(a, b, min_effect=floor)))
    return 0


def _interleave(args, path_a: Path, path_b: Path):
    from ..bench.measure import run_interleaved, source_frames
    from ..outputs import ensure_writable

    for path in (path_a, path_b):
        if path.suffix == ".json":
            raise InputError(f"compare --interleave: got {path}, expected a model file (drop --interleave to "
                             "compare saved result files)")
    if args.size and len(args.size) > 1:
        raise InputError("--size: compare --interleave takes one size")
    out = ensure_writable(args.out or f"runs/compare-{path_a.stem}-vs-{path_b.stem}", "--out", folder=True)
    frames = source_frames(args.source) if args.source else None
    size = parse_size(args.size[0], "--size") if args.size else None
    a, b = run_interleaved(path_a, path_b, backend=args.backend, size=size,
                           iterations=args.iterations, duration=args.duration, warmup=args.warmup, crf=args.crf,
                           threads=args.threads, frames=frames, blocks=args.blocks, progress=not args.no_progress,
                           pause=args.pause_ms / 1e3, reload_every=args.reload_every)
    for name, result in (("A", a), ("B", b)):
        result.save_json(out / name / "result.json")
    print(f"wrote {out}/A/result.json and {out}/B/result.json (`bench compare` of them pairs the blocks again)")
    return a, b


def _history(args) -> int:
    from ..bench.history import history_table, load_history, plot_history
    from ..outputs import ensure_writable

    if len(args.target) != 2:
        raise InputError("history: expected one folder of saved results: edgeseg bench history DIR")
    points = load_history(args.target[1], args.metric, min_effect=_min_effect(args))
    print(history_table(points, args.metric))
    png = ensure_writable(Path(args.out or args.target[1]) / f"history-{args.metric}.png", "--out")
    written = plot_history(points, args.metric, png)
    print(f"wrote {written}" if written else "no plot: matplotlib is not installed (pip install matplotlib)")
    return 0


def _sweep(args) -> int:
    from ..bench.sweep import SweepSpec, run_sweep, write_report

    if len(args.target) != 2:
        raise InputError("sweep: expected one spec file: edgeseg bench sweep sweep.yaml")
    from ..outputs import ensure_writable

    spec = SweepSpec.load(args.target[1])
    ensure_writable(args.out or "runs/sweep", "--out", folder=True)

    def progress(i, n, artifact, backend, size):
        where = f"{size[0]}x{size[1]}" if size else "sidecar size"
        print(f"[{i + 1}/{n}] {Path(artifact).name} on {backend} at {where}", file=sys.stderr, flush=True)

    results = run_sweep(spec, progress=progress)
    report = write_report(results, args.out or "runs/sweep")
    print(report.read_text())
    print(f"wrote {report}")
    return 0
