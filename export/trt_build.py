"""ONNX -> TensorRT engine: one strongly typed build path for TensorRT 10.3 (JetPack 6.1/6.2) through 11.x.

Precision lives in the ONNX artifact (``edgeseg quantize``: FP32, FP16 ONNX, INT8 Q/DQ ONNX), so the
network is built strongly typed and no precision flag is needed; TensorRT 11 removed those flags.
Legacy flags are used only where the running TensorRT still has them and only when asked for
(``legacy_fp16=True``, or a DLA build on 10.x, which needs FP16/INT8 flags).

Before parsing, NVIDIA's plugin library (``ModulatedDeformConv2d``, ``ROIAlign_TRT``) and, with
``plugins="edgeseg"``, our ``tensorrt.plugin`` definitions are registered. The parser's and builder's
messages are captured and raised as :class:`EngineBuildError` (both return None/False on failure
and say why only in the log). The engine gets a sidecar naming the GPU, compute capability,
TensorRT version and precision it was built for.

>>> from edgeseg.export import to_trt                                   # doctest: +SKIP
>>> engine = to_trt("edgeseg/assets/hc18_fastseg.onnx", max_batch=4)    # doctest: +SKIP
>>> engine.path, engine.engine["tensorrt"]                             # doctest: +SKIP
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeseg._deps import require
from edgeseg.artifact import Artifact
from edgeseg.errors import EdgesegError, InputError

from .engine_cache import (
    EngineCache,
    GpuInfo,
    cache_key,
    file_digest,
    gpu_info,
    parse_version,
    timing_cache_path,
)

MIN_TENSORRT = (10, 3)
PLUGIN_CHOICES = ("native", "edgeseg")
Shape = Sequence[int]


class EngineBuildError(EdgesegError):
    """TensorRT could not parse or build the network; the message carries TensorRT's own log."""


# --- TensorRT module, logger, plugins ---------------------------------------------------------------
def import_tensorrt():
    """``import tensorrt`` with one clear error, and refuse versions edgeseg does not support."""
    trt = require("tensorrt", "building and running TensorRT engines")
    if parse_version(trt.__version__)[:2] < MIN_TENSORRT:
        raise EdgesegError(
            f"TensorRT {trt.__version__} is too old: edgeseg's engine path needs TensorRT >= "
            f"{'.'.join(map(str, MIN_TENSORRT))} (JetPack 6.1+). On JetPack 5.x/6.0 run the ONNX model with "
            "ONNX Runtime or trtexec instead; see docs/jetson.md."
        )
    return trt


def capturing_logger(trt, echo_severity: int = 2):
    """A TensorRT logger that keeps every message (``.messages``: list of (severity int, text)) so a
    failure can be raised with the log; messages at ``echo_severity`` or worse (0 internal error,
    1 error, 2 warning, 3 info, 4 verbose) are also printed to stderr."""
    base = getattr(trt, "ILogger", None)
    if base is None:  # no Python-subclassable logger: TensorRT prints its own log, we cannot keep it
        return trt.Logger()

    class CapturingLogger(base):
        def __init__(self) -> None:
            base.__init__(self)
            self.messages: list[tuple[int, str]] = []

        def log(self, severity, msg) -> None:
            level = int(severity)
            self.messages.append((level, str(msg)))
            if level <= echo_severity:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return CapturingLogger()


def log_text(logger, worst: int = 2, last: int = 40) -> str:
    """The captured messages at ``worst`` severity or worse (the last ``last`` of them)."""
    messages = [m for level, m in getattr(logger, "messages", []) if level <= worst]
    if not messages:
        return "(TensorRT logged no errors or warnings; rerun with verbose=True for the full log)"
    return "\n".join(messages[-last:])


def register_plugins(trt, logger, plugins: str = "native") -> None:
    """Register NVIDIA's plugin library (always) and edgeseg's plugins (``plugins="edgeseg"``).

    Must run before parsing, building or deserializing a network that uses them.
    """
    if plugins not in PLUGIN_CHOICES:
        raise InputError(f"plugins: got {plugins!r}, expected one of {PLUGIN_CHOICES}")
    if not trt.init_libnvinfer_plugins(logger, ""):
        raise EngineBuildError("TensorRT could not initialise its plugin library (libnvinfer_plugin):\n"
                               + log_text(logger))
    if plugins == "edgeseg":
        from edgeseg.plugins.tensorrt import register_all

        register_all()


# --- shapes -------------------------------------------------------------------------------------------
_BATCH_NAMES = {"batch", "n", "batch_size", "b"}
_HEIGHT_NAMES = {"height", "h"}
_WIDTH_NAMES = {"width", "w"}


