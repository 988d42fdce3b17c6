"""Loading TensorRT: the two libraries edgeseg builds and runs engines with, behind one small adapter.

The lowest TensorRT module: ``export/`` (build), ``edgeseg.runtime`` (run) and ``plugins/`` import it; it
imports neither of them.

==========  ==================  ======================================================================
flavour     Python module       where it runs
==========  ==================  ======================================================================
tensorrt    ``tensorrt``        Jetson (JetPack's TensorRT 10.3+), desktop and data-centre GPUs
            (10.3 .. 11.x)      (NVIDIA's wheel); builds need the target GPU
rtx         ``tensorrt_rtx``    RTX PCs (compute capability 7.5, 8.0-8.9, 12.x; ``pip install
            (1.x)               tensorrt-rtx-cu13``); builds ahead of time with no GPU at all,
                                runs only on a GPU; no Jetson, no DLA
==========  ==================  ======================================================================

Every difference between them lives here (import, version floor, GPU identity, precision builder flags, target
compute capabilities, DLA, timing cache, TensorRT-RTX's runtime cache, install route), so the builder and the runner ask a
:class:`Flavour` instead of branching on the library. ``auto`` picks the standard library when it
loads, else TensorRT-RTX.

TensorRT keeps one logger per process: the first one handed to a Builder/Runtime wins, later ones
are ignored (it says so in a warning) and the plugin library keeps a raw pointer to the one it got.
So each library gets exactly one :class:`capturing logger <Flavour.logger>` for the process, and a
build or load reads the messages logged since its own :meth:`~CapturingLogger.mark`.

Plan headers and engine compatibility: :mod:`edgeseg.runtime.engine_fit`; edgeseg's own plugins:
:mod:`edgeseg.runtime.tensorrt_plugins`.

>>> flavour = load_flavour("auto")                                   # doctest: +SKIP
>>> flavour.name, flavour.version                                     # doctest: +SKIP
('rtx', '1.7.1.116')
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import EdgesegError, InputError, MissingDependencyError

FLAVOURS = ("tensorrt", "rtx")
CHOICES = ("auto", *FLAVOURS)
RTX_PIN = "tensorrt-rtx-cu13==1.7.1.116"
# TensorRT-RTX's default targets when none are set (NVIDIA's "CPU-only AOT" page): Ampere and later.
RTX_DEFAULT_TARGETS = ("8.0", "8.6", "8.9", "12.0")


@dataclass(frozen=True)
class _Spec:
    module: str
    label: str
    min_version: tuple[int, ...]
    too_old: str


_SPECS = {
    "tensorrt": _Spec("tensorrt", "TensorRT", (10, 3),
                      "edgeseg's engine path needs TensorRT >= 10.3 (JetPack 6.1+). On JetPack 5.x/6.0 run the "
                      "ONNX model with ONNX Runtime or trtexec instead; see docs/jetson.md."),
    "rtx": _Spec("tensorrt_rtx", "TensorRT-RTX", (1, 0), f"upgrade it: pip install {RTX_PIN}"),
}


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; non-numeric tails (``"11.1.0rc1"``) are cut."""
    parts = []
    for piece in str(text).split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)



def is_jetson() -> bool:
    """True on an NVIDIA Jetson (L4T), where only JetPack's standard TensorRT exists."""
    return platform.machine() == "aarch64" and os.path.exists("/etc/nv_tegra_release")


