"""Train a zoo model on a folder of images and masks; keep the best checkpoint by validation mean IoU.

>>> from edgeseg.train import TrainConfig, train
>>> cfg = TrainConfig(images="hc18/images", masks="hc18/masks", out="runs/hc18.safetensors",
...                   model="fastseg", classes=["background", "head"], color="gray", size=(256, 256),
...                   group_regex=r"^(\\d{3})_", epochs=30)      # doctest: +SKIP
>>> result = train(cfg)     # writes runs/hc18.safetensors (+ .json) and runs/hc18.last.safetensors  # doctest: +SKIP

Checkpoints go through :func:`edgeseg.models.save_checkpoint` (safetensors + JSON sidecar). The last
epoch is also written as ``<out stem>.last.safetensors`` with the optimizer state in
``<out stem>.last.optim.safetensors``, so ``resume=`` continues where a run stopped. Loss: cross-entropy
plus soft Dice over the foreground classes (robust to thin or small foreground). Learning rate: linear
warm-up then cosine decay, a function of the global step so a resumed run follows the same schedule.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require
from .artifact import Artifact, Preprocess
from .errors import ArtifactError, InputError
from .metrics import ConfusionMatrix


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in the checkpoint sidecar under ``extra["train"]``."""

    images: str  # the images folder, or with layout="class-folders" the root holding one folder per class
    masks: str | None = None  # the masks folder (layout "pairs")
    out: str = "runs/model.safetensors"
    model: str = "fastseg"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    classes: list[str] | None = None  # None: background + foreground, or the class folders' names
    layout: str = "pairs"  # "pairs": images/ + masks/ paired by mask_pattern; "class-folders": see edgeseg.data.class_folders
    mask_suffix: str = "_mask"  # class-folders: X.png's masks are X<suffix>.png, X<suffix>_1.png, ...
    background: list[str] = field(default_factory=lambda: ["normal"])  # class-folders whose images are all background
    class_weights: str | list[float] | None = None  # cross-entropy weights: None, "auto" or one per class
    mask_mode: str = "binary"
    mask_pattern: str = "{stem}.png"
    image_glob: str = "*"
    ignore_index: int | None = None
    color: str = "gray"
    size: tuple[int, int] = (256, 256)
    mean: list[float] | None = None  # None: measured on the training images
    std: list[float] | None = None
    group_regex: str | None = None
    val_fraction: float = 0.2
    val_files: list[str] | None = None  # explicit validation file names (e.g. a stratified split); groups checked
    seed: int = 0
    epochs: int = 30
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    dice_weight: float = 1.0
    ema: float | None = None  # per-step decay of an exponential moving average of the weights (validated, saved)
    augment: bool = True
    aug_scale: tuple[float, float] | None = None  # zoom range of the augmentation (default Augment's)
    threads: int | None = None
    limit: int | None = None  # use only the first N pairs (class-folders: taken from each folder in turn)
    max_minutes: float | None = None  # wall-clock budget: the schedule speeds up to end within it
    resume: str | None = None
    init: str | None = None  # start from this checkpoint's weights and normalisation (fine-tuning)
    attribution: str | None = None
    progress: bool = True
    command: str | None = None  # the command line that started the run, recorded in the sidecar

    def validate(self) -> None:
        from .data.class_folders import LAYOUTS
        from .sizes import check_size, zoo_multiple

        if self.layout not in LAYOUTS:
            raise InputError(f"layout: got {self.layout!r}, expected one of {LAYOUTS}")
        if self.layout == "pairs" and not self.masks:
            raise InputError("masks: not given, expected the masks folder (layout 'pairs'; or use layout 'class-folders')")
        if self.classes is None and self.layout == "pairs":
            self.classes = ["background", "foreground"]
        if self.classes is not None and len(self.classes) < 2:
            raise InputError(f"classes: got {self.classes!r}, expected at least two names (background first)")
        check_size(self.size, "size", zoo_multiple(self.model), self.model)
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}: got {getattr(self, name)!r}, expected a positive int")
        if not self.lr > 0:
            raise InputError(f"lr: got {self.lr!r}, expected a positive number")
        if self.ema is not None and not 0 < self.ema < 1:
            raise InputError(f"ema: got {self.ema!r}, expected a decay between 0 and 1 (e.g. 0.999), or None")
        if self.aug_scale is not None and not (len(self.aug_scale) == 2 and 0 < self.aug_scale[0] <= self.aug_scale[1]):
            raise InputError(f"aug_scale: got {self.aug_scale!r}, expected [low, high] with 0 < low <= high")
        weights = self.class_weights
        if weights is not None and weights != "auto" and self.classes is not None and (
                isinstance(weights, str) or len(weights) != len(self.classes) or not all(w >= 0 for w in weights)):
            raise InputError(f"class_weights: got {weights!r}, expected 'auto' or {len(self.classes)} non-negative "
                             f"numbers, one per class {self.classes}")
        if self.val_files is not None and not self.val_files:
            raise InputError("val_files: got an empty list, expected validation file names (or None)")


