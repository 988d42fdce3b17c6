"""The classic segmentation models compared on BUSI breast ultrasound (3 classes), one command.

Every model trains with the same budget (epochs, input size, seed, batch, LR, class weights, the same
train/validation split by image) through ``edgeseg train --layout class-folders``, then is scored by
``edgeseg eval`` on the validation split at the images' own resolution. Per row: mean IoU, per-class
IoU, lesion mIoU (benign + malignant), lesion-vs-background Dice, boundary F, parameters, GFLOPs at
256x256 (torch FlopCounterMode, multiply-add = 2), ONNX Runtime CPU latency at 256 and 512 (batch 1,
median), and the mIoU change of FP16 and INT8 (calibrated on training images) ONNX models. Writes
``report.md``, ``results.json`` and plots (mIoU vs latency, per-class IoU bars) to --out.

Encoders: ResNet-18 (``--width`` scales it) for FCN-8s/32s, DeepLabv3(-DCN), DeepLab-attention, PSPNet
and GCN; DeconvNet keeps its VGG-style encoder and fastseg its MobileNetV3 (both are the point of those
models). All start from random weights (no pretrained ResNet can be downloaded here), except
``fastseg_hc18``: fastseg started from the shipped HC18 fetal-head model (every tensor whose name and shape
match: all but the 2-class output layers), the initialisation experiment against ``fastseg`` from scratch.

After the rows, DenseCRF and CRF-as-RNN run on top of the best two rows by mIoU (``--crf-on``; see
``busi_crf.py``). ``--readme README.md`` rewrites the README's table block from results.json.

BUSI is research-only: checkpoints go to --work (default runs/busi_compare, not in git); never commit them.

    .venv/bin/python benchmarks/busi_compare.py                                   # the full comparison
    .venv/bin/python benchmarks/busi_compare.py --models fastseg fcn32s --epochs 1 --size 64 \\
        --latency-sizes 64 --quant-images 4 --out /tmp/busi_micro --work /tmp/busi_micro/runs   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BUSI = REPO.parent / "shared" / "data" / "busi"
RESULTS = REPO / "benchmarks" / "results" / "busi"

# row name -> (zoo model, options); ResNet widths are set from --width at run time
MODELS = {
    "fcn8s": ("fcn", {}),
    "fcn32s": ("fcn32s", {}),
    "deconvnet": ("deconvnet", {}),
    "deeplabv3": ("deeplabv3", {}),
    "deeplab_attention": ("deeplab_attention", {}),
    "pspnet": ("pspnet", {}),
    "gcn_no_br": ("gcn", {"boundary_refinement": False}),
    "gcn_br": ("gcn", {}),
    "deeplabv3_dcn": ("deeplabv3_dcn", {}),
    "fastseg": ("fastseg", {}),
}
RESNET = {"fcn", "fcn32s", "deeplabv3", "deeplab_attention", "pspnet", "gcn", "deeplabv3_dcn"}
HC18 = REPO / "edgeseg" / "assets" / "hc18_fastseg.safetensors"
MODELS["fastseg_hc18"] = ("fastseg", {})
INIT = {"fastseg_hc18": HC18}  # row -> checkpoint its matching tensors start from
README_START, README_END = "<!-- busi-table:start (busi_compare.py --readme) -->", "<!-- busi-table:end -->"

# (claim, with, without, the metric the claim is about: "miou" for region claims, "boundary_f" for boundary ones)
CLAIMS = [
    ("skip connections recover detail (FCN-8s vs FCN-32s)", "fcn8s", "fcn32s", "miou"),
    ("dilation + ASPP beat plain upsampling (DeepLabv3 vs FCN-8s)", "deeplabv3", "fcn8s", "miou"),
    ("pyramid pooling adds global context (PSPNet vs FCN-8s)", "pspnet", "fcn8s", "miou"),
    ("large kernels fix region misclassification (GCN w/o BR vs FCN-8s)", "gcn_no_br", "fcn8s", "miou"),
    ("Boundary Refinement recovers boundaries (GCN+BR vs GCN w/o BR)", "gcn_br", "gcn_no_br", "boundary_f"),
    ("multi-scale attention helps (DeepLab-attention vs DeepLabv3)", "deeplab_attention", "deeplabv3", "miou"),
    ("deformable conv adapts the receptive field (DeepLabv3-DCN vs DeepLabv3)", "deeplabv3_dcn", "deeplabv3", "miou"),
    ("unpooling decoder (DeconvNet vs FCN-8s)", "deconvnet", "fcn8s", "miou"),
    ("ultrasound initialisation helps (fastseg from HC18 vs from scratch)", "fastseg_hc18", "fastseg", "miou"),
]
METRIC_NAMES = {"miou": "mIoU", "boundary_f": "boundary F"}


CRF_CLAIMS = {"densecrf": ("DenseCRF sharpens boundaries", "boundary_f"),
              "crfrnn": ("CRF-as-RNN (trained CRF) helps", "miou")}  # CRF kind -> (claim, metric)


def crf_claims(rows: list[dict]) -> list[tuple[str, str, str, str]]:
    """(claim, CRF row, its base row, metric) for every CRF row present."""
    claims = []
    for r in rows:
        if r.get("base"):
            text, metric = CRF_CLAIMS[r["row"].split("+")[1]]
            claims.append((f"{text} ({r['row']} vs {r['base']})", r["row"], r["base"], metric))
    return claims


def seeded_checkpoint(source: Path, path: Path, name: str, options: dict, classes: list[str]) -> int:
    """A ``name`` checkpoint with ``len(classes)`` outputs whose tensors are ``source``'s wherever name and
    shape match (the rest as initialised), with ``source``'s normalisation; returns the copied tensor count."""
    from edgeseg.artifact import Artifact
    from edgeseg.models import create_model, load_checkpoint, save_checkpoint

    donor, art = load_checkpoint(source)
    model = create_model(name, num_classes=len(classes), in_channels=art.preprocess.channels, **options)
    own, theirs = model.state_dict(), donor.state_dict()
    shared = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict({**own, **shared})
    save_checkpoint(model, path, Artifact(path=path, classes=list(classes), preprocess=art.preprocess))
    return len(shared)