def profile_shapes(
    artifact: Artifact,
    network_inputs: dict[str, Shape],
    shapes: dict[str, Any] | None = None,
    max_batch: int = 1,
    opt_batch: int = 1,
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) per dynamic network input, from the sidecar's named dynamic axes.

    Args:
        network_inputs: input name -> shape as the parsed network reports it (``-1`` = dynamic).
        shapes: explicit overrides, name -> ``(min, opt, max)`` or one fixed shape.
        max_batch, opt_batch: range of a ``"batch"`` axis (min is 1).

    ``"height"``/``"width"`` axes are fixed at the sidecar's ``preprocess.size`` unless overridden;
    any other dynamic axis needs an explicit entry in ``shapes``. Inputs without ``-1`` need no profile.
    """
    if not (isinstance(max_batch, int) and max_batch >= 1):
        raise InputError(f"max_batch: got {max_batch!r}, expected an int >= 1")
    if not (isinstance(opt_batch, int) and 1 <= opt_batch <= max_batch):
        raise InputError(f"opt_batch: got {opt_batch!r}, expected an int in [1, max_batch={max_batch}]")
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - set(network_inputs))
    if unknown:
        raise InputError(f"shapes: got input names {unknown}, expected names of the network inputs {sorted(network_inputs)}")
    declared = {spec.name: spec.shape for spec in artifact.inputs}
    height, width = artifact.preprocess.size
    profiles = {}
    for name, dims in network_inputs.items():
        if name in shapes:
            profiles[name] = _explicit_profile(name, shapes[name], dims)
            continue
        if all(int(d) >= 0 for d in dims):
            continue
        axis_names = declared.get(name, [None] * len(dims))
        lo, opt, hi = [], [], []
        for axis, dim in enumerate(dims):
            label = str(axis_names[axis]).lower() if axis < len(axis_names) else ""
            if int(dim) >= 0:
                values = (int(dim),) * 3
            elif axis == 0 and (label in _BATCH_NAMES or label == "none"):
                values = (1, opt_batch, max_batch)
            elif label in _HEIGHT_NAMES or (axis == len(dims) - 2 and label == "none"):
                values = (height,) * 3
            elif label in _WIDTH_NAMES or (axis == len(dims) - 1 and label == "none"):
                values = (width,) * 3
            else:
                raise InputError(
                    f"shapes[{name!r}]: axis {axis} ({axis_names[axis]!r}) is dynamic and edgeseg cannot guess "
                    f"its range; pass shapes={{{name!r}: (min, opt, max)}} (CLI: --shapes {name}:MIN,OPT,MAX)"
                )
            lo.append(values[0])
            opt.append(values[1])
            hi.append(values[2])
        profiles[name] = (tuple(lo), tuple(opt), tuple(hi))
    return profiles


def _explicit_profile(name: str, value: Any, dims: Shape):
    triple = value if len(value) == 3 and all(isinstance(v, (list, tuple)) for v in value) else (value,) * 3
    triple = tuple(tuple(int(d) for d in shape) for shape in triple)
    for shape in triple:
        if len(shape) != len(dims):
            raise InputError(f"shapes[{name!r}]: got {shape} (rank {len(shape)}), expected rank {len(dims)} like {tuple(dims)}")
        for got, fixed in zip(shape, dims):
            if int(fixed) >= 0 and got != int(fixed):
                raise InputError(f"shapes[{name!r}]: got {shape}, but the network fixes this input to {tuple(dims)}")
    lo, opt, hi = triple
    if not all(0 < a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise InputError(f"shapes[{name!r}]: got min {lo}, opt {opt}, max {hi}, expected 0 < min <= opt <= max per axis")
    return triple


def parse_shapes_arg(items: Sequence[str]) -> dict[str, tuple]:
    """CLI ``--shapes input:1x1x256x256,1x1x256x256,4x1x256x256`` (or one shape) -> ``{name: (min, opt, max)}``."""
    shapes = {}
    for item in items:
        name, sep, spec = item.rpartition(":")
        if not sep or not name:
            raise InputError(f"--shapes: got {item!r}, expected NAME:MIN,OPT,MAX like input:1x3x256x256,1x3x256x256,4x3x256x256")
        try:
            parts = [tuple(int(d) for d in s.split("x")) for s in spec.split(",")]
        except ValueError as exc:
            raise InputError(f"--shapes: got {item!r}, expected dims as integers joined by 'x'") from exc
        if len(parts) not in (1, 3):
            raise InputError(f"--shapes: got {len(parts)} shapes in {item!r}, expected 1 (fixed) or 3 (min,opt,max)")
        shapes[name] = tuple(parts) if len(parts) == 3 else parts[0]
    return shapes


# --- the build ----------------------------------------------------------------------------------------
def _network_flags(trt, strongly_typed: bool, prefer_aot: bool) -> int:
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    strong = getattr(creation, "STRONGLY_TYPED", None)
    if strongly_typed and strong is not None:
        flags |= 1 << int(strong)
    aot = getattr(creation, "PREFER_AOT_PYTHON_PLUGINS", None)  # 10.9+: our plugins define JIT and AOT
    if prefer_aot and aot is not None:
        flags |= 1 << int(aot)
    return flags


def _aot_registered(plugins: str) -> bool:
    """Our plugins define an AOT implementation too (10.9+ with nvcc): then the network must say which
    to prefer, or TensorRT refuses to create them."""
    if plugins != "edgeseg":
        return False
    from edgeseg.plugins.tensorrt._common import aot_available

    return aot_available()


def _parse(trt, network, logger, onnx_path: Path):
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"TensorRT's ONNX parser rejected {onnx_path}:\n  " + "\n  ".join(errors or ["(no parser errors)"])
            + "\nTensorRT log:\n" + log_text(logger)
        )
    return parser  # keep alive with the network


def _configure_dla(trt, builder, config, dla_core: int, gpu_fallback: bool, legacy_precision: str | None) -> None:
    cores = builder.num_DLA_cores
    if cores <= 0:
        raise InputError(f"dla_core: got {dla_core}, but this device has no DLA cores (num_DLA_cores = 0)")
    if not 0 <= dla_core < cores:
        raise InputError(f"dla_core: got {dla_core}, expected 0..{cores - 1} (this device has {cores} DLA cores)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = dla_core
    if gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if legacy_precision:  # TensorRT 10.x DLA builds need FP16/INT8 flags (weakly typed network)
        config.set_flag(_legacy_flag(trt, legacy_precision))


def _legacy_flag(trt, precision: str):
    """``BuilderFlag.FP16``/``INT8`` where the running TensorRT still has them (removed in 11.0)."""
    flag = getattr(trt.BuilderFlag, precision.upper(), None)
    if flag is None:
        raise InputError(
            f"precision: TensorRT {trt.__version__} has no {precision.upper()} builder flag; precision lives in "
            f"the ONNX: run `edgeseg quantize MODEL.onnx --precision {precision}` and build that file"
        )
    return flag


def _set_timing_cache(trt, config, path: Path | None):
    if path is None:
        return None
    blob = path.read_bytes() if path.exists() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, False):  # written on another device: start a fresh one
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def engine_from_onnx(
    onnx: str | Path | Artifact,
    engine_path: str | Path | None = None,
    *,
    shapes: dict[str, Any] | None = None,
    max_batch: int = 1,
    opt_batch: int = 1,
    workspace_mb: int | None = None,
    timing_cache: str | Path | None | bool = True,
    dla_core: int | None = None,
    gpu_fallback: bool = True,
    plugins: str | None = None,
    optimization_level: int | None = None,
    legacy_fp16: bool = False,
    detailed_profile: bool = False,
    verbose: bool = False,
) -> Artifact:
    """Build a TensorRT engine from an ONNX artifact and write it with its sidecar.

    Args:
        onnx: ``model.onnx`` (sidecar next to it) or its Artifact. Its ``precision`` (fp32/fp16/int8,
            from ``edgeseg quantize``) is what the strongly typed engine runs.
        engine_path: output file; default ``model.engine`` next to the ONNX file.
        shapes, max_batch, opt_batch: optimization profile (see :func:`profile_shapes`).
        workspace_mb: cap on TensorRT's workspace pool (default: TensorRT's, all device memory).
        timing_cache: path of the timing cache; True = the per-GPU cache under ``$EDGESEG_CACHE``;
            None/False = none.
        dla_core: run on this DLA core (Jetson AGX Orin / Orin NX); ``gpu_fallback`` lets
            unsupported layers run on the GPU.
        plugins: ``"native"`` (NVIDIA's DeformConv/RoiAlign) or ``"edgeseg"`` (our tensorrt.plugin
            ops, TensorRT 10.6+); default from the sidecar (``extra["plugins"]``) or ``"native"``.
        optimization_level: builder optimization level 0..5 (TensorRT default 3).
        legacy_fp16: FP16 by builder flag on an FP32 ONNX (TensorRT 10.x only, weakly typed).
        detailed_profile: keep layer details for ``polygraphy inspect``/engine inspector.

    Returns:
        The engine's :class:`Artifact` (``.engine`` dict: gpu, compute_capability, tensorrt,
        precision, onnx hash, profiles, plugins, dla_core).

    Example::

        art = engine_from_onnx("hc18_fastseg.onnx", max_batch=4, workspace_mb=1024)
    """
    source = onnx if isinstance(onnx, Artifact) else Artifact.load(onnx)
    if source.format != "onnx":
        raise InputError(f"onnx: got {source.path.name} ({source.format}), expected an .onnx artifact")
    engine_path = Path(engine_path) if engine_path is not None else source.path.with_suffix(".engine")
    plugins = plugins or source.extra.get("plugins", "native")
    trt = import_tensorrt()
    version = parse_version(trt.__version__)
    if legacy_fp16 and getattr(trt.BuilderFlag, "FP16", None) is None:
        raise InputError(
            f"legacy_fp16: TensorRT {trt.__version__} has no FP16 builder flag; precision lives in the ONNX: "
            f"run `edgeseg quantize {source.path} --precision fp16` and build that file"
        )
    gpu = gpu_info()
    logger = capturing_logger(trt, echo_severity=4 if verbose else 1)
    register_plugins(trt, logger, plugins)

    legacy_precision = None
    if legacy_fp16:
        legacy_precision = "fp16"
    elif dla_core is not None and version[0] < 11:
        legacy_precision = "int8" if source.precision == "int8" else "fp16"
    strongly_typed = legacy_precision is None

    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, strongly_typed, prefer_aot=_aot_registered(plugins)))
    parser = _parse(trt, network, logger, source.path)
    config = builder.create_builder_config()
    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    profiles = profile_shapes(source, inputs, shapes, max_batch, opt_batch)
    if profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profiles.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if optimization_level is not None:
        config.builder_optimization_level = int(optimization_level)
    if detailed_profile:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if legacy_precision == "fp16" and dla_core is None:
        config.set_flag(_legacy_flag(trt, "fp16"))
    if dla_core is not None:
        _configure_dla(trt, builder, config, dla_core, gpu_fallback, legacy_precision)
    cache_file = timing_cache_path(gpu, trt.__version__) if timing_cache is True else (Path(timing_cache) if timing_cache else None)
    cache = _set_timing_cache(trt, config, cache_file)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {source.path}:\n" + log_text(logger, worst=1))
    build_s = time.perf_counter() - start
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(memoryview(serialized))
    if cache is not None and cache_file is not None:
        cache_file.write_bytes(memoryview(config.get_timing_cache().serialize()))
    del parser

    precision = "fp16" if legacy_fp16 else source.precision
    artifact = source.with_path(
        engine_path,
        precision=precision,
        versions={**source.versions, "tensorrt": trt.__version__},
        engine={
            **gpu.to_dict(),
            "tensorrt": trt.__version__,
            "precision": precision,
            "onnx": source.path.name,
            "onnx_sha256": file_digest(source.path),
            "strongly_typed": strongly_typed,
            "plugins": plugins,
            "dla_core": dla_core,
            "profiles": {k: [list(s) for s in v] for k, v in profiles.items()},
            "build_seconds": round(build_s, 2),
        },
    )
    artifact.save()
    return artifact


_NOT_IN_KEY = ("verbose", "timing_cache")  # change the log or build time, not the engine


def _effective_options(source: Artifact, given: dict[str, Any]) -> dict[str, Any]:
    """Every engine-shaping option with its default filled in, so the API and the CLI (which passes
    every option explicitly) agree on the cache key."""
    import inspect

    params = inspect.signature(engine_from_onnx).parameters
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise InputError(f"build options: got unknown {unknown}, expected some of {sorted(params)[2:]}")
    options = {name: p.default for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    options.update(given)
    options["plugins"] = options["plugins"] or source.extra.get("plugins", "native")
    return {k: v for k, v in options.items() if k not in _NOT_IN_KEY}


def to_trt(
    model: str | Path | Artifact,
    engine_path: str | Path | None = None,
    *,
    cache: EngineCache | bool = True,
    rebuild: bool = False,
    **build_options: Any,
) -> Artifact:
    """ONNX artifact -> engine artifact, reusing a cached engine built for this GPU, TensorRT version,
    precision and options (``cache=True``: :class:`EngineCache` under ``$EDGESEG_CACHE``).

    ``engine_path`` given: build (or copy from the cache) to that file. Options as :func:`engine_from_onnx`.

    Example::

        engine = to_trt("edgeseg/assets/hc18_fastseg.onnx", max_batch=4)
        with create_runner(engine) as runner: ...
    """
    source = model if isinstance(model, Artifact) else Artifact.load(model)
    if cache is False:
        return engine_from_onnx(source, engine_path, **build_options)
    store = cache if isinstance(cache, EngineCache) else EngineCache()
    trt = import_tensorrt()
    gpu: GpuInfo = gpu_info()
    options = _effective_options(source, build_options)
    key = cache_key(file_digest(source.path), gpu, trt.__version__, source.precision, options)
    cached = None if rebuild else store.lookup(source.path.stem, key)
    if cached is None:
        cached = engine_from_onnx(source, store.path_for(source.path.stem, key), **build_options).path
    if engine_path is None:
        return Artifact.load(cached)
    engine_path = Path(engine_path)
    engine_path.write_bytes(cached.read_bytes())
    art = Artifact.load(cached).with_path(engine_path)
    art.save()
    return art

