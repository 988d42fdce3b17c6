"""The CRF rows of the BUSI comparison (``busi_compare.py``): DenseCRF and CRF-as-RNN on top of a trained row.

- ``<row>+densecrf``: the row's checkpoint, its softmax resized to each image's size, then the fully connected
  CRF (:func:`edgeseg.ops.dense_crf`, permutohedral lattice, NumPy) with the image's gray levels as the
  bilateral feature. Parameters: :data:`DENSE_CRF` (pydensecrf's usual defaults; not tuned on BUSI).
- ``<row>+crfrnn``: the row's network followed by :class:`edgeseg.ops.crf_as_rnn.CRFasRNN` (windowed mean field,
  7x7, 5 iterations, at the network's input resolution), fine-tuned on the row's own training split for
  ``--crf-rnn-epochs`` with the same loss (class-weighted CE + Dice). The backbone is frozen by default, so the
  row measures the CRF layer and not extra backbone training (``--crf-rnn-unfreeze`` trains both, backbone at
  a tenth of the CRF's LR). Its deployment is the ``decomposed`` route: the backbone in ONNX Runtime, then the
  same windowed CRF with the learned weights as a NumPy stage; latency is the sum of both.

The learned CRF weights stay in --work (trained on BUSI: never in results.json or git).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

# pydensecrf's customary values (DeepLab's defaults for natural images), used unchanged
DENSE_CRF = {"iterations": 5, "sxy_gaussian": 3, "compat_gaussian": 3, "sxy_bilateral": 80, "srgb": 13,
             "compat_bilateral": 10}
CRF_RNN = {"iterations": 5, "window": 7}


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def crf_stage_ms(params: dict, size: int, classes: int, iterations: int) -> float:
    """Median milliseconds of ``dense_crf(**params)`` on (classes, size, size) probabilities and a gray image."""
    from edgeseg.ops.crf import dense_crf

    rng = np.random.default_rng(0)
    probs = softmax(rng.standard_normal((classes, size, size)).astype(np.float32))
    image = rng.integers(0, 256, (size, size), dtype=np.uint8)
    dense_crf(probs, image, **params)  # warm-up (lattice code paths, allocations)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        dense_crf(probs, image, **params)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def dense_crf_row(base: dict, ckpt: Path, args, metrics_of) -> dict:
    """``<base>+densecrf``: the base checkpoint's probabilities refined by the dense CRF at image size."""
    from edgeseg.evaluate import evaluate, open_predictor
    from edgeseg.ops.crf import dense_crf

    predict, art = open_predictor(ckpt, args.threads)
    if art.output_kind != "logits":
        raise ValueError(f"{ckpt}: output_kind {art.output_kind!r}, expected logits")

    def refined(image: np.ndarray) -> np.ndarray:
        return dense_crf(softmax(predict(image)), image, **DENSE_CRF)

    t0 = time.perf_counter()
    report = evaluate(ckpt, args.data, None, split="val", threads=args.threads, predictor=refined)
    seconds = time.perf_counter() - t0
    classes = len(art.classes)
    return {**_inherited(base, "densecrf"), **metrics_of(report),
            "crf": {"kind": "dense_crf", "params": DENSE_CRF, "where": "image resolution, after the bilinear resize",
                    "eval_seconds": seconds},
            "latency_ms": {s: base["latency_ms"][s] + crf_stage_ms(DENSE_CRF, int(s), classes,
                                                                 max(3, args.latency_iterations // 4))
                           for s in base["latency_ms"]}}


def _inherited(base: dict, suffix: str) -> dict:
    keep = ("model", "options", "classes", "train_seconds", "epochs_run", "best_epoch", "stopped_by_time_budget",
            "params_m", "gflops_256")
    return {"row": f"{base['row']}+{suffix}", "base": base["row"], **{k: base[k] for k in keep if k in base}}


def crf_rnn_model(backbone, art, iterations: int, window: int):
    """backbone -> CRFasRNN on the de-normalised input: x (N, K, H, W) normalised -> log Q (N, C, H, W)."""
    import torch
    from torch import nn

    from edgeseg.ops.crf_rnn import CRFasRNN

    class BackboneCRF(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            k = art.preprocess.channels
            self.crf = CRFasRNN(len(art.classes), channels=k, iterations=iterations, window=window)
            self.register_buffer("mean", torch.tensor(art.preprocess.mean, dtype=torch.float32).view(1, k, 1, 1))
            self.register_buffer("std", torch.tensor(art.preprocess.std, dtype=torch.float32).view(1, k, 1, 1))

        def forward(self, x):
            return self.crf(self.backbone(x), (x * self.std + self.mean) * 255.0)

    return BackboneCRF()


def _train_split(art, data: Path):
    """The checkpoint's own training samples (everything in the class folders but its recorded val_files)."""
    from edgeseg.data.class_folders import class_folder_samples, interleave

    config = art.extra["train"]["config"]
    samples, _ = class_folder_samples(data, config.get("mask_suffix", "_mask"), config.get("background", ["normal"]),
                                      list(art.classes))
    if config.get("limit"):  # as edgeseg.train took them
        samples = interleave(samples)[: config["limit"]]
    val = set(art.extra["train"]["split"]["val_files"])
    return [s for s in samples if s.name not in val]


def fine_tune_crf_rnn(ckpt: Path, args, out: Path) -> tuple[object, object, dict]:
    """Train the CRF-as-RNN head (and with --crf-rnn-unfreeze the backbone) on ``ckpt``'s training split."""
    import torch

    from edgeseg.data import Augment, MaskSpec, SegmentationDataset
    from edgeseg.models import load_checkpoint
    from edgeseg.train import ce_dice_loss, class_weights_of, lr_at

    torch.manual_seed(args.seed)
    backbone, art = load_checkpoint(ckpt)
    model = crf_rnn_model(backbone, art, CRF_RNN["iterations"], CRF_RNN["window"])
    train_ds = SegmentationDataset(_train_split(art, args.data), art.preprocess,
                                   MaskSpec("index", num_classes=len(art.classes)), Augment(mask_fill=0), args.seed)
    for i in range(len(train_ds)):
        train_ds._resized(i)  # decode once; class_weights_of reads the cache
    weights = class_weights_of(SimpleNamespace(class_weights=args.class_weights, classes=list(art.classes)), train_ds)
    groups = [{"params": list(model.crf.parameters()), "lr": args.crf_rnn_lr, "weight_decay": 0.0, "scale": 1.0}]
    if args.crf_rnn_unfreeze:
        groups.append({"params": list(backbone.parameters()), "lr": args.crf_rnn_lr / 10, "scale": 0.1})
    else:
        backbone.requires_grad_(False)
    opt = torch.optim.AdamW(groups)
    g = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         generator=g)
    total, started, losses = args.crf_rnn_epochs * len(loader), time.perf_counter(), []
    for epoch in range(args.crf_rnn_epochs):
        model.train()
        if not args.crf_rnn_unfreeze:
            backbone.eval()  # frozen: BatchNorm keeps its running statistics
        train_ds.set_epoch(epoch)
        for i, (x, y) in enumerate(loader):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * len(loader) + i, total, 1, args.crf_rnn_lr) * group["scale"]
            loss = ce_dice_loss(model(x), y, 1.0, None, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        print(f"  crf-rnn epoch {epoch + 1}/{args.crf_rnn_epochs}: loss {np.mean(losses[-len(loader):]):.4f}",
              flush=True)
    model.eval()
    learned = model.crf.dense_crf_params()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(learned, indent=2) + "\n")  # BUSI-trained values: --work only
    info = {"epochs": args.crf_rnn_epochs, "seconds": time.perf_counter() - started, "backbone":
            "fine-tuned (LR / 10)" if args.crf_rnn_unfreeze else "frozen", "lr": args.crf_rnn_lr,
            "first_loss": float(np.mean(losses[:len(loader)])), "last_loss": float(np.mean(losses[-len(loader):]))}
    return model, art, info


def crf_rnn_row(base: dict, ckpt: Path, args, metrics_of) -> dict:
    """``<base>+crfrnn``: the fine-tuned network + CRF-as-RNN scored like every row (logits resized to image size)."""
    import cv2
    import torch

    from edgeseg.data import preprocess_image
    from edgeseg.evaluate import evaluate

    model, art, info = fine_tune_crf_rnn(ckpt, args, args.work / f"{base['row']}+crfrnn.json")

    def predict(image: np.ndarray) -> np.ndarray:
        blob = torch.from_numpy(preprocess_image(image, art.preprocess)[None])
        with torch.inference_mode():
            scores = model(blob)[0].numpy().transpose(1, 2, 0)
        h, w = image.shape[:2]
        return cv2.resize(scores, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1).transpose(2, 0, 1)

    report = evaluate(ckpt, args.data, None, split="val", threads=args.threads, predictor=predict)
    learned = model.crf.dense_crf_params()
    row = {**_inherited(base, "crfrnn"), **metrics_of(report),
           "crf": {"kind": "crf_as_rnn", **CRF_RNN, "where": "network input resolution, before the resize",
                   "fine_tune": info}}
    row["train_seconds"] = (base["train_seconds"] or 0) + info["seconds"]
    row["params_m"] = base["params_m"] + sum(p.numel() for p in model.crf.parameters()) / 1e6
    row["latency_ms"] = {s: base["latency_ms"][s] + crf_stage_ms(learned, int(s), len(art.classes),
                                                               max(3, args.latency_iterations // 4))
                         for s in base["latency_ms"]}
    return row