def model_options(row: str, width: int | None) -> tuple[str, dict]:
    name, options = MODELS[row]
    options = dict(options)
    if width and name in RESNET:
        options["width"] = width
    return name, options


def lesion_scores(confusion: list[list[int]]) -> tuple[float, float]:
    """(mean IoU of the lesion classes 1.., lesion-vs-background Dice) from a confusion matrix."""
    from edgeseg.metrics import ConfusionMatrix

    n = np.asarray(confusion, np.int64)
    lesions, binary = ConfusionMatrix(len(n)), ConfusionMatrix(2)  # binary: every lesion class as one
    lesions.matrix[:] = n
    binary.matrix[:] = [[n[0, 0], n[0, 1:].sum()], [n[1:, 0].sum(), n[1:, 1:].sum()]]
    iou = lesions.iou[1:]
    return (float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan")), float(binary.dice[1])


def gflops(torch, model, channels: int, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(REPO / "benchmarks"))
    from model_table import _register_deform_conv_flops

    try:
        _register_deform_conv_flops(torch)
    except Exception:  # noqa: BLE001 - registered already in this process
        pass
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, channels, size, size))
    return counter.get_total_flops() / 1e9


def ort_latency_ms(onnx_path: Path, channels: int, size: int, threads: int, iterations: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)
    for _ in range(3):
        session.run(None, {name: x})
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def run_row(row: str, args) -> dict:
    import torch

    from edgeseg.artifact import Artifact
    from edgeseg.evaluate import evaluate
    from edgeseg.export.onnx_export import onnx_from_torch
    from edgeseg.models import load_checkpoint
    from edgeseg.train import TrainConfig, last_path_of, train

    name, options = model_options(row, args.width)
    ckpt = args.work / f"{row}.safetensors"
    seconds, init = None, None
    if args.retrain or not ckpt.exists():
        if row in INIT:
            from edgeseg.data.class_folders import class_folder_samples

            init = args.work / f"{row}.init.safetensors"
            copied = seeded_checkpoint(INIT[row], init, name, options, class_folder_samples(args.data)[1])
            print(f"{row}: {copied} tensors from {INIT[row].name}", flush=True)
        cfg = TrainConfig(images=str(args.data), layout="class-folders", mask_suffix="_mask", background=["normal"],
                          out=str(ckpt), model=name, model_kwargs=options, size=(args.size, args.size),
                          epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          class_weights="auto" if args.class_weights == "auto" else None, limit=args.limit,
                          val_fraction=0.2, threads=args.threads, max_minutes=args.max_minutes, progress=False,
                          init=str(init) if init else None,
                          command="benchmarks/busi_compare.py " + " ".join(sys.argv[1:]))
        seconds = train(cfg).seconds
    model, art = load_checkpoint(ckpt)
    last = Artifact.load(last_path_of(ckpt)).extra["train"]  # the best checkpoint's history stops at its epoch
    report = evaluate(ckpt, args.data, None, split="val", threads=args.threads)
    channels = art.preprocess.channels
    out = {
        "row": row, "model": name, "options": options, "classes": report.metrics["classes"],
        "init": str(INIT[row].relative_to(REPO)) if row in INIT else "random",
        "train_seconds": seconds if seconds is not None else last["state"].get("seconds"),
        "epochs_run": len(last["history"]), "best_epoch": last["state"]["best_epoch"] + 1,
        "stopped_by_time_budget": last["state"].get("stopped_by_time_budget", False),
        **metrics_of(report),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops_256": gflops(torch, model, channels, 256),
    }
    onnx_path = args.work / f"{row}.onnx"
    onnx_from_torch(model, art, onnx_path)
    out["latency_ms"] = {str(s): ort_latency_ms(onnx_path, channels, s, args.threads, args.latency_iterations)
                         for s in args.latency_sizes}
    if args.quant_images:
        out.update(quant_deltas(onnx_path, art, args))
    return out