def install_route(name: str | None = None, gpu_found: bool | None = None) -> str:
    """How to get TensorRT on this kind of machine (``name``: one flavour, None: whichever fits)."""
    if is_jetson():
        return ("on Jetson use JetPack's TensorRT (`sudo apt install nvidia-jetpack`, or python3-libnvinfer "
                "for the bindings); TensorRT-RTX does not run on Jetson")
    routes = {
        "rtx": f"RTX PC (GeForce/RTX workstation GPU): `pip install {RTX_PIN}` (also builds engines here with "
               "no GPU; running them needs an RTX GPU)",
        "tensorrt": "desktop or data-centre GPU: NVIDIA's wheel `pip install tensorrt` (or NVIDIA's CUDA "
                    "repository packages); it builds and runs only with the GPU present",
    }
    text = "; ".join(routes[n] for n in ((name,) if name else ("rtx", "tensorrt")))
    if gpu_found is False:
        text += ". No NVIDIA GPU was found on this machine: only TensorRT-RTX can build here (ahead of time)"
    return text


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device an engine is built for or runs on."""

    name: str
    compute_capability: str  # "8.7"

    def to_dict(self) -> dict[str, str]:
        return {"gpu": self.name, "compute_capability": self.compute_capability}


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``device`` through CuPy (or torch as a fallback)."""
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        try:
            props = cupy.cuda.runtime.getDeviceProperties(device)
        except cupy.cuda.runtime.CUDARuntimeError:  # CuPy without a driver or device
            pass
        else:
            name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            return GpuInfo(name, f"{props['major']}.{props['minor']}")
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return GpuInfo(torch.cuda.get_device_name(device), f"{major}.{minor}")
    except ImportError:
        pass
    raise MissingDependencyError(
        "no CUDA device found through CuPy or torch; TensorRT engines need an NVIDIA GPU "
        "(install 'edgeseg[gpu]' for CuPy)"
    )


class CapturingLogger:
    """Marker base; the real class subclasses the library's ``ILogger`` (see :func:`_make_logger`)."""


def _make_logger(trt: ModuleType):
    base = trt.ILogger  # both flavours have it (TensorRT >= 8, TensorRT-RTX)

    class _Logger(base, CapturingLogger):
        """Keeps the last 5000 messages as (serial, severity int, text); echoes those at ``echo`` or
        worse (0 internal error .. 4 verbose) to stderr."""

        def __init__(self) -> None:
            base.__init__(self)
            self.messages: deque[tuple[int, int, str]] = deque(maxlen=5000)
            self.serial = 0
            self.echo = 1

        def log(self, severity, msg) -> None:
            level = int(severity)
            self.serial += 1
            self.messages.append((self.serial, level, str(msg)))
            if level <= self.echo:
                print(f"[TensorRT] {msg}", file=sys.stderr)

        def mark(self) -> int:
            """The serial of the last message so far: pass it to :func:`log_text` to see only newer ones."""
            return self.serial

    return _Logger()


_LOGGERS: dict[int, tuple[ModuleType, Any]] = {}
_PLUGINS_READY: dict[int, ModuleType] = {}


def process_logger(trt: ModuleType):
    """The one logger of this process for library ``trt`` (made on first use, never freed)."""
    entry = _LOGGERS.get(id(trt))
    if entry is None or entry[0] is not trt:
        entry = (trt, _make_logger(trt))
        _LOGGERS[id(trt)] = entry
    return entry[1]


def log_text(logger, worst: int = 2, last: int = 40, since: int = 0) -> str:
    """The logger's messages at ``worst`` severity or worse logged after mark ``since`` (the last ``last``)."""
    messages = [text for serial, level, text in getattr(logger, "messages", ()) if level <= worst and serial > since]
    if not messages:
        return "(TensorRT logged no errors or warnings; rerun with verbose=True for the full log)"
    return "\n".join(messages[-last:])


