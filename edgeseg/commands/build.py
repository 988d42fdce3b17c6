"""Compile an ONNX artifact into a TensorRT engine (standard TensorRT 10.3 .. 11.x, or TensorRT-RTX).

Two TensorRT libraries ("flavours"): `tensorrt` (JetPack on Jetson, NVIDIA's wheel on desktop and
data-centre GPUs; builds on the GPU the engine is for) and `rtx` (TensorRT-RTX for RTX PCs,
`pip install tensorrt-rtx-cu13`; builds ahead of time with no GPU, runs on RTX GPUs). `--flavour auto`
uses the standard library when it imports, else TensorRT-RTX.

The engine runs the precision of the ONNX file (make FP16 / INT8 files with `edgeseg quantize`); the
network is strongly typed. Dynamic axes come from the sidecar: "batch" spans 1..--max-batch,
"height"/"width" are fixed at the sidecar's preprocess size unless --shapes says otherwise. Engines are
cached per ONNX hash, library and version, GPU or targets, precision and options (under
$EDGESEG_CACHE/engines). An engine only loads in the library and version that built it.

A quantized file's sidecar lists the layers kept in another precision (extra.quantization.layer_precisions,
written by `edgeseg quantize`); before building, the parsed strongly typed network is checked to compute each of
them in that precision, and the build fails with one line per layer that does not. Built on a GPU with
either library, the engine's own layer precisions (engine inspector) are checked too.

`--check` parses and builds on this machine (no GPU needed with TensorRT-RTX) and prints each node
TensorRT cannot take (name, op type, reason); the exit status is 1 when anything fails.

Examples:
  edgeseg build edgeseg/assets/hc18_fastseg.onnx                    # -> hc18_fastseg.engine (+ .json)
  edgeseg build model.onnx --flavour rtx --compute-capability 8.6,8.9   # RTX engine, built on any CPU
  edgeseg build --check model.onnx --flavour rtx                    # what would not build, per node
  edgeseg quantize model.onnx --precision fp16 && edgeseg build model.fp16.onnx
  edgeseg build model.onnx --max-batch 8 --workspace-mb 1024 -o model-b8.engine
  edgeseg build model.onnx --shapes input:1x3x256x256,1x3x512x512,1x3x1024x1024
  edgeseg build model.onnx --dla-core 0                             # Jetson AGX Orin / Orin NX DLA
  edgeseg build model.onnx --plugins edgeseg                        # our TensorRT plugins (standard 10.6+)
"""

from __future__ import annotations

HELP = "compile an ONNX artifact into a TensorRT engine (or --check what would not build)"
ROUTED_OPS = {"DeformConv", "DeformConv2d", "DenseCRF", "RoiAlign", "RoIAlign", "MaxPool"}  # edgeseg export --route


def add_arguments(parser) -> None:
    parser.add_argument("onnx", help="the .onnx artifact (its .json sidecar next to it)")
    parser.add_argument("-o", "--output", default=None, help="engine path (default: MODEL.engine next to the ONNX)")
    parser.add_argument("--flavour", choices=("auto", "tensorrt", "rtx"), default="auto",
                        help="TensorRT library: tensorrt (JetPack/desktop/data centre), rtx (TensorRT-RTX, builds "
                             "without a GPU), auto (tensorrt when it imports, else rtx; default)")
    parser.add_argument("--compute-capability", default=None, metavar="CC[,CC...]",
                        help="TensorRT-RTX targets, e.g. 8.6,8.9 or 'current' (default: the library's portable set)")
    parser.add_argument("--check", action="store_true",
                        help="only parse and build here; print each node that fails (name, op type, reason)")
    parser.add_argument("--max-batch", type=int, default=1, help="largest batch of a dynamic 'batch' axis (default 1)")
    parser.add_argument("--opt-batch", type=int, default=1, help="batch size TensorRT tunes for (default 1)")
    parser.add_argument("--shapes", nargs="+", default=[], metavar="NAME:MIN,OPT,MAX",
                        help="explicit profile, dims joined by x, e.g. input:1x1x256x256,2x1x256x256,4x1x256x256")
    parser.add_argument("--workspace-mb", type=int, default=None, help="workspace memory limit in MiB")
    parser.add_argument("--timing-cache", default=None,
                        help="timing cache file (default: one per GPU and TensorRT version in $EDGESEG_CACHE)")
    parser.add_argument("--no-timing-cache", action="store_true", help="build without a timing cache")
    parser.add_argument("--dla-core", type=int, default=None, help="build for this DLA core (Jetson)")
    parser.add_argument("--no-gpu-fallback", action="store_true", help="with --dla-core: fail if a layer needs the GPU")
    parser.add_argument("--plugins", choices=("native", "edgeseg"), default=None,
                        help="DeformConv/RoiAlign via NVIDIA's plugins (native, default) or edgeseg's (10.6+)")
    parser.add_argument("--optimization-level", type=int, choices=range(6), default=None, metavar="0-5",
                        help="builder optimization level (TensorRT default 3)")
    parser.add_argument("--legacy-fp16", action="store_true",
                        help="FP16 by builder flag on an FP32 ONNX (TensorRT 10.x only; prefer edgeseg quantize)")
    parser.add_argument("--no-cache", action="store_true", help="always build, do not read or fill the engine cache")
    parser.add_argument("--rebuild", action="store_true", help="build even when the cache has this engine")
    parser.add_argument("--verbose", action="store_true", help="print TensorRT's full log")


