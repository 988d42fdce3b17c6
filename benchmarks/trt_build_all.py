"""Build every edgeseg model into a TensorRT engine with TensorRT-RTX on this machine (no GPU needed) and
report, per model, whether it builds, the build time and the engine size, or the failing node and why.

Covered: every ``list_models()`` entry (random weights, 3 channels, 2 classes, exported with the default
route), the shipped ``hc18_fastseg.onnx`` in fp32 and its ``edgeseg quantize`` fp16/int8 files, and
both selfie graphs (when ``edgeseg fetch-selfie`` has run). Each model runs in its own process, so a
library abort (TensorRT-RTX terminates the process on some plugin paths) costs one row, not the run.
Build time is ``build_serialized_network`` alone (the sidecar's ``build_seconds``); export time is
reported separately.

    python benchmarks/trt_build_all.py                       # all; writes results/trt_build_all.json
    python benchmarks/trt_build_all.py --models fastseg fcn  # some
    python benchmarks/trt_build_all.py --markdown            # also print the README table
    python benchmarks/trt_build_all.py --models deeplabv3_dcn maskrcnn --route decomposed \
        --out benchmarks/results/trt_build_decomposed.json   # the standard-op export routes
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

from edgeseg.ops.routes import DEFAULT_ROUTE, ROUTES

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "trt_build_all.json"
ASSET = REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx"
CALIBRATION = REPO.parent / "shared" / "data" / "hc18" / "images"
SKIP = {"tflite_graph": "built from an imported .tflite graph: see the selfie rows"}


def _export(name: str, workdir: Path, route: str) -> Path:
    import torch

    from edgeseg.export.onnx_export import onnx_from_torch
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_channels=3).eval()
    return onnx_from_torch(model, None, workdir / f"{name}.{route}.onnx", route=route).path


def _prepare(entry: str, workdir: Path, route: str) -> Path:
    """The ONNX file of one row: ``model:NAME``, ``hc18:fp32|fp16|int8`` or ``selfie:general|landscape``."""
    kind, _, which = entry.partition(":")
    if kind == "model":
        return _export(which, workdir, route)
    if kind == "hc18":
        if which == "fp32":
            return ASSET
        out = workdir / f"hc18_fastseg.{which}.onnx"
        command = [sys.executable, "-m", "edgeseg", "quantize", str(ASSET), "--precision", which, "-o", str(out)]
        if which == "int8":
            command += ["--calibration", str(CALIBRATION), "--limit", "8"]
        subprocess.run(command, check=True, capture_output=True, text=True)
        return out
    if kind == "selfie":
        from edgeseg.apps.selfie import selfie_model_path

        return selfie_model_path(which)
    raise SystemExit(f"unknown entry {entry!r}")


def one(entry: str, workdir: Path, route: str = "native") -> dict:
    """Export (or find) and build one row in this process; a dict for the JSON."""
    from edgeseg.export.trt_build import check_onnx, engine_from_onnx

    row: dict = {"entry": entry}
    start = time.perf_counter()
    try:
        onnx_path = _prepare(entry, workdir, route)
    except Exception as exc:  # noqa: BLE001 - a row that cannot even export says why
        row.update(status="export failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return row
    row["prepare_s"] = round(time.perf_counter() - start, 2)
    row["onnx_mb"] = round(onnx_path.stat().st_size / 1e6, 2)
    flavour, problems = check_onnx(onnx_path, flavour="rtx", build=False)
    row["tensorrt_rtx"] = flavour.version
    if problems:
        row.update(status="does not parse", problems=[{"node": p.node, "op_type": p.op_type, "reason": p.reason[:300]}
                                                       for p in problems])
        return row
    engine_path = workdir / (onnx_path.stem + ".engine")
    start = time.perf_counter()
    try:
        engine = engine_from_onnx(onnx_path, engine_path, flavour="rtx", max_batch=1, timing_cache=False)
    except Exception as exc:  # noqa: BLE001 - EngineBuildError and friends: the reason is the row
        row.update(status="does not build", reason=str(exc)[:600])
        return row
    facts = engine.engine
    row.update(status="built", build_s=facts["build_seconds"], total_s=round(time.perf_counter() - start, 2),
               engine_mb=round(engine_path.stat().st_size / 1e6, 2), precision=facts["precision"],
               targets=facts["target_compute_capabilities"], route=(engine.extra.get("export") or {}).get("route"))
    return row


def _rows(models: list[str] | None) -> list[str]:
    from edgeseg.models import list_models

    names = models or [m for m in list_models() if m not in SKIP]
    entries = [f"model:{m}" for m in names]
    if not models:
        entries += ["hc18:fp32", "hc18:fp16", "hc18:int8", "selfie:general", "selfie:landscape"]
    return entries


def _run_isolated(entry: str, workdir: Path, timeout: float, route: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--one", entry, "--workdir", str(workdir), "--route", route],
                            capture_output=True, text=True, timeout=timeout, cwd=REPO)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
    return {"entry": entry, "status": f"process died (exit {result.returncode})", "reason": " | ".join(tail)[:400]}


def markdown(rows: list[dict]) -> str:
    lines = ["| model | TensorRT-RTX build (CPU, no GPU) | build s | engine MB | why not |", "|---|---|---:|---:|---|"]
    for r in rows:
        why = ""
        if r.get("problems"):
            why = "; ".join(f"`{p['node']}` ({p['op_type']}): {p['reason'].splitlines()[0][:90]}" for p in r["problems"][:2])
        elif r.get("reason"):
            why = r["reason"].splitlines()[0][:140] if r["reason"].strip() else ""
        built = r["status"] == "built"
        lines.append(f"| `{r['entry'].partition(':')[2]}`{' (' + r['entry'].partition(':')[0] + ')' if not r['entry'].startswith('model:') else ''} "
                     f"| {r['status']} | {r.get('build_s', '') if built else ''} | {r.get('engine_mb', '') if built else ''} "
                     f"| {why.replace('|', '/')} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="zoo model names (default: all, plus hc18 variants and selfie)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help="where ONNX and engine files go (default: temp)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per row")
    parser.add_argument("--route", default=DEFAULT_ROUTE, choices=ROUTES,
                        help="export route of edgeseg's custom ops (edgeseg export --route; default native)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.workdir, args.route)))
        return 0
    from edgeseg.bench.environment import capture

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edgeseg-trt-build-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in _rows(args.models):
        try:
            row = _run_isolated(entry, workdir, args.timeout, args.route)
        except subprocess.TimeoutExpired:
            row = {"entry": entry, "status": f"timed out after {args.timeout:.0f} s"}
        rows.append(row)
        print(f"{entry:<24} {row['status']:<16} build {row.get('build_s', '-')} s  engine {row.get('engine_mb', '-')} MB  "
              f"{(row.get('reason') or '').splitlines()[0][:100] if row.get('reason') else ''}"
              + (f"  {row['problems'][0]['node']} ({row['problems'][0]['op_type']})" if row.get("problems") else ""),
              flush=True)
    if not args.models:
        rows += [{"entry": f"model:{name}", "status": "skipped", "reason": why} for name, why in SKIP.items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": capture(), "cpu_count": os.cpu_count(), "route": args.route,
                                    "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.markdown:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
