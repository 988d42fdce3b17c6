"""ONNX -> TensorRT engine: one strongly typed build path for TensorRT 10.3 (JetPack 6.1/6.2) through 11.x
and for TensorRT-RTX 1.x (``flavour="rtx"``: RTX PCs; builds ahead of time with no GPU).

Precision lives in the ONNX artifact (``edgeseg quantize``: FP32, FP16 ONNX, INT8 Q/DQ ONNX), so the
network is built strongly typed and no precision flag is needed; TensorRT 11 removed those flags.
Legacy flags are used only where the running TensorRT still has them and only when asked for
(``legacy_fp16=True``, or a DLA build on 10.x, which needs FP16/INT8 flags).

Before parsing, NVIDIA's plugin library (``ModulatedDeformConv2d``, ``ROIAlign_TRT``) and, with
``plugins="edgeseg"``, our ``tensorrt.plugin`` definitions are registered. The parser's and builder's
messages are captured and raised as :class:`EngineBuildError` (both return None/False on failure
and say why only in the log). The engine gets a sidecar naming the library (flavour, version), the
GPU and compute capabilities and the precision it was built for. Library differences live in
:mod:`edgeseg.runtime.tensorrt_env`.

>>> from edgeseg.export import to_trt                                                # doctest: +SKIP
>>> engine = to_trt("edgeseg/assets/hc18_fastseg.onnx", flavour="rtx", max_batch=4)  # doctest: +SKIP
>>> engine.engine["flavour"], engine.engine["tensorrt"]                             # doctest: +SKIP
('rtx', '1.7.1.116')
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.artifact import Artifact
from edgeseg.errors import EdgesegError, InputError, MissingDependencyError
from edgeseg.runtime.engine_fit import file_digest
from edgeseg.runtime.tensorrt_env import (  # noqa: F401 - import_tensorrt, log_text: re-exported, old home
    RTX_PIN,
    Flavour,
    GpuInfo,
    capturing_logger,
    gpu_info,
    import_tensorrt,
    load_flavour,
    log_text,
)
from edgeseg.runtime.tensorrt_plugins import PLUGIN_CHOICES, register_plugins  # noqa: F401 - PLUGIN_CHOICES: old home

from .engine_cache import EngineCache, cache_key, timing_cache_path

Shape = Sequence[int]


class EngineBuildError(EdgesegError):
    """TensorRT could not parse or build the network; the message carries TensorRT's own log."""


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


def _plugin_implementation(plugins: str) -> str | None:
    """``"aot"``/``"jit"``: what edgeseg's plugins registered (decided once per process when they were
    imported); with AOT the network must prefer it, or TensorRT refuses to create them. None: not ours."""
    if plugins != "edgeseg":
        return None
    from edgeseg.plugins.tensorrt._common import plugin_implementation

    return plugin_implementation()


def _parse(trt, network, logger, onnx_path: Path, mark: int = 0):
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [_parser_error_line(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"TensorRT's ONNX parser rejected {onnx_path}:\n  " + "\n  ".join(errors or ["(no parser errors)"])
            + "\nTensorRT log:\n" + log_text(logger, since=mark)
        )
    return parser  # keep alive with the network


def _parser_error_line(error) -> str:
    """``node 'name' (OpType): reason`` from a ParserError (plain ``str`` for a stand-in)."""
    try:
        return f"node {error.node_name()!r} ({error.node_operator()}): {error.desc()}"
    except AttributeError:
        return str(error)


def _aot_ptx_isa() -> dict[str, str]:
    """Kernel source -> PTX ISA of the AOT PTX TensorRT embedded (checked against the driver when compiled)."""
    from edgeseg.plugins.tensorrt._common import PTX_BUILT

    return dict(PTX_BUILT)


def _configure_dla(trt, flavour: Flavour, builder, config, dla_core: int, gpu_fallback: bool,
                   legacy_precision: str | None) -> None:
    if not flavour.has_dla:
        raise InputError(f"dla_core: got {dla_core}, but {flavour.label} has no DLA support; DLA is a Jetson "
                         "feature of standard TensorRT (--flavour tensorrt on the Jetson)")
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
        config.set_flag(flavour.precision_flag(legacy_precision, "dla_core"))


def _set_timing_cache(config, path: Path | None):
    if path is None:
        return None
    blob = path.read_bytes() if path.exists() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, False):  # written on another device: start a fresh one
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _build_gpu(flavour: Flavour) -> GpuInfo | None:
    """The GPU the build is for: required by standard TensorRT, optional for TensorRT-RTX (AOT)."""
    try:
        return gpu_info()
    except MissingDependencyError as exc:
        if flavour.builds_without_gpu:
            return None
        raise MissingDependencyError(
            f"{exc}. Standard TensorRT builds only on the GPU the engine is for; with no GPU here build with "
            f"TensorRT-RTX (`edgeseg build MODEL.onnx --flavour rtx`, {RTX_PIN}) for RTX cards"
        ) from exc