def metrics_of(report) -> dict:
    """The row fields that come from an ``EvalReport`` (the same for trained and CRF rows)."""
    m = report.metrics
    lesion_miou, lesion_dice = lesion_scores(m["confusion_matrix"])
    return {"val_images": report.images, "miou": m["mean_iou"], "iou": m["iou"], "lesion_miou": lesion_miou,
            "lesion_dice": lesion_dice, "pixel_accuracy": m["pixel_accuracy"],
            "mean_class_accuracy": m["mean_class_accuracy"], "fw_iou": m["frequency_weighted_iou"],
            "boundary_f": m["mean_boundary_f"], "boundary_f_per_class": m["boundary_f"]}


RUN_KEYS = ("command", "device", "max_minutes", "total_minutes")
SAME_BUDGET = ("epochs", "size", "width", "batch_size", "lr", "seed", "class_weights", "limit", "threads",
               "latency_sizes", "quant_images")


def kept_rows(args) -> tuple[list[dict], list[dict]]:
    """--update: the rows of --out/results.json that this run does not redo, and the runs that made them."""
    path = args.out / "results.json"
    if not path.exists():
        raise SystemExit(f"--update: {path} does not exist; run without --update first")
    saved = json.loads(path.read_text())
    old = saved["setup"]
    differ = [f"{k} {old.get(k)!r} there, {getattr(args, k)!r} here" for k in SAME_BUDGET if old.get(k) != getattr(args, k)]
    if differ:
        raise SystemExit(f"--update: the budget differs from {path}: {'; '.join(differ)}; expected the same budget "
                         "as the rows kept")
    runs = old.get("runs") or [{k: old.get(k) for k in RUN_KEYS}]
    keep = [{"run": 0, **r} for r in saved["rows"] if r["row"] not in args.models and not r.get("base")]
    return keep, runs


def _row_order(row: dict) -> tuple:
    names = list(MODELS)
    base = row.get("base") or row["row"]
    return (bool(row.get("base")), names.index(base) if base in names else len(names), row["row"])