class Flavour:
    """One loaded TensorRT library and what edgeseg may ask of it.

    Attributes:
        name: ``"tensorrt"`` or ``"rtx"``; trt: the module; version: its ``__version__``.
    """

    def __init__(self, name: str, trt: ModuleType) -> None:
        self.name, self.trt = name, trt
        self.spec = _SPECS[name]
        self.version = str(trt.__version__)
        self.label = self.spec.label

    def __repr__(self) -> str:
        return f"Flavour({self.name!r}, {self.spec.module} {self.version})"

    # --- facts --------------------------------------------------------------------------------
    @property
    def builds_without_gpu(self) -> bool:
        """TensorRT-RTX compiles ahead of time on the CPU; standard TensorRT times kernels on the GPU."""
        return self.name == "rtx"

    @property
    def has_dla(self) -> bool:
        return self.name == "tensorrt"

    @property
    def engine_per_gpu(self) -> bool:
        """Standard TensorRT tunes the engine on the GPU model it runs on (the cache keys on that GPU);
        TensorRT-RTX engines are portable across their target compute capabilities (the key has those)."""
        return self.name == "tensorrt"

    @property
    def python_plugins(self) -> bool:
        """``tensorrt.plugin`` (edgeseg's Python-defined plugins) exists only in standard TensorRT; TensorRT-RTX
        networks have no ``add_plugin*`` and its registry loads only C++ plugin libraries."""
        return self.name == "tensorrt"

    @property
    def runtime_cache(self) -> bool:
        """TensorRT-RTX compiles kernels just in time on the GPU and can keep them in a runtime cache."""
        return self.name == "rtx"

    @property
    def timing_cache(self) -> bool:
        """TensorRT-RTX ignores timing caches and asking for one makes its AOT build look for a GPU."""
        return self.name == "tensorrt"

    def describe(self) -> dict[str, Any]:
        """What the sidecar and the cache key record about the library."""
        return {"flavour": self.name, "tensorrt": self.version, "library": self.spec.module}

    # --- services ------------------------------------------------------------------------------
    @property
    def logger(self):
        return process_logger(self.trt)

    def init_plugins(self) -> None:
        """NVIDIA's plugin library, registered once per process with the process logger (it keeps a
        raw pointer to that logger)."""
        if _PLUGINS_READY.get(id(self.trt)) is self.trt:
            return
        mark = self.logger.mark()
        if not self.trt.init_libnvinfer_plugins(self.logger, ""):
            raise EdgesegError(f"{self.label} could not initialise its plugin library:\n"
                               + log_text(self.logger, since=mark))
        _PLUGINS_READY[id(self.trt)] = self.trt

    def precision_flag(self, precision: str, why: str):
        """``BuilderFlag.FP16``/``INT8`` where this library has it; else an :class:`InputError` naming the
        route (precision in the ONNX). TensorRT 11 and TensorRT-RTX have none."""
        flag = getattr(self.trt.BuilderFlag, precision.upper(), None)
        if flag is None:
            raise InputError(
                f"{why}: {self.label} {self.version} has no {precision.upper()} builder flag; precision lives in "
                f"the ONNX: run `edgeseg quantize MODEL.onnx --precision {precision}` and build that file"
            )
        return flag

    def needs_weak_typing_for_dla(self) -> bool:
        """DLA on TensorRT 10.x needs a weakly typed network with FP16/INT8 flags (11.x does not)."""
        return self.has_dla and parse_version(self.version)[0] < 11

    def execution_context(self, engine, cache_file: Path | None = None):
        """``(context, save)``: an execution context, and a function that writes what it learnt back.

        TensorRT-RTX compiles its kernels for the GPU just in time, on first use; its runtime cache keeps
        them, so ``cache_file`` (when given) is loaded first (a cache from another GPU, driver or library
        version is refused by TensorRT-RTX and the context starts empty) and ``save()`` writes it back.
        Standard TensorRT has nothing to keep: ``save`` does nothing.
        """
        if not self.runtime_cache or cache_file is None:
            return engine.create_execution_context(), lambda: None
        config = engine.create_runtime_config()
        cache = config.create_runtime_cache()
        if cache_file.exists():
            cache.deserialize(cache_file.read_bytes())  # False: written elsewhere; start empty
        config.set_runtime_cache(cache)
        context = engine.create_execution_context(config)

        def save() -> None:
            blob = cache.serialize()
            if blob is None:
                return
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(memoryview(blob))
            tmp.replace(cache_file)

        return context, save

    def resolve_targets(self, targets, gpu) -> list[str]:
        """The compute capabilities an engine is built for, as ``["8.6", ...]``.

        Standard TensorRT builds for the GPU it runs on (``targets`` must be None or that GPU's).
        TensorRT-RTX: ``targets`` such as ``("8.6", "8.9")`` or ``("current",)``; None = the library
        default (``RTX_DEFAULT_TARGETS``), or this GPU's when the default does not cover it (Turing).
        """
        here = gpu.compute_capability if gpu is not None else None
        if self.name == "tensorrt":
            if targets and [here if t == "current" else t for t in targets] != [here]:
                raise InputError(f"compute_capabilities: got {list(targets)}, but standard TensorRT builds only for "
                                 f"the GPU it runs on (compute capability {here}); use --flavour rtx for other targets")
            return [here] if here else []
        known = self.known_targets()
        if not targets:  # this GPU's when the portable default leaves it out but the library knows it (Turing)
            return [here] if here in known and here not in RTX_DEFAULT_TARGETS else list(RTX_DEFAULT_TARGETS)
        chosen = []
        for text in targets:
            text = str(text).strip()
            if text == "current":
                if here is None:
                    raise InputError(f"compute_capabilities: got 'current', but this machine has no GPU; name the "
                                     f"targets instead, e.g. 8.6,8.9 (known: {known})")
                text = here
            if text not in known:
                raise InputError(f"compute_capabilities: got {text!r}, expected some of {known} or 'current'")
            if text not in chosen:
                chosen.append(text)
        return chosen

    def known_targets(self) -> list[str]:
        """Compute capabilities this TensorRT-RTX can target (``ComputeCapability.SM*``), e.g. ``["7.5", ...]``."""
        names = self.trt.ComputeCapability.__members__ if self.name == "rtx" else {}
        return sorted((_cc_text(n) for n in names if n.startswith("SM")), key=lambda cc: tuple(map(int, cc.split("."))))

    def apply_targets(self, config, targets: list[str]) -> None:
        """Set resolved ``targets`` on a builder config (TensorRT-RTX only; the default needs no call)."""
        if self.name != "rtx" or targets == list(RTX_DEFAULT_TARGETS):
            return
        config.num_compute_capabilities = len(targets)
        for index, text in enumerate(targets):
            config.set_compute_capability(getattr(self.trt.ComputeCapability, "SM" + text.replace(".", "")), index)