@dataclass
class TrainResult:
    best_path: Path
    last_path: Path
    best_epoch: int
    best_miou: float
    history: list[dict[str, Any]]
    seconds: float


# --- data ----------------------------------------------------------------------------------------
def _datasets(cfg: TrainConfig):
    from .data import (
        Augment,
        MaskSpec,
        SegmentationDataset,
        split_by_group,
    )

    samples = _samples(cfg)
    if cfg.limit and cfg.layout == "class-folders":  # every class, not the first folder only
        from .data.class_folders import interleave

        samples = interleave(samples)[: cfg.limit]
    elif cfg.limit:
        samples = samples[: cfg.limit]
    if cfg.val_files is not None:
        train_s, val_s = split_by_names(samples, cfg.val_files, cfg.group_regex)
    else:
        train_s, val_s = split_by_group(samples, cfg.group_regex, cfg.val_fraction, cfg.seed)
    if not train_s or not val_s:
        raise InputError(
            f"split: got {len(train_s)} training and {len(val_s)} validation pairs from {len(samples)}, "
            "expected both non-empty (more data, or another val_fraction / group_regex)"
        )
    mode = "index" if cfg.layout == "class-folders" else cfg.mask_mode  # class samples decode their own masks
    spec = MaskSpec(mode, num_classes=len(cfg.classes), ignore_index=cfg.ignore_index)
    channels = 1 if cfg.color == "gray" else 3
    pre = Preprocess(size=tuple(int(s) for s in cfg.size), color=cfg.color,
                     mean=[0.0] * channels, std=[1.0] * channels)
    fill = 0 if cfg.ignore_index is None else cfg.ignore_index
    augment = Augment(mask_fill=fill, **({"scale": tuple(cfg.aug_scale)} if cfg.aug_scale else {}))
    train_ds = SegmentationDataset(train_s, pre, spec, augment if cfg.augment else None, cfg.seed)
    val_ds = SegmentationDataset(val_s, pre, spec, None, cfg.seed)
    return train_ds, val_ds


def _samples(cfg: TrainConfig):
    from .data import pair_folder
    from .data.class_folders import class_folder_samples

    if cfg.layout == "class-folders":
        samples, cfg.classes = class_folder_samples(cfg.images, cfg.mask_suffix, cfg.background, cfg.classes)
        cfg.validate()  # the class count is known now
        return samples
    return pair_folder(cfg.images, cfg.masks, image_glob=cfg.image_glob, mask_pattern=cfg.mask_pattern)