def crf_rows(rows: list[dict], args):
    """Yield DenseCRF and CRF-as-RNN rows on top of --crf-on (``auto``: the best two trained rows by mIoU)."""
    from busi_crf import crf_rnn_row, dense_crf_row

    trained = [r for r in rows if not r.get("base")]
    if args.crf_on == ["none"]:
        return
    if args.crf_on == ["auto"]:
        bases = sorted(trained, key=lambda r: r["miou"], reverse=True)[:2]
    else:
        by_row = {r["row"]: r for r in trained}
        missing = [b for b in args.crf_on if b not in by_row]
        if missing:
            raise SystemExit(f"--crf-on: {missing} not among this run's rows {sorted(by_row)}")
        bases = [by_row[b] for b in args.crf_on]
    missing = [b["row"] for b in bases if not (args.work / f"{b['row']}.safetensors").exists()]
    if missing:
        raise SystemExit(f"--crf-on: no checkpoint for {missing} in {args.work} (a row kept by --update was trained "
                         "elsewhere); add them to --models or name other rows")
    for base in bases:
        ckpt = args.work / f"{base['row']}.safetensors"
        for make in (dense_crf_row, crf_rnn_row):
            t0 = time.perf_counter()
            r = make(base, ckpt, args, metrics_of)
            print(f"{r['row']}: mIoU {fmt(r['miou'])} lesion mIoU {fmt(r['lesion_miou'])} lesion Dice "
                  f"{fmt(r['lesion_dice'])} boundary F {fmt(r['boundary_f'])} ({(time.perf_counter() - t0) / 60:.1f} min)",
                  flush=True)
            yield r


def quant_deltas(onnx_path: Path, art, args) -> dict:
    """FP16 and INT8 ONNX mIoU minus the FP32 ONNX's, all on the first --quant-images validation images."""
    from edgeseg.data.class_folders import class_folder_samples
    from edgeseg.evaluate import evaluate
    from edgeseg.export.quantize import quantize_fp16, quantize_int8

    val = set(art.extra["train"]["split"]["val_files"])
    samples, _ = class_folder_samples(args.data, "_mask", ["normal"], list(art.classes))
    train_images = [s.image for s in samples if s.name not in val]
    pick = np.random.default_rng(args.seed).choice(len(train_images), min(64, len(train_images)), replace=False)
    paths, errors = {"fp32": onnx_path}, {}
    for key, convert in (("fp16", lambda: quantize_fp16(onnx_path, onnx_path.with_suffix(".fp16.onnx"))),
                         ("int8", lambda: quantize_int8(onnx_path, onnx_path.with_suffix(".int8.onnx"),
                                                        calibration=[train_images[i] for i in sorted(pick)]))):
        try:
            paths[key] = convert().path
        except Exception as exc:  # noqa: BLE001 - a failed conversion is a result of the row, not the end of the run
            errors[key] = f"{type(exc).__name__}: {exc}"[:200]
            print(f"{onnx_path.stem} {key}: conversion failed: {errors[key]}", file=sys.stderr, flush=True)
    scores = {}
    for key, path in paths.items():
        try:
            scores[key] = evaluate(path, args.data, None, split="val", limit=args.quant_images,
                                   threads=args.threads).metrics["mean_iou"]
        except Exception as exc:  # noqa: BLE001 - e.g. an FP16 graph ONNX Runtime refuses to load
            if key == "fp32":
                raise
            errors[key] = f"{type(exc).__name__}: {exc}"[:200]
            print(f"{onnx_path.stem} {key}: evaluation failed: {errors[key]}", file=sys.stderr, flush=True)
    return {"onnx_miou": scores["fp32"], "quant_images": args.quant_images, "quant_errors": errors,
            **{f"{k}_delta": scores[k] - scores["fp32"] if k in scores else None for k in ("fp16", "int8")}}


def fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _delta(row: dict, key: str) -> str:
    if key in row.get("quant_errors", {}):
        return "failed*"
    return fmt(row.get(f"{key}_delta"), 4)