def _cc_text(name: str) -> str:
    digits = name[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def _load(name: str) -> Flavour:
    spec = _SPECS[name]
    try:
        trt = importlib.import_module(spec.module)
    except ImportError as exc:  # also bindings without their libraries
        raise MissingDependencyError(
            f"{spec.module} cannot be imported ({exc}). Install it: {install_route(name, _gpu_found())}"
        ) from exc
    flavour = Flavour(name, trt)
    if parse_version(flavour.version)[: len(spec.min_version)] < spec.min_version:
        raise EdgesegError(f"{spec.label} {flavour.version} is too old: {spec.too_old}")
    return flavour


def load_flavour(name: str = "auto") -> Flavour:
    """The TensorRT library to use: ``"tensorrt"``, ``"rtx"``, or ``"auto"`` (standard when it loads,
    else TensorRT-RTX). Raises :class:`MissingDependencyError` with this platform's install route."""
    if name not in CHOICES:
        raise InputError(f"flavour: got {name!r}, expected one of {CHOICES}")
    if name != "auto":
        return _load(name)
    problems = []
    for candidate in FLAVOURS:
        try:
            return _load(candidate)
        except MissingDependencyError as exc:
            problems.append(f"{_SPECS[candidate].module}: {exc.__cause__ or exc}")
    raise MissingDependencyError(
        "no TensorRT library imports here (" + "; ".join(problems) + "). Install one: "
        + install_route(None, _gpu_found())
    )


def _gpu_found() -> bool | None:
    """True/False when a quick look (device nodes) tells, None when it cannot."""
    if os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvhost-ctrl"):
        return True
    return False if sys.platform.startswith("linux") else None


def import_tensorrt(flavour: str = "tensorrt"):
    """The TensorRT module of ``flavour`` (see :func:`load_flavour`) with one clear error when missing or too old."""
    return load_flavour(flavour).trt


def capturing_logger(trt, echo_severity: int = 2):
    """The process-wide logger of library ``trt`` (TensorRT keeps one per process), echoing ``echo_severity`` or worse."""
    logger = process_logger(trt)
    logger.echo = echo_severity
    return logger
