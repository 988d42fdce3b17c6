"""The machine a benchmark ran on: CPU, cores, threads, GPU, driver, library versions, Jetson power mode."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from ..info import cuda_probe, library_version

BENCH_LIBRARIES = [("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("torch", "torch"),
                   ("tensorrt", "tensorrt"), ("cupy", "cupy"), ("cv2", "opencv-python-headless")]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ORT_NUM_THREADS")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _command(args: list[str]) -> str | None:
    if not shutil.which(args[0]):
        return None
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def gpu_info() -> dict:
    probe = cuda_probe()
    info = {"available": probe.ok, "detail": probe.detail}
    driver = _command(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    if driver:
        info["driver"] = driver.splitlines()[0]
    return info


def jetson_info() -> dict | None:
    """Power mode and clocks on a Jetson (L4T), or None elsewhere."""
    release = Path("/etc/nv_tegra_release")
    if not release.exists():
        return None
    info = {"l4t": release.read_text().splitlines()[0].strip()}
    mode = _command(["nvpmodel", "-q"])
    if mode:
        info["power_mode"] = " ".join(mode.split())
    freqs = {}
    for cpu in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        freqs[cpu.parts[-3]] = int(cpu.read_text().strip()) // 1000
    if freqs:
        info["cpu_mhz"] = freqs
    for devfreq in Path("/sys/class/devfreq").glob("*"):
        if "gpu" in devfreq.name or devfreq.name.endswith(".gpu"):
            cur = devfreq / "cur_freq"
            if cur.exists():
                info["gpu_mhz"] = int(cur.read_text().strip()) // 1_000_000
    return info


def source_revision() -> str | None:
    """``git describe --always --dirty`` of the edgeseg checkout this runs from (None outside a checkout)."""
    return _command(["git", "-C", str(Path(__file__).resolve().parents[2]), "describe", "--always", "--dirty"])


def capture(threads: dict | None = None) -> dict:
    """Everything needed to judge and reproduce a benchmark result."""
    libraries = {}
    for module, dist in BENCH_LIBRARIES:
        probe = library_version(module, dist)
        libraries[module] = probe.detail if probe.ok else None
    return {
        "cpu": cpu_model(),
        "cores_usable": usable_cores(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "thread_settings": {**{k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}, **(threads or {})},
        "libraries": libraries,
        "gpu": gpu_info(),
        "jetson": jetson_info(),
        "edgeseg_revision": source_revision(),
    }
