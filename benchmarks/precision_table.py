"""FP32 / FP16 / INT8 / guarded INT8 of each shipped or benchmarked model: task metric on held-out images, file
size, ONNX Runtime CPU latency, layers kept in FP32. Writes JSON (one entry per model, merged into the existing
file) and prints the README tables.

Models:
  hc18          edgeseg/assets/hc18_fastseg.onnx on HC18 (labelled). INT8 calibrates on training-split images
                (not in the sidecar's val_files); the guard searches on the even-numbered val_files, every row
                is scored on the odd-numbered ones.
  selfie        MediaPipe's selfie segmenter (`edgeseg fetch-selfie`) on frames of the demo video (Megamind.avi,
                every 3rd frame). There are no labelled selfie images: the masks are the FP32 model's own, so
                the metric is agreement with FP32 (mIoU of the candidate's mask vs FP32's), not accuracy. Time
                blocks: first third calibrates, second third is the guard's search set, last third is held out.
  busi_gcn_br, busi_gcn
                the BUSI comparison's best two (DIR/gcn_br.onnx, DIR/gcn_no_br.onnx; --busi-dir), split like hc18 by
                their sidecars' val_files. BUSI is research-only data: neither the models nor the data are shipped.
A model whose files are missing is recorded as skipped, with the reason.

Metric values are taken with Q/DQ computed as the ONNX spec writes it (what TensorRT computes); latency uses
ORT's default session (its fused INT8 kernels), batch 1, the files interleaved round by round.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision_table.py                 (all models)
      OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision_table.py --models selfie  (one, merged into the JSON)
      .venv/bin/python benchmarks/precision_table.py --table                          (print the tables only)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseg.artifact import Artifact
from edgeseg.bench.environment import capture
from edgeseg.errors import ArtifactError
from edgeseg.bench.stats import summarize

MODELS = ("hc18", "selfie", "busi_gcn_br", "busi_gcn")
VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
BUSI_FILES = {"busi_gcn_br": ("gcn_br.onnx",), "busi_gcn": ("gcn_no_br.onnx", "gcn.onnx")}


@dataclass
class Setup:
    """One model's files and split: FP32 artifact, labelled folder, calibration/search/held-out image names."""

    model: Path
    data: Path
    calibration: list[Path]
    search: list[str]
    held: list[str]
    rules: list[str]
    notes: dict[str, str] = field(default_factory=dict)
    hc_csv: Path | None = None
    search_order: str | None = None  # the guard's --search (None: the command line's)
    max_kept: float = 0.5


def val_split(art: Artifact, data: Path, calibration: int, seed: int) -> tuple[list[Path], list[str], list[str]]:
    """Calibration images (training split), guard search files and held-out files (halves of val_files)."""
    from edgeseg.evaluate import select_samples

    val = list(art.extra.get("train", {}).get("split", {}).get("val_files") or [])
    if not val:
        raise SystemExit(f"{art.sidecar_path} records no validation files (extra.train.split.val_files)")
    held = set(val)
    train = [Path(s.image) for s in select_samples(art, data / "images", data / "masks", "all") if s.name not in held]
    pick = np.random.default_rng(seed).choice(len(train), size=min(calibration, len(train)), replace=False)
    return [train[i] for i in sorted(pick)], val[0::2], val[1::2]


def setup_hc18(args, work: Path) -> Setup:
    art = Artifact.load(args.hc18_model)
    calib, search, held = val_split(art, args.hc18_data, args.calibration, seed=0)
    return Setup(art.path, args.hc18_data, calib, search, held, ["dice_drop<=0.005, hc_mm<=0.5",
                                                                "dice_drop<=0.0005, hc_mm<=0.1"],
                 {"metric": "Dice (head) against the HC18 annotations; HC error against the CSV's HC",
                  "held_out": f"{len(held)} odd-numbered val_files (seen by neither calibration nor the guard)",
                  "search": f"{len(search)} even-numbered val_files"},
                 hc_csv=args.hc18_data / "pixel_size_and_hc.csv")