def results_table(rows: list[dict], setup: dict) -> list[str]:
    """The per-row markdown table (lines)."""
    sizes = setup["latency_sizes"]
    classes = rows[0]["classes"] if rows else []
    head = (["model", "epochs (best)", "train min", "mIoU"] + [f"IoU {c}" for c in classes] + ["lesion mIoU", "lesion Dice", "boundary F",
            "params (M)", "GFLOPs@256"] + [f"ORT ms@{s}" for s in sizes] + ["FP16 ΔmIoU", "INT8 ΔmIoU"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["row"], f"{r['epochs_run']} ({r['best_epoch']})", fmt((r["train_seconds"] or 0) / 60, 1),
                 fmt(r["miou"])] + [fmt(r["iou"][c]) for c in classes] + [
            fmt(r["lesion_miou"]), fmt(r["lesion_dice"]), fmt(r["boundary_f"]), fmt(r["params_m"], 2),
            fmt(r["gflops_256"], 2)] + [fmt(r["latency_ms"][str(s)], 1) for s in sizes] + [
            _delta(r, "fp16"), _delta(r, "int8")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def claims_table(rows: list[dict]) -> list[str]:
    """Each classic claim whose two rows ran: the mIoU and boundary-F differences and the call, made on the
    metric the claim is about (boundary F for boundary claims, mIoU for the rest) (lines)."""
    by_row = {r["row"]: r for r in rows}
    claims = ["| claim | with | without | ΔmIoU | Δboundary F | judged on | held on this data? |",
              "|---|---|---|---|---|---|---|"]
    for text, with_, without, metric in CLAIMS + crf_claims(rows):
        if with_ in by_row and without in by_row:
            a, b = by_row[with_], by_row[without]
            d_miou, d_bf = a["miou"] - b["miou"], (a["boundary_f"] or 0) - (b["boundary_f"] or 0)
            delta = d_bf if metric == "boundary_f" else d_miou
            held = "yes" if delta > 0.01 else ("no" if delta < -0.01 else "within ±0.01 (single seed: no call)")
            if a["epochs_run"] != b["epochs_run"]:  # a time cap let one model run fewer epochs
                held = f"not comparable: {a['epochs_run']} vs {b['epochs_run']} epochs under the time cap ({held})"
            elif a.get("run", 0) != b.get("run", 0):
                held += f" (rows of runs {b.get('run', 0) + 1} and {a.get('run', 0) + 1}: other time caps)"
            claims.append(f"| {text} | {with_} | {without} | {d_miou:+.3f} | {d_bf:+.3f} | {METRIC_NAMES[metric]} | {held} |")
    return claims


def _crf_notes(rows: list[dict]) -> list[str]:
    notes = []
    for r in rows:
        crf = r.get("crf")
        if crf and crf["kind"] == "dense_crf":
            p = crf["params"]
            notes.append(f"- {r['row']}: fully connected CRF at {crf['where']}, {p['iterations']} mean-field "
                         f"iterations, Gaussian sxy {p['sxy_gaussian']} weight {p['compat_gaussian']}, bilateral sxy "
                         f"{p['sxy_bilateral']} gray-level width {p['srgb']} weight {p['compat_bilateral']} (not "
                         "tuned on BUSI); latency = the base row's ONNX Runtime time + the NumPy CRF at that size.")
        elif crf:
            f = crf["fine_tune"]
            notes.append(f"- {r['row']}: CRF-as-RNN ({crf['window']}x{crf['window']} window, {crf['iterations']} "
                         f"iterations) at {crf['where']}, fine-tuned {f['epochs']} epoch(s) ({f['seconds'] / 60:.1f} "
                         f"min, backbone {f['backbone']}, CRF LR {f['lr']}; loss {f['first_loss']:.3f} -> "
                         f"{f['last_loss']:.3f}); latency = backbone in ONNX Runtime + the learned CRF as a NumPy "
                         "stage (the decomposed route). Train min includes the base row's training.")
    return notes


def _budget(rows: list[dict], setup: dict) -> str:
    inits = sorted({f"{r['row']} from {r['init']}" for r in rows if r.get("init", "random") != "random"})
    caps = {run.get("max_minutes") for run in setup.get("runs", [])} or {setup["max_minutes"]}
    cap = caps.pop() if len(caps) == 1 else None
    return (f"Budget per model: {setup['epochs']} epochs"
            + (f" or {cap} min" if cap else (" (time cap per run below)" if caps else ""))
            + f", input {setup['size']}x{setup['size']} gray, batch {setup['batch_size']}, AdamW lr {setup['lr']}, "
            f"seed {setup['seed']}, class weights {setup['class_weights']}, random init"
            + (f" (except {', '.join(inits)})" if inits else "")
            + f"; ResNet-18 width {setup['width'] or 64}.")


def markdown(rows: list[dict], setup: dict) -> str:
    notes = _crf_notes(rows)
    return "\n".join([
        "# BUSI comparison (3 classes: background, benign, malignant)", "",
        _budget(rows, setup)
        + f" Validation: {rows[0]['val_images'] if rows else 0} images (20 % by image, seed "
        f"{setup['seed']}), metrics at original resolution. Latency: ONNX Runtime CPU, {setup['threads']} "
        f"thread(s), batch 1, median of {setup['latency_iterations']}. Trained on: "
        f"{setup['device'] if len(setup.get('runs', [])) < 2 else 'see the commands at the end'}. "
        f"FP16/INT8 ΔmIoU on the first {setup['quant_images']} validation images. Boundary F: mean over the "
        "lesion classes, boundary pixels matched within 3 px at the original resolution (strict: images are "
        f"190-720 px a side, one model pixel at {setup['size']} px spans ~{500 / setup['size']:.0f} of them).", "",
        *results_table(rows, setup), "", *_target(rows), "",
        *[f"\\* {r['row']} {k}: {e}" for r in rows for k, e in r.get("quant_errors", {}).items()], "",
        *(["CRF rows (on top of the best two trained rows by mIoU; no FP16/INT8 column: the CRF is a float32 "
           "stage after the network):", *notes, ""] if notes else []),
        "## Classic claims on this data", "",
        "One seed per row. Each claim is judged on the metric it is about (boundary F for the boundary claims, "
        "mIoU for the rest); a difference within ±0.01 is not called. Rows that ran different numbers of "
        "epochs (the time cap stops slow models early) are marked not comparable.", "", *claims_table(rows), "",
        "![mIoU vs latency](miou_vs_latency.png)", "", "![per-class IoU](per_class_iou.png)", "",
        *_commands(rows, setup), ""])


def _commands(rows: list[dict], setup: dict) -> list[str]:
    runs = setup.get("runs") or [{k: setup.get(k) for k in RUN_KEYS}]
    if len(runs) == 1:
        return [f"Command: `{runs[0]['command']}` ({runs[0]['total_minutes']:.1f} min)."]
    lines = ["Rows by command (`--update` keeps the rows a later run does not redo; same budget but the time cap):", ""]
    for i, run in enumerate(runs):
        made = [r["row"] for r in rows if r.get("run", 0) == i]
        cap = f", cap {run['max_minutes']} min per model" if run.get("max_minutes") else ""
        lines.append(f"{i + 1}. `{run['command']}` ({run['total_minutes']:.1f} min on {run['device']}{cap}): "
                     + (", ".join(made) or "no rows left"))
    return lines


def readme_block(rows: list[dict], setup: dict) -> str:
    """The README's generated part: budget, the table, the target line and the claims table."""
    where = setup["device"] if len(setup.get("runs", [])) < 2 else "see the commands in the report"
    return "\n".join([README_START, "", _budget(rows, setup) + f" Trained on: {where}.", "",
                       *results_table(rows, setup), "", *_target(rows), "", *claims_table(rows), "", README_END])


def write_readme(path: Path, rows: list[dict], setup: dict) -> None:
    """Replace the text between the README markers with :func:`readme_block`."""
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"--readme: {path} lacks the markers {README_START!r} ... {README_END!r}; add them where "
                         "the BUSI table belongs")
    head, rest = text.split(README_START, 1)
    path.write_text(head + readme_block(rows, setup) + rest.split(README_END, 1)[1])


def _target(rows: list[dict]) -> list[str]:
    """The issue's bar for the best row: lesion mIoU >= 0.55 and lesion-vs-background Dice >= 0.80."""
    if not rows:
        return []
    best = max(rows, key=lambda r: r["lesion_miou"])
    met = best["lesion_miou"] >= 0.55 and best["lesion_dice"] >= 0.80
    return [f"Target (best model by lesion mIoU, {best['row']}): lesion mIoU {best['lesion_miou']:.3f} (target "
            f">= 0.55), lesion Dice {best['lesion_dice']:.3f} (target >= 0.80): {'met' if met else 'NOT met'}."]


def plots(rows: list[dict], out: Path, size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r["latency_ms"][str(size)], r["miou"])
        ax.annotate(r["row"], (r["latency_ms"][str(size)], r["miou"]), fontsize=7)
    ax.set_xlabel(f"ONNX Runtime CPU latency at {size}x{size} (ms)")
    ax.set_ylabel("validation mIoU")
    ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(out / "miou_vs_latency.png", dpi=120)
    plt.close(fig)
    classes = rows[0]["classes"]
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.8), 4))
    x = np.arange(len(rows))
    for i, c in enumerate(classes):
        ax.bar(x + (i - 1) * 0.27, [r["iou"][c] or 0 for r in rows], 0.27, label=c)
    ax.set_xticks(x, [r["row"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("validation IoU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "per_class_iou.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--data", type=Path, default=BUSI)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock cap per model (schedule compressed)")
    parser.add_argument("--size", type=int, default=128, help="training input size (square, multiple of 32)")
    parser.add_argument("--width", type=int, default=32, help="ResNet-18 first-stage channels (64 = the standard net)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--class-weights", default="auto", choices=("auto", "none"))
    parser.add_argument("--limit", type=int, default=None, help="use only N images (smoke runs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--latency-iterations", type=int, default=20)
    parser.add_argument("--quant-images", type=int, default=40, help="validation images for FP16/INT8 deltas (0: skip)")
    parser.add_argument("--device-note", default="this machine's CPU", help="where the rows were trained (report)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "busi_compare", help="checkpoints (never commit)")
    parser.add_argument("--retrain", action="store_true", help="train even when --work has the checkpoint")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--crf-on", nargs="+", default=["auto"], metavar="ROW",
                        help="rows to put DenseCRF and CRF-as-RNN on: auto (best two by mIoU), row names, or none")
    parser.add_argument("--crf-rnn-epochs", type=int, default=1, help="CRF-as-RNN fine-tuning epochs")
    parser.add_argument("--crf-rnn-lr", type=float, default=1e-2, help="CRF-as-RNN learning rate (CRF weights)")
    parser.add_argument("--crf-rnn-unfreeze", action="store_true", help="fine-tune the backbone too (at LR / 10)")
    parser.add_argument("--update", action="store_true",
                        help="keep --out/results.json's rows that --models does not redo (same budget required); "
                             "CRF rows are always redone; each row records the run that made it")
    parser.add_argument("--report-only", action="store_true", help="rewrite report.md and plots from --out/results.json")
    parser.add_argument("--readme", type=Path, default=None,
                        help="also rewrite this README's BUSI table block from --out/results.json (between markers)")
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads((args.out / "results.json").read_text())
        (args.out / "report.md").write_text(markdown(saved["rows"], saved["setup"]))
        plots(saved["rows"], args.out, saved["setup"]["latency_sizes"][0])
        if args.readme:
            write_readme(args.readme, saved["rows"], saved["setup"])
        print(f"report: {args.out / 'report.md'}")
        return 0
    if not (args.data / "benign").is_dir():
        raise SystemExit(f"--data: {args.data} is not the BUSI folder (expected benign/, malignant/, normal/)")
    if args.class_weights == "none":
        args.class_weights = None
    kept, runs = kept_rows(args) if args.update else ([], [])
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started, rows, this_run = time.perf_counter(), [], len(runs)

    def save() -> None:  # after every row: partial runs count
        setup = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        setup.update(device=args.device_note, total_minutes=(time.perf_counter() - started) / 60,
                     command="python benchmarks/busi_compare.py " + shlex.join(sys.argv[1:] if argv is None else argv))
        setup["runs"] = runs + [{k: setup[k] for k in RUN_KEYS}]
        for r in rows:
            r.setdefault("run", this_run)
        rows[:] = sorted(kept + [r for r in rows if r not in kept], key=_row_order)
        (args.out / "results.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
        (args.out / "report.md").write_text(markdown(rows, setup))
        if args.readme:
            write_readme(args.readme, rows, setup)

    for row in args.models:
        t0 = time.perf_counter()
        rows.append(run_row(row, args))
        r = rows[-1]
        print(f"{row}: mIoU {fmt(r['miou'])} lesion mIoU {fmt(r['lesion_miou'])} lesion Dice {fmt(r['lesion_dice'])} "
              f"boundary F {fmt(r['boundary_f'])} ({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
        save()
    for r in crf_rows(list(rows), args):
        rows.append(r)
        save()
    plots(rows, args.out, args.latency_sizes[0])
    print(f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