def class_weights_of(cfg: TrainConfig, train_ds) -> list[float] | None:
    """The cross-entropy class weights: as given, or ``"auto"``: 1 / sqrt(pixel frequency) on the training
    masks, scaled so that the pixel-weighted mean weight is 1 (an absent class gets the largest weight)."""
    if cfg.class_weights is None:
        return None
    if cfg.class_weights != "auto":
        return [float(w) for w in cfg.class_weights]
    counts = np.zeros(len(cfg.classes))
    for _, mask in train_ds._cache:
        counts += np.bincount(mask.reshape(-1), minlength=256)[: len(cfg.classes)]
    freq = counts / max(counts.sum(), 1)
    raw = np.where(freq > 0, 1 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    raw[freq == 0] = raw.max() if raw.max() > 0 else 1.0
    return [round(float(w), 4) for w in raw / float((raw * freq).sum() or 1.0)]


def split_by_names(samples, val_files, group_regex: str | None):
    """(train, val) with exactly ``val_files`` in validation; a group on both sides is an InputError."""
    from .data.folder import group_of

    wanted = set(val_files)
    unknown = sorted(wanted - {s.name for s in samples})
    if unknown:
        raise InputError(f"val_files: {len(unknown)} name(s) are not among the paired images, e.g. {unknown[:3]}")
    val = [s for s in samples if s.name in wanted]
    train = [s for s in samples if s.name not in wanted]
    if group_regex:
        shared = sorted({group_of(s.name, group_regex) for s in val} & {group_of(s.name, group_regex) for s in train})
        if shared:
            raise InputError(f"val_files: groups {shared[:5]} have files on both sides of the split; "
                             "expected every file of a group in validation or none")
    return train, val


def _fit_normalization(cfg: TrainConfig, train_ds, val_ds, progress: bool) -> Preprocess:
    """Decode every pair once (kept in memory), then fill in mean/std from the training images."""
    tqdm = require("tqdm", "progress bars").tqdm
    for ds in (train_ds, val_ds):
        for i in tqdm(range(len(ds)), desc="loading", disable=not progress, leave=False, file=sys.stdout):
            ds._resized(i)
    channels = train_ds.preprocess.channels
    if cfg.mean is None or cfg.std is None:
        total, sq, n = np.zeros(channels), np.zeros(channels), 0
        for img, _ in train_ds._cache:  # running sums: no copy of the whole set in float64
            pix = img.reshape(-1, channels).astype(np.float64) / 255
            total, sq, n = total + pix.sum(0), sq + (pix * pix).sum(0), n + len(pix)
        mean = [round(float(v), 4) for v in total / n]
        std = [round(float(v), 4) for v in np.sqrt(np.maximum(sq / n - (total / n) ** 2, 0))]
    else:
        mean, std = list(cfg.mean), list(cfg.std)
    pre = Preprocess(size=train_ds.preprocess.size, color=cfg.color, mean=mean, std=std)
    train_ds.preprocess = val_ds.preprocess = pre
    return pre


# --- loss, schedule, optimizer state ---------------------------------------------------------------
def ce_dice_loss(logits, target, dice_weight: float = 1.0, ignore_index: int | None = None, class_weights=None):
    """Cross-entropy (``class_weights``: one weight per class, or None) + ``dice_weight`` * (1 - mean soft
    Dice of the foreground classes, each class's Dice computed over the whole batch).

    ``logits`` (N, C, H, W) float, ``target`` (N, H, W) int64.
    """
    torch = require("torch", "training")
    f = torch.nn.functional
    weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=logits.dtype)
    ce = f.cross_entropy(logits, target, weight=weight, ignore_index=-100 if ignore_index is None else ignore_index)
    if dice_weight == 0:
        return ce
    probs = logits.softmax(1)
    valid = torch.ones_like(target, dtype=probs.dtype) if ignore_index is None else (target != ignore_index).to(probs.dtype)
    safe = target if ignore_index is None else target.where(target != ignore_index, torch.zeros_like(target))
    onehot = f.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    valid = valid[:, None]
    inter = (probs * onehot * valid).sum((0, 2, 3))
    denom = ((probs + onehot) * valid).sum((0, 2, 3))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return ce + dice_weight * (1.0 - dice[1:].mean())


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 1% of ``base`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def _save_optimizer(opt, path: Path) -> None:
    safetensors_torch = require("safetensors.torch", "checkpoints")
    state = opt.state_dict()
    tensors = {f"{idx}.{key}": value.detach().reshape(-1).clone() if value.ndim == 0 else value.detach().clone()
               for idx, entry in state["state"].items() for key, value in entry.items()}
    scalars = {f"{idx}.{key}": value.ndim == 0 for idx, entry in state["state"].items() for key, value in entry.items()}
    meta = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    safetensors_torch.save_file(tensors, str(path), metadata=meta)


def _load_optimizer(opt, path: Path) -> None:
    safetensors = require("safetensors", "checkpoints")
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    scalars = json.loads(meta.get("scalars", "{}"))
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value.reshape(()) if scalars.get(name) else value
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})


# --- checkpoints ---------------------------------------------------------------------------------
def _artifact(path: Path, model, cfg: TrainConfig, pre: Preprocess, train_info: dict) -> Artifact:
    extra: dict[str, Any] = {"train": train_info}
    if cfg.attribution:
        extra["data_attribution"] = cfg.attribution
    return Artifact(
        path=path, model=cfg.model, model_kwargs=dict(model.model_kwargs), preprocess=pre,
        classes=list(cfg.classes), output_kind="logits", versions=_versions(), extra=extra,
    )


def _versions() -> dict[str, str]:
    from . import __version__

    torch = require("torch", "training")
    return {"edgeseg": __version__, "torch": torch.__version__}


def last_path_of(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.replace(".safetensors", "") + ".last.safetensors")


def _beside(last: Path, kind: str) -> Path:
    """The file kept next to the last checkpoint for --resume: ``<last stem>.<kind>.safetensors``."""
    return last.with_name(last.name.replace(".safetensors", "") + f".{kind}.safetensors")


def _optim_path_of(last: Path) -> Path:
    return _beside(last, "optim")


def _ema_path_of(last: Path) -> Path:
    return _beside(last, "ema")


def weight_ema(model, decay: float, resume_from: Path | None = None):
    """An exponential moving average of ``model``'s weights and BatchNorm statistics (torch's AveragedModel),
    updated after every optimisation step; ``resume_from``: a saved average to continue."""
    torch = require("torch", "training")
    swa = torch.optim.swa_utils
    ema = swa.AveragedModel(model, multi_avg_fn=swa.get_ema_multi_avg_fn(decay), use_buffers=True)
    if resume_from is not None and resume_from.exists():
        safetensors_torch = require("safetensors.torch", "checkpoints")
        ema.module.load_state_dict(safetensors_torch.load_file(str(resume_from)))
        ema.n_averaged.fill_(1)  # the next update averages instead of copying the raw weights
    return ema


# --- the loop ------------------------------------------------------------------------------------
def evaluate_batches(model, loader, num_classes: int, ignore_index: int | None = None) -> ConfusionMatrix:
    """Confusion matrix of ``model``'s argmax over a loader of (image, mask) batches."""
    torch = require("torch", "evaluation")
    cm = ConfusionMatrix(num_classes, ignore_index)
    model.eval()
    with torch.inference_mode():
        for x, y in loader:
            cm.update(model(x).argmax(1).numpy(), y.numpy())
    return cm


def train(cfg: TrainConfig) -> TrainResult:
    """Run the training described by ``cfg``; returns where the best and last checkpoints are."""
    torch = require("torch", "training")
    tqdm = require("tqdm", "progress bars").tqdm
    from .models import create_model, load_checkpoint, save_checkpoint
    from .sizes import check_size, model_multiple

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    started = time.perf_counter()
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    last = last_path_of(out)

    if cfg.resume and cfg.init:
        raise InputError("init: give either resume (continue a run) or init (start from weights), not both")
    resumed = load_checkpoint(cfg.resume) if cfg.resume else None
    initial = load_checkpoint(cfg.init) if cfg.init else None
    for loaded in (resumed, initial):
        if loaded:  # keep the normalisation the weights were trained with
            cfg.mean, cfg.std = list(loaded[1].preprocess.mean), list(loaded[1].preprocess.std)
    train_ds, val_ds = _datasets(cfg)
    pre = _fit_normalization(cfg, train_ds, val_ds, cfg.progress)
    weights = class_weights_of(cfg, train_ds)
    if weights is not None:
        print("class weights: " + ", ".join(f"{n} {w:.3f}" for n, w in zip(cfg.classes, weights)), flush=True)
    g = torch.Generator().manual_seed(cfg.seed)
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_ds) > cfg.batch_size, generator=g)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=cfg.batch_size)

    history: list[dict[str, Any]] = []
    start_epoch, best_miou, best_epoch = 0, -1.0, -1
    if resumed:
        model, art = resumed
        state = art.extra.get("train", {}).get("state")
        if not state:
            raise ArtifactError(f"{cfg.resume}: sidecar has no extra.train.state; resume needs a checkpoint written by train")
        start_epoch, best_miou, best_epoch = state["epoch"] + 1, state["best_miou"], state["best_epoch"]
        started -= state.get("seconds", 0.0)  # the time budget counts the interrupted run too
        history = list(art.extra["train"].get("history", []))
    elif initial:
        model, art = initial
        if art.model != cfg.model or len(art.classes) != len(cfg.classes) or art.preprocess.channels != pre.channels:
            raise InputError(f"init: {cfg.init} is a {art.model} with {len(art.classes)} classes and "
                             f"{art.preprocess.channels} input channel(s), expected {cfg.model} with "
                             f"{len(cfg.classes)} classes and {pre.channels}")
    else:
        model = create_model(cfg.model, num_classes=len(cfg.classes), in_channels=pre.channels, **cfg.model_kwargs)
    check_size(cfg.size, "size", model_multiple(model), cfg.model)  # e.g. PSPNet's bins: 64, before any epoch
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.resume and _optim_path_of(Path(cfg.resume)).exists():
        _load_optimizer(opt, _optim_path_of(Path(cfg.resume)))
    ema = weight_ema(model, cfg.ema, _ema_path_of(Path(cfg.resume)) if cfg.resume else None) if cfg.ema else None
    scored = ema.module if ema is not None else model  # the weights validated and saved

    steps_per_epoch = len(train_loader)
    total, warmup = cfg.epochs * steps_per_epoch, max(1, int(cfg.warmup_epochs * steps_per_epoch))
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items() if k not in ("progress",)}
    split = {"train": len(train_ds), "val": len(val_ds), "val_files": [s.name for s in val_ds.samples]}
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None

    def schedule_step(step: int) -> int:
        """The step the LR schedule is at: the real one, or further on when the time budget runs faster."""
        if budget_s is None:
            return step
        return max(step, int((time.perf_counter() - started) / budget_s * total))

    stopped_early, info = False, None
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        train_ds.set_epoch(epoch)
        g.manual_seed(cfg.seed * 1000 + epoch)
        t0, losses = time.perf_counter(), []
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress,
                   file=sys.stdout, mininterval=1.0 if sys.stdout.isatty() else 30.0)
        for i, (x, y) in enumerate(bar):
            step = schedule_step(epoch * steps_per_epoch + i)
            if step >= total and (losses or history):  # at least one step per run
                stopped_early = True
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, cfg.lr)
            loss = ce_dice_loss(model(x), y, cfg.dice_weight, cfg.ignore_index, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{opt.param_groups[0]['lr']:.2e}", refresh=False)
        bar.close()
        if not losses:  # the budget ran out before this epoch's first step: the last saved epoch is final
            if stopped_early and info is not None:
                info["state"]["stopped_by_time_budget"] = True
                save_checkpoint(model, last, _artifact(last, model, cfg, pre, info))
                print(f"time budget of {cfg.max_minutes} min reached after {len(history)} epochs", flush=True)
            break
        cm = evaluate_batches(scored, val_loader, len(cfg.classes), cfg.ignore_index)
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "val_miou": cm.mean_iou,
                  "val_dice": cm.mean_dice(), "val_pixel_accuracy": cm.pixel_accuracy,
                  "seconds": round(time.perf_counter() - t0, 1)}
        if ema is not None:  # what the average adds over the weights it averages
            record["val_miou_raw"] = evaluate_batches(model, val_loader, len(cfg.classes), cfg.ignore_index).mean_iou
        history.append(record)
        improved = cm.mean_iou > best_miou
        if improved:
            best_miou, best_epoch = cm.mean_iou, epoch
        print(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f}  val mIoU {cm.mean_iou:.4f}  "
              + (f"(raw weights {record['val_miou_raw']:.4f})  " if ema is not None else "")
              + f"Dice {cm.mean_dice():.4f}  acc {cm.pixel_accuracy:.4f}  ({record['seconds']:.0f} s)"
              + ("  * best" if improved else ""), flush=True)
        state = {"epoch": epoch, "best_miou": best_miou, "best_epoch": best_epoch, "stopped_by_time_budget":
                 stopped_early, "seconds": round(time.perf_counter() - started, 1)}
        info = {"config": config, "split": split, "history": history, "state": state, "class_weights": weights,
                "val": cm.summary(list(cfg.classes))}
        if improved:
            save_checkpoint(scored, out, _artifact(out, scored, cfg, pre, info))
        # the raw weights carry on training; with --ema the average is kept beside them for --resume
        save_checkpoint(model, last, _artifact(last, model, cfg, pre, info))
        if ema is not None:
            save_checkpoint(ema.module, _ema_path_of(last), _artifact(_ema_path_of(last), ema.module, cfg, pre, info))
        _save_optimizer(opt, _optim_path_of(last))
        if stopped_early:
            print(f"time budget of {cfg.max_minutes} min reached after {len(history)} epochs; the learning-rate "
                  "schedule was compressed to end within it", flush=True)
            break
    return TrainResult(out, last, best_epoch, best_miou, history, time.perf_counter() - started)


def default_threads() -> int:
    """Threads for CPU training: all cores, at most 8 (more rarely helps small models)."""
    return max(1, min(8, os.cpu_count() or 1))
