"""One command for a GPU machine: every GPU test with skips turned into failures, every kernel against
its float64 reference on random and real inputs, and a latency table, written as JSON.

Steps:
  1. pytest on the tests marked gpu / cupy / trt, with EDGESEG_REQUIRE_GPU=1 for the markers whose
     library is installed here (a missing CuPy or TensorRT is reported, not silently skipped);
  2. CuPy kernels (DCNv2 im2col and direct, RoIAlign; FP32 and FP16) against the references, on random
     tensors and on a real HC18 ultrasound frame;
  3. latency, batch 1, the HC18 model at its input size: torch eager (baseline), torch + CUDA graph,
     TensorRT per precision (FP32 / FP16 / INT8 ONNX) with each TensorRT flavour installed (standard
     tensorrt, and TensorRT-RTX built for this card: whether it accepted the card, and each engine's
     parity with ONNX Runtime on the same input), and the dense CRF on CuPy against pydensecrf2 (CPU)
     when both are installed. Median and p99 after warm-up.

Run on the GPU machine (nothing is downloaded; needs the HC18 data next to the repo):
  .venv/bin/python benchmarks/gpu_check.py                 # everything, a few minutes
  .venv/bin/python benchmarks/gpu_check.py --skip-tests    # kernels and latency only
Without a CUDA device it stops at once with exit code 2 and says why.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the float64 references live beside the kernel tests

from edgeseg._deps import available
from edgeseg.bench.environment import capture
from edgeseg.bench.stats import summarize

HC18 = REPO.parent / "shared" / "data" / "hc18"
CHECKPOINTS = [REPO / "edgeseg" / "assets" / "hc18_fastseg.safetensors", REPO / "runs" / "hc18_fastseg.safetensors"]


def gpu_problem() -> str | None:
    """None when a CUDA device is reachable through CuPy or torch, else why not."""
    if available("cupy"):
        import cupy

        try:
            if cupy.cuda.runtime.getDeviceCount() > 0:
                return None
        except Exception as exc:  # noqa: BLE001 - CUDARuntimeError without a driver
            cupy_reason = f"CuPy: {exc}"
        else:
            cupy_reason = "CuPy sees no device"
    else:
        cupy_reason = "CuPy is not installed (pip install 'edgeseg[gpu]')"
    if available("torch"):
        import torch

        if torch.cuda.is_available():
            return None
    return f"no CUDA device: {cupy_reason}; torch.cuda.is_available() is False or torch is missing"


# --- 1. tests ----------------------------------------------------------------------------------------
def run_tests(out_dir: Path) -> dict:
    markers = ["gpu"] + [m for m, lib in (("cupy", "cupy"), ("trt", "tensorrt")) if available(lib)]
    missing = [lib for lib in ("cupy", "tensorrt") if not available(lib)]
    junit = out_dir / "gpu_tests.xml"
    env = {**os.environ, "EDGESEG_REQUIRE_GPU": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", " or ".join(markers), str(REPO / "tests"), f"--junitxml={junit}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if junit.exists():
        suite = ElementTree.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in counts}
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"markers": markers, "not_installed": missing, "exit_code": proc.returncode, **counts,
            "failed": failed[:50], "summary": proc.stdout.strip().splitlines()[-1:] or [proc.stderr[-500:]]}


# --- 2. kernels against references -------------------------------------------------------------------
def real_frame(size: int = 24) -> np.ndarray:
    """A (1, 4, size, size) float32 crop of a real HC18 frame (four shifted crops as channels)."""
    from edgeseg.data.dataset import load_image

    image = load_image(sorted((HC18 / "images").glob("*.png"))[0]).astype(np.float32) / 255.0
    h, w = image.shape[:2]
    y, x = h // 2 - size // 2, w // 2 - size // 2
    crops = [image[y + d:y + d + size, x + d:x + d + size] for d in (0, 3, 6, 9)]
    return np.stack(crops)[None].astype(np.float32)


def check_kernels() -> list[dict]:
    import cupy as cp
    from edgeseg.plugins.deform_conv import deform_conv2d
    from edgeseg.plugins.roi_align import roi_align
    from test_kernels_deform_conv import CASES, _random_case, reference_deform_conv2d
    from test_kernels_roi_align import reference_roi_align

    rows = []
    rng = np.random.default_rng(0)
    inputs = [("random", _random_case(CASES[0], seed=1))]
    real = real_frame()
    inputs.append(("hc18", dict(x=real, offset=rng.uniform(-3, 3, (1, 18, 24, 24)).astype(np.float32),
                                weight=rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
                                bias=rng.standard_normal(4).astype(np.float32),
                                mask=rng.uniform(0, 1, (1, 9, 24, 24)).astype(np.float32),
                                stride=(1, 1), padding=(1, 1), dilation=(1, 1))))
    for source, a in inputs:
        want = reference_deform_conv2d(a["x"], a["offset"], a["weight"], a["bias"], a["stride"], a["padding"],
                                       a["dilation"], a["mask"])
        for dtype in ("float32", "float16"):
            dev = {k: cp.asarray(v.astype(dtype)) if isinstance(v, np.ndarray) else v for k, v in a.items()}
            for method in ("im2col", "direct"):
                got = deform_conv2d(dev["x"], dev["offset"], dev["weight"], dev["bias"], a["stride"], a["padding"],
                                    a["dilation"], dev["mask"], method=method)
                err = float(np.abs(cp.asnumpy(got).astype(np.float64) - want).max())
                rows.append({"kernel": f"deform_conv2d/{method}", "input": source, "dtype": dtype,
                             "max_abs_error": err, "reference_max": float(np.abs(want).max())})
    boxes = {"random": np.array([[0, 1, 1, 20, 18], [0, -3, 2, 30, 25], [0, 5, 5, 5.2, 5.4]], np.float32),
             "hc18": np.array([[0, 2, 2, 22, 22], [0, 0, 0, 24, 24]], np.float32)}
    feats = {"random": rng.standard_normal((1, 4, 24, 24)).astype(np.float32), "hc18": real}
    for source in ("random", "hc18"):
        for aligned in (False, True):
            want = reference_roi_align(feats[source], boxes[source], (7, 7), 1.0, 0, aligned)
            for dtype in ("float32", "float16"):
                got = roi_align(cp.asarray(feats[source].astype(dtype)), cp.asarray(boxes[source].astype(dtype)),
                                (7, 7), 1.0, 0, aligned)
                rows.append({"kernel": f"roi_align/aligned={aligned}", "input": source, "dtype": dtype,
                             "max_abs_error": float(np.abs(cp.asnumpy(got).astype(np.float64) - want).max()),
                             "reference_max": float(np.abs(want).max())})
    return rows


# --- 3. latency --------------------------------------------------------------------------------------
def timed(fn, sync, iterations: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    s = summarize(samples)
    return {"median_ms": s.median * 1e3, "p99_ms": s.p99 * 1e3, "count": s.count}


def load_model():
    """The HC18 checkpoint (shipped or latest trained) or, failing that, an untrained fastseg."""
    from edgeseg.models import create_model, load_checkpoint

    for path in CHECKPOINTS:
        if path.exists():
            model, artifact = load_checkpoint(path)
            return model, artifact, str(path.relative_to(REPO))
    from edgeseg.artifact import Artifact, Preprocess

    art = Artifact(Path("fastseg.safetensors"), model="fastseg", model_kwargs={"num_classes": 2, "in_channels": 1},
                   preprocess=Preprocess(size=(256, 256), color="gray", mean=[0.5], std=[0.25]),
                   classes=["background", "head"])
    return create_model("fastseg", num_classes=2, in_channels=1).eval(), art, "fastseg (untrained: no checkpoint)"


def torch_latency(model, shape, iterations, warmup) -> dict:
    import torch

    model = model.cuda().eval()
    x = torch.randn(shape, device="cuda")
    rows = {}
    with torch.inference_mode():
        rows["torch eager fp32"] = timed(lambda: model(x), torch.cuda.synchronize, iterations, warmup)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                model(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)
        rows["torch + CUDA graph fp32"] = timed(graph.replay, torch.cuda.synchronize, iterations, warmup)
    return rows


def tensorrt_latency(artifact, model, workdir: Path, iterations, warmup, flavour: str) -> tuple[dict, dict]:
    """Build the FP32/FP16/INT8 engines with one TensorRT flavour (``tensorrt`` or ``rtx``), time them (plain
    and CUDA graph) and compare each with ONNX Runtime (CPU) on the same input. Returns (latency rows,
    report: library version, whether the library accepted this GPU, parity per precision, errors)."""
    import cupy as cp
    import onnxruntime as ort
    from edgeseg.export.onnx_export import onnx_from_torch
    from edgeseg.export.quantize import quantize
    from edgeseg.export.trt_build import engine_from_onnx
    from edgeseg.runtime.tensorrt_env import load_flavour

    from edgeseg.runtime.tensorrt_runner import TensorRTRunner

    lib = load_flavour(flavour)
    report: dict = {"library": lib.spec.module, "version": lib.version, "accepted": None, "parity": {}, "errors": {}}
    onnx = workdir / "model.onnx"
    onnx = onnx_from_torch(model.cpu(), artifact, onnx) if not onnx.exists() else type(artifact).load(onnx)
    images = sorted((HC18 / "images").glob("*.png"))[:32]
    variants = {"fp32": onnx, "fp16": quantize(onnx, "fp16"), "int8": quantize(onnx, "int8", calibration=images)}
    shape = (1, artifact.preprocess.channels, *artifact.preprocess.size)
    host = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x = cp.asarray(host)
    rows = {}
    for precision, art in variants.items():
        label = f"{lib.label} {lib.version} {precision}"
        try:  # for this card ("current"): TensorRT-RTX otherwise builds its portable default set
            engine = engine_from_onnx(art, workdir / f"{flavour}-{precision}.engine", flavour=flavour,
                                      compute_capabilities=["current"], timing_cache=workdir / "timing.cache")
        except Exception as exc:  # noqa: BLE001 - e.g. RTX has no target for a data-centre card: record why
            report["errors"][precision] = f"build: {type(exc).__name__}: {str(exc)[:400]}"
            report["accepted"] = False
            continue
        try:
            with TensorRTRunner(engine) as runner:
                name = runner.input_names[0]
                got = runner.infer({name: host})
                session = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
                want = dict(zip([o.name for o in session.get_outputs()], session.run(None, {name: host})))
                out = next(iter(want))
                diff = np.abs(np.asarray(got[out], np.float32) - want[out].astype(np.float32))
                agree = float((np.asarray(got[out]).argmax(1) == want[out].argmax(1)).mean())
                report["parity"][precision] = {"max_abs_vs_onnxruntime": float(diff.max()), "argmax_agreement": agree}
            for graph in (False, True):
                with TensorRTRunner(engine, cuda_graph=graph) as runner:
                    rows[label + (" + CUDA graph" if graph else "")] = timed(
                        lambda: runner.infer({runner.input_names[0]: x}), cp.cuda.get_current_stream().synchronize,
                        iterations, warmup)
            report["accepted"] = report["accepted"] is not False
        except Exception as exc:  # noqa: BLE001 - a library that refuses this card says so here
            report["errors"][precision] = f"run: {type(exc).__name__}: {str(exc)[:400]}"
            report["accepted"] = False
    return rows, report


def crf_latency(iterations: int) -> dict:
    """edgeseg.ops.dense_crf on CuPy vs pydensecrf2 on the CPU, one HC18 frame at 256x256, 5 iterations."""
    import cupy as cp

    from edgeseg.data.dataset import load_image
    from edgeseg.ops import dense_crf

    frame = load_image(sorted((HC18 / "images").glob("*.png"))[0])
    import cv2

    frame = cv2.cvtColor(cv2.resize(frame, (256, 256)), cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else cv2.resize(frame, (256, 256))
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 256, 256)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    rows = {}
    p_dev, f_dev = cp.asarray(probs), cp.asarray(frame)
    sync = cp.cuda.get_current_stream().synchronize
    rows["dense CRF CuPy (permutohedral)"] = timed(lambda: dense_crf(p_dev, f_dev), sync, iterations, 3)
    rows["dense CRF CuPy (windowed 7x7 kernel)"] = timed(lambda: dense_crf(p_dev, f_dev, window=7), sync, iterations, 3)
    if available("pydensecrf"):
        import pydensecrf.densecrf as dcrf

        def reference():
            d = dcrf.DenseCRF2D(256, 256, 2)
            d.setUnaryEnergy(np.ascontiguousarray(-np.log(probs.reshape(2, -1))))
            d.addPairwiseGaussian(sxy=3, compat=3)
            d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.ascontiguousarray(frame), compat=10)
            d.inference(5)

        rows["dense CRF pydensecrf2 (CPU)"] = timed(reference, lambda: None, max(iterations // 4, 5), 1)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_check.json")
    args = parser.parse_args(argv)
    problem = gpu_problem()
    if problem:
        print(f"gpu_check: cannot run: {problem}. Run it on a machine with an NVIDIA GPU.", file=sys.stderr)
        return 2
    result: dict = {"benchmark": "gpu_check", "environment": capture()}
    with tempfile.TemporaryDirectory(prefix="edgeseg-gpu-check-") as tmp:
        workdir = Path(tmp)
        if not args.skip_tests:
            result["tests"] = run_tests(workdir)
            print(f"tests: {result['tests']['summary']}")
        if available("cupy"):
            result["kernels"] = check_kernels()
            for row in result["kernels"]:
                print(f"kernel {row['kernel']:<26} {row['input']:<7} {row['dtype']:<8} max|err| {row['max_abs_error']:.2e}")
        model, artifact, model_name = load_model()
        shape = (1, artifact.preprocess.channels, *artifact.preprocess.size)
        latency = {}
        if available("torch"):
            latency.update(torch_latency(model, shape, args.iterations, args.warmup))
        result["tensorrt"] = {}
        for flavour, module in (("tensorrt", "tensorrt"), ("rtx", "tensorrt_rtx")):
            if available(module) and available("cupy") and available("onnxruntime"):
                rows, report = tensorrt_latency(artifact, model, workdir, args.iterations, args.warmup, flavour)
                latency.update(rows)
                result["tensorrt"][flavour] = report
                print(f"{module} {report['version']}: accepted this GPU: {report['accepted']}; parity "
                      + ", ".join(f"{p} max|diff| {v['max_abs_vs_onnxruntime']:.2e} argmax {v['argmax_agreement']:.4f}"
                                  for p, v in report["parity"].items())
                      + "".join(f"\n  {p}: {e}" for p, e in report["errors"].items()))
        if available("cupy"):
            latency.update(crf_latency(max(args.iterations // 10, 10)))
    base = latency.get("torch eager fp32", {}).get("median_ms")
    print(f"\nlatency, batch 1, {model_name}, input {shape}")
    print("| path | median ms | p99 ms | × torch eager |")
    print("|---|---|---|---|")
    for name, row in latency.items():
        row["ratio_to_torch_eager"] = row["median_ms"] / base if base and not name.startswith("dense CRF") else None
        ratio = f"{row['ratio_to_torch_eager']:.2f}" if row["ratio_to_torch_eager"] else "-"
        print(f"| {name} | {row['median_ms']:.3f} | {row['p99_ms']:.3f} | {ratio} |")
    result.update({"model": model_name, "input_shape": list(shape), "latency": latency})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    failed = result.get("tests", {}).get("exit_code", 0) not in (0, 5)
    too_far = any(r["max_abs_error"] > (1e-3 if r["dtype"] == "float32" else 5e-2) * max(1.0, r["reference_max"])
                  for r in result.get("kernels", []))
    return 1 if failed or too_far else 0


if __name__ == "__main__":
    sys.exit(main())