def selfie_frames(model: Path, video: Path, root: Path, step: int) -> list[str]:
    """Every ``step``-th frame of ``video`` as root/images/fNNNN.png and the FP32 model's mask of it as
    root/masks/fNNNN.png (0/255), labelled exactly as the guard labels a candidate (task_metrics.score_model)."""
    import cv2

    from edgeseg.data import load_image, preprocess_image
    from edgeseg.export.task_metrics import EvalSet, score_model

    art = Artifact.load(model)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    capture_ = cv2.VideoCapture(str(video))
    names, index = [], 0
    while True:
        ok, frame = capture_.read()
        if not ok:
            break
        if index % step == 0:
            names.append(f"f{index:04d}.png")
            cv2.imwrite(str(root / "images" / names[-1]), frame)
        index += 1
    capture_.release()
    if not names:
        raise SystemExit(f"{video}: no frames read (install opencv-doc for the sample video)")
    images = [load_image(root / "images" / n) for n in names]
    blank = [np.zeros(i.shape[:2], np.uint8) for i in images]
    data = EvalSet(names, np.stack([preprocess_image(i, art.preprocess) for i in images]), blank,
                   list(art.classes), None, None, art.output_kind)
    for name, label in zip(names, score_model(model, data).labels):
        cv2.imwrite(str(root / "masks" / name), label * 255)
    return names


def setup_selfie(args, work: Path) -> Setup:
    from edgeseg.apps.selfie import selfie_model_path

    model = selfie_model_path()
    names = selfie_frames(model, args.video, work / "selfie", args.frame_step)
    third = len(names) // 3
    calib = [work / "selfie" / "images" / n for n in names[:third]][:args.calibration]
    search, held = names[third:2 * third], names[2 * third:]
    # INT8 error here is spread over many layers and the masks' soft edges (4 % of pixels between 0.4 and 0.6):
    # rank layers by damage, and let the guard keep as many as it needs so the table shows the share
    return Setup(model, work / "selfie", calib, search, held, ["miou_drop<=0.005"],
                 {"metric": "agreement with FP32: mIoU of the candidate's mask against the FP32 model's mask "
                            "(no labelled selfie images here; FP32 scores 1 by construction), not accuracy",
                  "frames": f"every {args.frame_step}rd frame of {args.video.name} ({len(names)} frames): the "
                            f"first {third} calibrate, the next {len(search)} are the guard's search set, the "
                            f"last {len(held)} are held out",
                  "held_out": f"the last {len(held)} frames (seen by neither calibration nor the guard)",
                  "data": f"frames of {args.video.name} with the FP32 model's masks",
                  "search": f"frames {third}..{2 * third - 1} of the sample"},
                 search_order="sensitivity", max_kept=1.0)


def setup_busi(name: str, args, work: Path) -> Setup:
    path = next((args.busi_dir / f for f in BUSI_FILES[name] if (args.busi_dir / f).is_file()), None)
    if path is None:
        raise FileNotFoundError(f"none of {BUSI_FILES[name]} in {args.busi_dir} (the BUSI comparison's model; train "
                                "it or give --busi-dir)")
    art = Artifact.load(path)
    root = work / "busi"
    if not root.exists():  # class-folder layout: images/ is the dataset, masks sit beside the images
        root.mkdir()
        (root / "images").symlink_to(args.busi_data.resolve())
        (root / "masks").mkdir()
    calib, search, held = val_split(art, root, args.calibration, seed=0)
    return Setup(path, root, calib, search, held, ["miou_drop<=0.005, dice_drop<=0.005", "miou_drop<=0.0005"],
                 {"metric": "mIoU (background, benign, malignant) and Dice against the BUSI masks",
                  "data": f"{args.busi_data} (class folders)",
                  "held_out": f"{len(held)} odd-numbered val_files (seen by neither calibration nor the guard)",
                  "search": f"{len(search)} even-numbered val_files"})


def latency(paths: dict[str, Path], feed: np.ndarray, iterations: int, warmup: int) -> dict[str, dict]:
    """Median and p99 ms of ORT CPU sessions (default optimisations), runs interleaved across files."""
    import onnxruntime as ort

    sessions = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    name = next(iter(sessions.values())).get_inputs()[0].name
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, {name: feed})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(iterations):
        for k, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, {name: feed})
            times[k].append(time.perf_counter() - t0)
    stats = {k: summarize(t) for k, t in times.items()}
    return {k: {"median_ms": s.median * 1e3, "p99_ms": s.p99 * 1e3} for k, s in stats.items()}


