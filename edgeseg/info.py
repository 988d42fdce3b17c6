"""What this machine can run: library versions, usable backends and why the others are not.

Fast by default (about a second): the pure-Python heavyweights in :data:`METADATA_ONLY` (torch alone takes
seconds to import) are found on disk and versioned from their package metadata, not imported;
``collect(deep=True)`` (``edgeseg info --deep``) imports them too. Compiled bindings that often fail to load
(onnxruntime, cv2, cupy, TensorRT, PyAV, ...) are always imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

OPTIONAL_LIBRARIES = [
    ("numpy", "numpy"), ("torch", "torch"), ("onnx", "onnx"), ("onnxscript", "onnxscript"),
    ("onnxslim", "onnxslim"), ("onnxruntime", "onnxruntime"), ("cv2", "opencv-python-headless"),
    ("cupy", "cupy"), ("tensorrt", "tensorrt"), ("tensorrt_rtx", "tensorrt-rtx-cu13"), ("scipy", "scipy"), ("safetensors", "safetensors"),
    ("pydicom", "pydicom"), ("av", "av"), ("pycocotools", "pycocotools"), ("tflite", "tflite"),
    ("pydensecrf", "pydensecrf2"), ("tritonclient", "tritonclient"),
]


# Found on disk and versioned from their metadata unless deep=True: importing them costs seconds
# (torch ~3 s, onnx ~2 s, onnxscript ~1.5 s, pydicom 0.3 s on a small CPU). cupy (1.5 s) joins them where
# no GPU device node exists: it could not reach a GPU there anyway.
METADATA_ONLY = ("torch", "onnx", "onnxscript", "onnxslim", "pydicom", "tflite", "tritonclient")

# Other distributions that install the same module (tried before a slow scan of every installed package).
OTHER_DISTRIBUTIONS = {"cupy": ("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x")}


@dataclass
class Probe:
    name: str
    ok: bool
    detail: str


def library_version(module: str, dist: str, load: bool = True) -> Probe:
    """Import ``module`` and report its version, or why it does not import. ``load=False``: only find it on
    disk and read the version from its package metadata (imports it when there is none)."""
    if not load:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return Probe(module, False, "not installed")
        version = _metadata_version(module, dist)
        if version:
            return Probe(module, True, version)
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError:
        return Probe(module, False, "not installed")
    except Exception as exc:  # noqa: BLE001 - e.g. tensorrt bindings without its libraries raise ImportError
        return Probe(module, False, f"installed but fails to import: {type(exc).__name__}: {exc}")
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown version"
    return Probe(module, True, str(version))


def _metadata_version(module: str, dist: str) -> str | None:
    """The installed version of ``dist``, else of the distribution that provides ``module`` (cupy-cuda13x)."""
    for name in (dist, *OTHER_DISTRIBUTIONS.get(module, ())):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    for name in importlib.metadata.packages_distributions().get(module, ()):  # slow (reads every RECORD): rare
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def cuda_probe() -> Probe:
    """Find a CUDA GPU through CuPy, then torch, then nvidia-smi."""
    if not may_have_gpu():  # neither CuPy nor torch could see one, and importing them costs seconds
        return Probe("cuda", False, "no driver (no /dev/nvidia0) and no GPU found")
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        if count:
            props = cupy.cuda.runtime.getDeviceProperties(0)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            return Probe("cuda", True, f"{name}, compute capability {props['major']}.{props['minor']} (cupy)")
    except Exception:  # noqa: BLE001 - any failure here means "no usable GPU through cupy"
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return Probe("cuda", True, f"{torch.cuda.get_device_name(0)}, compute capability {major}.{minor} (torch)")
    except Exception:  # noqa: BLE001
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()
            if out:
                return Probe("cuda", True, f"{out} (nvidia-smi; install cupy or torch with CUDA to use it)")
        except (subprocess.SubprocessError, OSError):
            pass
    if not os.path.exists("/dev/nvidia0") and not os.path.exists("/dev/nvhost-ctrl"):
        return Probe("cuda", False, "no driver (no /dev/nvidia0) and no GPU found")
    return Probe("cuda", False, "a device node exists but neither cupy nor torch can use it")


def may_have_gpu() -> bool:
    """False only where no NVIDIA device node can exist (Linux without /dev/nvidia*, /dev/nvhost-*, WSL's /dev/dxg)."""
    if not platform.system() == "Linux":
        return True
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvhost-ctrl", "/dev/dxg"))


def backend_probes(libs: dict[str, Probe], cuda: Probe) -> list[Probe]:
    """Which runners work here, and the reason for each one that does not."""
    def why_not(*names):
        missing = [f"{n}: {libs[n].detail}" for n in names if not libs[n].ok]
        return "; ".join(missing)

    probes = [
        Probe("torch", libs["torch"].ok, libs["torch"].detail if libs["torch"].ok else why_not("torch")),
    ]
    if libs["onnxruntime"].ok:
        import onnxruntime as ort

        providers = ", ".join(ort.get_available_providers())
        probes.append(Probe("onnxruntime", True, f"providers: {providers}"))
    else:
        probes.append(Probe("onnxruntime", False, why_not("onnxruntime")))
    probes.extend(tensorrt_probes(libs, cuda))
    cupy_reason = why_not("cupy") or ("" if cuda.ok else f"cuda: {cuda.detail}")
    probes.append(Probe("cupy (GPU CRF, kernels)", not cupy_reason, cupy_reason or libs["cupy"].detail))
    return probes


def tensorrt_probes(libs: dict[str, Probe], cuda: Probe) -> list[Probe]:
    """Both TensorRT flavours: what each can do here and why not, e.g.
    ``tensorrt_rtx 1.7.1.116: builds here (AOT), runs only on a GPU``."""
    from edgeseg.runtime.tensorrt_env import install_route

    probes = []
    for module, flavour in (("tensorrt", "tensorrt"), ("tensorrt_rtx", "rtx")):
        label, lib = module, libs[module]
        if not lib.ok:
            probes.append(Probe(label, False, f"{lib.detail}; {install_route(flavour, cuda.ok)}"))
        elif flavour == "rtx":
            runs = ("runs on RTX GPUs (this one if it is one: (compute capability 7.5, 8.x or 12.x))" if cuda.ok
                    else f"runs only on a GPU ({cuda.detail})")
            probes.append(Probe(label, True, f"{module} {lib.detail}: builds here (AOT, no GPU needed), {runs}"))
        elif cuda.ok:
            probes.append(Probe(label, True, f"{module} {lib.detail}: builds and runs on this GPU (JetPack, desktop, data centre)"))
        else:
            probes.append(Probe(label, False, f"{module} {lib.detail} imports, but builds and runs only on a GPU "
                                              f"({cuda.detail})"))
    return probes


def collect(deep: bool = False) -> dict:
    """Everything ``edgeseg info`` prints, as a JSON-ready dict (``deep``: import every library, slower)."""
    light = (*METADATA_ONLY, *(() if may_have_gpu() else ("cupy",)))
    libs = {module: library_version(module, dist, load=deep or module not in light)
            for module, dist in OPTIONAL_LIBRARIES}
    cuda = cuda_probe()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "libraries": {name: {"ok": p.ok, "detail": p.detail} for name, p in libs.items()},
        "cuda": {"ok": cuda.ok, "detail": cuda.detail},
        "backends": {p.name: {"ok": p.ok, "detail": p.detail} for p in backend_probes(libs, cuda)},
        "not_imported": [] if deep else [m for m in light if libs[m].ok],
    }