def run(args) -> int:
    from pathlib import Path

    from edgeseg.export.trt_build import check_onnx, engine_from_onnx, parse_shapes_arg, to_trt

    targets = [t.strip() for t in args.compute_capability.split(",") if t.strip()] if args.compute_capability else None
    profile = dict(shapes=parse_shapes_arg(args.shapes) if args.shapes else None,
                   max_batch=args.max_batch, opt_batch=args.opt_batch, compute_capabilities=targets)
    if args.check:
        flavour, problems = check_onnx(args.onnx, flavour=args.flavour, plugins=args.plugins, **profile)
        where = f"{flavour.label} {flavour.version}"
        if not problems:
            print(f"{args.onnx}: parses and builds with {where}")
            return 0
        print(f"{args.onnx}: {len(problems)} problem(s) with {where}:")
        for problem in problems:
            print(f"  {problem}")
        routed = sorted({p.op_type for p in problems} & ROUTED_OPS)
        if routed:
            print(f"  {', '.join(routed)}: re-export with `edgeseg export --route decomposed` (standard ops only)")
        return 1
    kept = _kept_precisions(args)
    if kept is False:
        return 1
    timing = False if args.no_timing_cache else (args.timing_cache or True)
    options = dict(
        profile, workspace_mb=args.workspace_mb, timing_cache=timing, dla_core=args.dla_core,
        gpu_fallback=not args.no_gpu_fallback, plugins=args.plugins, optimization_level=args.optimization_level,
        legacy_fp16=args.legacy_fp16, verbose=args.verbose,
    )
    if kept and _gpu_here():
        options["detailed_profile"] = True  # the engine inspector needs per-layer detail
    if args.no_cache:
        artifact = engine_from_onnx(args.onnx, args.output, flavour=args.flavour, **options)
    else:
        output = args.output or str(Path(args.onnx).with_suffix(".engine"))
        artifact = to_trt(args.onnx, output, flavour=args.flavour, rebuild=args.rebuild, **options)
    info = artifact.engine or {}
    library = "TensorRT-RTX" if info.get("flavour") == "rtx" else "TensorRT"
    where = (f"on {info['gpu']} (sm {info.get('compute_capability')})" if info.get("gpu") else "ahead of time (no GPU)")
    print(f"wrote {artifact.path} ({artifact.path.stat().st_size / 1e6:.1f} MB) and {artifact.sidecar_path.name}")
    print(f"  {library} {info.get('tensorrt')} {where}, targets {', '.join(info.get('target_compute_capabilities') or [])}, "
          f"precision {info.get('precision')}, plugins {info.get('plugins')}"
          + (f", DLA core {info['dla_core']}" if info.get("dla_core") is not None else ""))
    if kept and info.get("gpu"):
        from edgeseg.export.engine_precisions import engine_precision_mismatches

        mismatches = engine_precision_mismatches(artifact.path, kept, flavour=info.get("flavour") or args.flavour,
                                                 plugins=info.get("plugins") or "native")
        if _report_mismatches(f"{artifact.path.name}: the engine", mismatches, "engine"):
            return 1
        print(f"  the engine keeps the precision of the {len(kept)} layer(s) the sidecar lists")
    return 0


def _kept_precisions(args):
    """The sidecar's layer_precisions after checking the parsed network keeps them: {} when there is nothing to
    check (or a weakly typed build, where TensorRT picks), False when a layer is not kept (printed)."""
    from edgeseg.artifact import Artifact
    from edgeseg.export.engine_precisions import network_precision_mismatches

    source = Artifact.load(args.onnx)
    kept = (source.extra.get("quantization") or {}).get("layer_precisions") or {}
    if not kept:
        return {}
    if args.legacy_fp16 or args.dla_core is not None:
        print(f"  layer precisions not checked: {'--legacy-fp16' if args.legacy_fp16 else '--dla-core'} builds a "
              "weakly typed network, TensorRT picks each layer's precision")
        return {}
    flavour, mismatches, absent = network_precision_mismatches(source, kept, flavour=args.flavour,
                                                               plugins=args.plugins)
    if _report_mismatches(f"{args.onnx}: the {flavour.label} network", mismatches, "network"):
        return False
    folded = f" ({len(absent)} folded away by the parser)" if absent else ""
    print(f"{args.onnx}: the {flavour.label} network computes the {len(kept) - len(absent)} layer(s) the sidecar "
          f"keeps in their precision{folded}")
    return kept


def _report_mismatches(where: str, mismatches: dict, key: str) -> bool:
    import sys

    if not mismatches:
        return False
    print(f"edgeseg build: {where} does not keep {len(mismatches)} layer(s) in the precision the sidecar's "
          "extra.quantization.layer_precisions asks for; nothing built:" if key == "network" else
          f"edgeseg build: {where} does not keep {len(mismatches)} layer(s) in the precision the sidecar asks for:",
          file=sys.stderr)
    for node, found in mismatches.items():
        print(f"  {node}: expected {found['expected']}, got {', '.join(found[key] or ['(not in the engine)'])}",
              file=sys.stderr)
    return True


def _gpu_here() -> bool:
    """A GPU here: the built engine can be deserialized and inspected (the library loaded for the network check)."""
    from edgeseg.errors import EdgesegError
    from edgeseg.runtime.tensorrt_env import gpu_info

    try:
        gpu_info()  # raises when there is none
    except (EdgesegError, ImportError, RuntimeError, OSError):
        return False
    return True