def held_out_row(path: Path, reference, data, reference_hc: np.ndarray | None) -> dict:
    from edgeseg.export.task_metrics import drops, score_model

    scores = score_model(path, data)
    row = {**scores.summary(data.classes), **drops(reference, scores)}
    if reference_hc is not None:
        row["hc_mae_vs_reference_mm"] = float(np.nanmean(np.abs(scores.hc_mm - reference_hc)))
        row["no_head_found"] = int(np.isnan(scores.hc_mm).sum())
    return row


def measure(setup: Setup, work: Path, args) -> dict:
    """Guard each rule, make plain FP16/INT8, score every file on the held-out images, time them."""
    from edgeseg.apps.ultrasound import read_hc_csv
    from edgeseg.export.precision_guard import guard_quantize
    from edgeseg.export.quantize import quantize_fp16, quantize_int8
    from edgeseg.export.task_metrics import EvalSet, score_model

    source = Artifact.load(setup.model)
    fp32 = source.with_path(work / source.path.name)
    fp32.path.write_bytes(source.path.read_bytes())
    fp32.save()
    guards = {}
    search = setup.search_order or args.search
    for i, rule in enumerate(setup.rules):
        t0 = time.perf_counter()
        guard = guard_quantize(fp32, "int8", setup.data, rule, work / f"guarded{i}.int8.onnx",
                               calibration=setup.calibration, method="auto", search=search, limit=None,
                               max_kept=setup.max_kept, eval_files=setup.search, hc_csv=setup.hc_csv,
                               progress=False)
        guard.report["data"] = setup.notes.get("data", str(setup.data))  # not the temporary folder
        guards[f"guarded int8 ({rule})"] = (guard, time.perf_counter() - t0)
        print(f"  {rule}: {'passes' if guard.passed else guard.message}, kept {[k['layer'] for k in guard.kept]}",
              flush=True)
    first = next(iter(guards.values()))[0]  # the plain INT8 row uses the method the first rule chose
    method = first.report.get("calibration", {}).get("chosen", "percentile")
    paths = {"fp32": fp32.path, "fp16": quantize_fp16(fp32, work / "m.fp16.onnx").path,
             "int8": quantize_int8(fp32, work / "m.int8.onnx", calibration=setup.calibration, method=method).path}
    paths.update({name: g.artifact.path for name, (g, _) in guards.items() if g.passed})
    held = EvalSet.load(fp32, setup.data, limit=None, hc_csv=setup.hc_csv, files=setup.held)
    reference = score_model(fp32.path, held)
    ref_hc = np.array([read_hc_csv(setup.hc_csv)[n].hc_mm for n in held.names]) if setup.hc_csv else None
    rows = {k: held_out_row(p, reference, held, ref_hc) for k, p in paths.items()}
    feed = held.inputs[:1]
    speed = latency(paths, feed, args.iterations, args.warmup)
    for k, p in paths.items():
        rows[k].update(file_mb=p.stat().st_size / 1e6, **speed[k])
    model = setup.model.resolve()
    return {
        "model": str(model.relative_to(REPO)) if model.is_relative_to(REPO) else model.name,
        "accept": setup.rules, **setup.notes,
        "calibration": f"{len(setup.calibration)} images, method {method} (chosen by the guard)",
        "int8_layers": len(first.layers),
        "guards": {name: {"search": f"{setup.notes['search']}, {search}, max kept {setup.max_kept:g}, {seconds:.0f} s, "
                                    f"{g.report.get('trials', 0)} trials",
                          "passed": g.passed, "message": g.message, "kept_fp32": [k["layer"] for k in g.kept],
                          "report": g.report} for name, (g, seconds) in guards.items()},
        "rows": rows,
        "latency": f"ORT CPU session, default optimisations, batch 1 {list(feed.shape)}, {args.warmup} warm-up + "
                   f"{args.iterations} interleaved runs",
    }


def load_results(path: Path) -> dict:
    """The existing JSON, with a file of the earlier one-model layout read as its hc18 entry."""
    if not path.is_file():
        return {"benchmark": "precision_table", "models": {}}
    old = json.loads(path.read_text(encoding="utf-8"))
    if "models" in old:
        return old
    environment = old.pop("environment", None)
    return {"benchmark": "precision_table", "models": {"hc18": {**old, "environment": environment}}}