def _legacy_precision(flavour: Flavour, source: Artifact, legacy_fp16: bool, dla_core: int | None) -> str | None:
    """The precision set by builder flag (weakly typed build), or None for a strongly typed one."""
    if legacy_fp16:
        flavour.precision_flag("fp16", "legacy_fp16")  # raises with the quantize route where absent
        return "fp16"
    if dla_core is not None and flavour.needs_weak_typing_for_dla():
        return "int8" if source.precision == "int8" else "fp16"
    return None


def engine_from_onnx(
    onnx: str | Path | Artifact,
    engine_path: str | Path | None = None,
    *,
    flavour: str = "auto",
    compute_capabilities: Sequence[str] | None = None,
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
        flavour: ``"tensorrt"`` (JetPack/desktop/data centre, builds on the target GPU), ``"rtx"``
            (TensorRT-RTX: RTX PCs, builds with no GPU) or ``"auto"`` (standard when it imports).
        compute_capabilities: TensorRT-RTX targets, e.g. ``["8.6", "8.9"]`` or ``["current"]``
            (default: the library's portable set); standard TensorRT builds for the GPU present.
        shapes, max_batch, opt_batch: optimization profile (see :func:`profile_shapes`).
        workspace_mb: cap on TensorRT's workspace pool (default: TensorRT's, all device memory).
        timing_cache: path of the timing cache; True = the per-GPU cache under ``$EDGESEG_CACHE``;
            None/False = none. Standard TensorRT only (TensorRT-RTX has no use for one).
        dla_core: run on this DLA core (Jetson AGX Orin / Orin NX); ``gpu_fallback`` lets
            unsupported layers run on the GPU.
        plugins: ``"native"`` (NVIDIA's DeformConv/RoiAlign) or ``"edgeseg"`` (our tensorrt.plugin
            ops, standard TensorRT 10.6+); default from the sidecar (``extra["plugins"]``) or ``"native"``.
        optimization_level: builder optimization level 0..5 (TensorRT default 3).
        legacy_fp16: FP16 by builder flag on an FP32 ONNX (standard TensorRT 10.x only, weakly typed).
        detailed_profile: keep layer details for ``polygraphy inspect``/engine inspector.

    Returns:
        The engine's :class:`Artifact` (``.engine`` dict: flavour, tensorrt version, gpu,
        compute_capability, target_compute_capabilities, precision, onnx hash, profiles, plugins, dla_core).

    Example::

        art = engine_from_onnx("hc18_fastseg.onnx", flavour="rtx", max_batch=4)
    """
    source = onnx if isinstance(onnx, Artifact) else Artifact.load(onnx)
    if source.format != "onnx":
        raise InputError(f"onnx: got {source.path.name} ({source.format}), expected an .onnx artifact")
    engine_path = Path(engine_path) if engine_path is not None else source.path.with_suffix(".engine")
    plugins = plugins or source.extra.get("plugins", "native")
    lib = load_flavour(flavour)
    trt = lib.trt
    legacy_precision = _legacy_precision(lib, source, legacy_fp16, dla_core)
    strongly_typed = legacy_precision is None
    gpu = _build_gpu(lib)
    targets = lib.resolve_targets(compute_capabilities, gpu)
    logger = capturing_logger(trt, echo_severity=4 if verbose else 1)
    mark = logger.mark()
    register_plugins(lib, plugins)

    builder = trt.Builder(logger)
    implementation = _plugin_implementation(plugins)
    network = builder.create_network(_network_flags(trt, strongly_typed, prefer_aot=implementation == "aot"))
    parser = _parse(trt, network, logger, source.path, mark)
    config = builder.create_builder_config()
    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    profiles = profile_shapes(source, inputs, shapes, max_batch, opt_batch)
    if profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profiles.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    lib.apply_targets(config, targets)
    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if optimization_level is not None:
        config.builder_optimization_level = int(optimization_level)
    if detailed_profile:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if legacy_precision == "fp16" and dla_core is None:
        config.set_flag(lib.precision_flag("fp16", "legacy_fp16"))
    if dla_core is not None:
        _configure_dla(trt, lib, builder, config, dla_core, gpu_fallback, legacy_precision)
    cache_file = None
    if lib.timing_cache and timing_cache:
        cache_file = timing_cache_path(gpu, lib.version) if timing_cache is True else Path(timing_cache)
    cache = _set_timing_cache(config, cache_file)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{lib.label} could not build an engine from {source.path}:\n"
                               + log_text(logger, worst=1, since=mark))
    build_s = time.perf_counter() - start
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(memoryview(serialized))
    if cache is not None and cache_file is not None:
        cache_file.write_bytes(memoryview(config.get_timing_cache().serialize()))
    del parser

    precision = legacy_precision or source.precision  # a DLA build of an FP32 ONNX on 10.x runs FP16
    artifact = source.with_path(
        engine_path,
        precision=precision,
        versions={**source.versions, lib.spec.module: lib.version},
        engine={
            **lib.describe(),
            "gpu": gpu.name if gpu else None,
            "compute_capability": gpu.compute_capability if gpu else None,
            "target_compute_capabilities": targets,
            "precision": precision,
            "onnx": source.path.name,
            "onnx_sha256": file_digest(source.path),
            "strongly_typed": strongly_typed,
            "plugins": plugins,
            "plugin_implementation": implementation,
            "aot_ptx_isa": _aot_ptx_isa() if implementation == "aot" else None,
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
    flavour: str = "auto",
    cache: EngineCache | bool = True,
    rebuild: bool = False,
    **build_options: Any,
) -> Artifact:
    """ONNX artifact -> engine artifact, reusing a cached engine built with the same library (flavour and
    version), for the same GPU or compute-capability targets, precision and options (``cache=True``:
    :class:`EngineCache` under ``$EDGESEG_CACHE``).

    ``flavour``: ``"auto"``, ``"tensorrt"`` or ``"rtx"`` (see :func:`engine_from_onnx`). ``engine_path``
    given: build (or copy from the cache) to that file. Other options as :func:`engine_from_onnx`.

    Example::

        engine = to_trt("edgeseg/assets/hc18_fastseg.onnx", flavour="rtx", max_batch=4)  # no GPU needed
    """
    source = model if isinstance(model, Artifact) else Artifact.load(model)
    if cache is False:
        return engine_from_onnx(source, engine_path, flavour=flavour, **build_options)
    store = cache if isinstance(cache, EngineCache) else EngineCache()
    lib = load_flavour(flavour)
    gpu = _build_gpu(lib)
    targets = lib.resolve_targets(build_options.get("compute_capabilities"), gpu)
    options = _effective_options(source, {**build_options, "flavour": lib.name, "compute_capabilities": targets})
    key = cache_key(file_digest(source.path), gpu if lib.engine_per_gpu else None, lib.version,
                    source.precision, options, flavour=lib.name, targets=targets)
    cached = None if rebuild else store.lookup(source.path.stem, key)
    if cached is None:
        cached = engine_from_onnx(source, store.path_for(source.path.stem, key), flavour=lib.name,
                                  **build_options).path
    if engine_path is None:
        return Artifact.load(cached)
    engine_path = Path(engine_path)
    engine_path.write_bytes(cached.read_bytes())
    art = Artifact.load(cached).with_path(engine_path)
    art.save()
    return art


# --- check: what would not build -------------------------------------------------------------------
@dataclass
class NodeProblem:
    """One node TensorRT cannot take: its name, op type and the parser's (or builder's) reason."""

    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node or '(graph)'}  [{self.op_type or '-'}]  {self.reason}"


def check_onnx(onnx: str | Path | Artifact, *, flavour: str = "auto", plugins: str | None = None,
               build: bool = True, **build_options: Any) -> tuple[Flavour, list[NodeProblem]]:
    """Parse (and, when that passes, build) ``onnx`` on this machine and list what fails, per node.

    With TensorRT-RTX no GPU is needed. Returns (the flavour used, problems); no problems = it builds.
    ``build_options`` as :func:`engine_from_onnx` (shapes, max_batch, compute_capabilities, ...).
    """
    import tempfile

    path = Path(onnx.path if isinstance(onnx, Artifact) else onnx)
    if not path.exists():
        raise InputError(f"onnx: {path} does not exist")
    lib = load_flavour(flavour)
    trt = lib.trt
    logger = capturing_logger(trt, echo_severity=0)
    mark = logger.mark()
    register_plugins(lib, plugins or "native")
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, True, False))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        problems = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            try:
                problems.append(NodeProblem(error.node_name(), error.node_operator(), error.desc()))
            except AttributeError:
                problems.append(NodeProblem("", "", str(error)))
        return lib, problems or [NodeProblem("", "", log_text(logger, worst=1, since=mark))]
    del parser, network, builder
    if not build:
        return lib, []
    try:
        source = Artifact.load(path)
    except Exception:  # noqa: BLE001 - a bare ONNX without a sidecar: static shapes only
        source = Artifact(path)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            engine_from_onnx(source, Path(tmp) / "check.engine", flavour=lib.name, plugins=plugins,
                             timing_cache=False, **build_options)
        except EngineBuildError as exc:
            return lib, [NodeProblem("", "", str(exc))]
    return lib, []