def table(name: str, entry: dict) -> str:
    """One model's markdown table (a skipped model: one line saying why)."""
    if "skipped" in entry:
        return f"{name}: not measured ({entry['skipped']})"
    rows = entry["rows"]
    hc = "hc_mae_vs_reference_mm" in rows["fp32"]
    agreement = name == "selfie"
    iou = "mIoU vs FP32 mask" if agreement else "mIoU"
    head = f"| file | {iou} | Δ mIoU | Dice (fg) | Δ Dice |" + (" HC vs FP32 mm | HC error mm |" if hc else "")
    lines = [head + " MB | ORT ms median | layers kept FP32 |",
             "|---|" + "---:|" * (4 + 2 * hc + 2) + "---|"]
    layers = entry["int8_layers"]
    method = entry["calibration"].split("method ")[-1].split(" ")[0]
    for key, r in rows.items():
        if key in entry["guards"]:
            guard = entry["guards"][key]
            count = len(guard["kept_fp32"])
            label = f"guarded INT8, `{key[len('guarded int8 ('):-1]}`"
            kept = f"{count} of {layers} ({100 * count / layers:.0f} %)" + ("" if count else ", passes as is")
        else:
            label = {"fp32": "FP32", "fp16": "FP16", "int8": f"INT8 ({method})"}[key]
            kept = {"fp32": "all", "fp16": "softmax/resize/reductions", "int8": f"0 of {layers}"}[key]
        dash = key == "fp32"
        cells = [label, f"{r['miou']:.4f}", "—" if dash else f"{-r['miou_drop']:+.4f}", f"{r['dice']:.4f}",
                 "—" if dash else f"{-r['dice_drop']:+.4f}"]
        if hc:
            cells += ["—" if dash else f"{r['hc_mm']:.3f}", f"{r['hc_mae_vs_reference_mm']:.2f}"]
        cells += [f"{r['file_mb']:.2f}", f"{r['median_ms']:.1f}", kept]
        lines.append("| " + " | ".join(cells) + " |")
    for key, guard in entry["guards"].items():
        if not guard["passed"]:
            lines.append(f"\nguarded INT8, `{key[len('guarded int8 ('):-1]}`: {guard['message']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--hc18-model", type=Path, default=REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx")
    parser.add_argument("--hc18-data", type=Path, default=REPO.parent / "shared" / "data" / "hc18")
    parser.add_argument("--video", type=Path, default=VIDEO, help="selfie frames (the demo's sample video)")
    parser.add_argument("--frame-step", type=int, default=3, help="every Nth frame of --video")
    parser.add_argument("--busi-dir", type=Path, default=REPO / "runs" / "busi_best")
    parser.add_argument("--busi-data", type=Path, default=REPO.parent / "shared" / "data" / "busi")
    parser.add_argument("--calibration", type=int, default=64, help="images for INT8 calibration (at most)")
    parser.add_argument("--search", default="bisect", choices=("bisect", "sensitivity"))
    parser.add_argument("--iterations", type=int, default=100, help="timed runs per file")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--table", action="store_true", help="only print the tables of the existing JSON")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "precision_table.json")
    args = parser.parse_args(argv)

    result = load_results(args.out)
    if not args.table:
        import onnxruntime as ort

        for name in args.models:
            print(f"{name}:", flush=True)
            with tempfile.TemporaryDirectory(prefix=f"edgeseg-precision-{name}-") as tmp:
                work = Path(tmp)
                try:
                    setup = (setup_hc18(args, work) if name == "hc18" else setup_selfie(args, work)
                             if name == "selfie" else setup_busi(name, args, work))
                except (FileNotFoundError, ArtifactError) as exc:
                    result["models"][name] = {"skipped": str(exc)}
                    print(f"  skipped: {exc}")
                    continue
                entry = measure(setup, work, args)
            entry["environment"] = capture(threads={"onnxruntime": ort.__version__})
            result = load_results(args.out)  # again: another run may have written other models meanwhile
            result["models"][name] = entry
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    for name, entry in result["models"].items():
        print(f"\n{name}\n{table(name, entry)}")
    if not args.table:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
