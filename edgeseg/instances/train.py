"""Train an instance model (``maskrcnn``, ``fcis``, ``bottomup``) within a time budget; evaluate COCO mask/box AP.

Data: HC18 scans (one head each), HC18 composites (2-4 real scans tiled per canvas, generated from the seed
at training time; validation canvases from validation patients only) or BUSI lesions (one instance per mask
file; research use only, never ship the model).

>>> cfg = InstanceTrainConfig(data="../shared/data/hc18", out="runs/hc18_maskrcnn.safetensors")  # doctest: +SKIP
>>> report = train_instances(cfg)      # {"segm": {"AP": ...}, "bbox": {...}, "steps": ...}    # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifact import Artifact, Preprocess, TensorSpec
from ..data.folder import Sample, split_by_group
from ..errors import InputError
from .coco_eval import coco_ap, coco_ground_truth, coco_results, write_results_json
from .data import InstanceDataset, hc18_instances
from .predict import predict_torch


@dataclass
class InstanceTrainConfig:
    data: str                                  # HC18-style folder (images/, masks/)
    out: str                                   # checkpoint path (*.safetensors)
    size: int = 256
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_minutes: float = 15.0
    max_steps: int = 100000
    threads: int = 2
    seed: int = 0
    val_fraction: float = 0.2
    group_regex: str = r"^(\d{3})_"
    classes: list[str] = field(default_factory=lambda: ["background", "head"])
    model_kwargs: dict = field(default_factory=dict)
    log_every: int = 20
    warmup_steps: int = 10
    init_encoder: str | None = None            # a checkpoint whose ``encoder.*`` weights start the encoder
    freeze_encoder: bool = False               # keep those weights (and BatchNorm statistics) fixed
    model: str = "maskrcnn"                    # maskrcnn | fcis | bottomup
    dataset: str = "hc18"                      # hc18 | hc18_composites | busi
    val_composites: int = 64                   # validation canvases (hc18_composites)
    init_weights: str | None = None            # a checkpoint of the same model to continue from (all weights)


#: instance models and datasets train_instances accepts
MODELS = ("maskrcnn", "fcis", "bottomup")
DATASETS = ("hc18", "hc18_composites", "busi")


def _items(cfg: InstanceTrainConfig):
    if cfg.dataset not in DATASETS:
        raise InputError(f"dataset: got {cfg.dataset!r}, expected one of {list(DATASETS)}")
    if cfg.dataset == "busi":
        from .data import busi_instances
        return busi_instances(cfg.data)
    return hc18_instances(cfg.data)


def _split(cfg: InstanceTrainConfig):
    items = _items(cfg)
    by_name = {it.image.name: it for it in items}
    samples = [Sample(it.image, (it.instance_png,)) for it in items]
    group = None if cfg.dataset == "busi" else cfg.group_regex  # BUSI has no patient key: split by image
    train, val = split_by_group(samples, group, cfg.val_fraction, cfg.seed)
    return [by_name[s.name] for s in train], [by_name[s.name] for s in val]


def load_encoder_weights(model, path) -> int:
    """Copy every ``encoder.*`` tensor of the safetensors checkpoint ``path`` into ``model.encoder`` (shapes must
    match: e.g. the HC18 ``fastseg`` model, same MobileNetV3-small at width 0.75). Returns the tensor count."""
    from safetensors.torch import load_file

    state = {k[len("encoder."):]: v for k, v in load_file(str(path)).items() if k.startswith("encoder.")}
    own = model.encoder.state_dict()
    bad = sorted(k for k in own if k not in state or state[k].shape != own[k].shape)
    if bad or not state:
        raise InputError(f"init_encoder {path}: expected encoder tensors matching the maskrcnn encoder; "
                         f"missing or mis-shaped: {bad[:5]} ({len(bad)} in all)")
    model.encoder.load_state_dict({k: state[k] for k in own})
    return len(own)


def _to_torch(target: dict):
    import torch
    return {"boxes": torch.from_numpy(target["boxes"]), "labels": torch.from_numpy(target["labels"]),
            "masks": torch.from_numpy(target["masks"])}


def evaluate_instances(model, dataset: InstanceDataset, classes: list[str], results_json=None) -> dict:
    """Mask AP and box AP (pycocotools) of an eval-mode model on ``dataset`` at its input size."""
    model.eval()
    preds, targets = [], []
    for i in range(len(dataset)):
        image, target = dataset[i]  # no flips on validation sets: InstanceDataset's cache, or composite i
        preds.append(predict_torch(model, image))
        targets.append(target)
    size = tuple(dataset.preprocess.size)
    gt = coco_ground_truth(targets, [size] * len(targets), classes)
    results = coco_results(preds)
    if results_json:
        write_results_json(results, results_json)
    return {"segm": coco_ap(gt, results, "segm"), "bbox": coco_ap(gt, results, "bbox"), "images": len(targets)}


def train_instances(cfg: InstanceTrainConfig, log=print) -> dict:
    """Train ``cfg.model`` on ``cfg.dataset`` for at most ``max_minutes`` / ``max_steps`` (AdamW, warm-up then
    cosine decay over the time budget), save the checkpoint and its sidecar, evaluate on the validation split."""
    import torch

    from ..models import create_model, save_checkpoint

    if cfg.model not in MODELS:
        raise InputError(f"model: got {cfg.model!r}, expected one of {list(MODELS)}")

    if not str(cfg.out).endswith(".safetensors"):
        raise InputError(f"out: got {cfg.out!r}, expected a path ending in .safetensors")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_items, val_items = _split(cfg)
    probe = InstanceDataset(train_items[:64], Preprocess(size=(cfg.size, cfg.size), color="gray", mean=[0.0], std=[1.0]))
    pix = np.concatenate([img.reshape(-1) for img, _ in probe.cache])
    pre = Preprocess(size=(cfg.size, cfg.size), color="gray", mean=[round(float(pix.mean()), 4)],
                     std=[round(float(pix.std()), 4)])
    start_from = cfg.init_weights or cfg.init_encoder
    if start_from:  # the weights expect the normalisation they were trained with
        pre = Preprocess(**{**Artifact.load(start_from).preprocess.__dict__, "size": (cfg.size, cfg.size)})
    t_load = time.time()
    if cfg.dataset == "hc18_composites":
        from .composites import CompositeDataset
        # train canvases are drawn by index from an effectively endless seeded stream; val ones are fixed
        train_ds = CompositeDataset(train_items, pre, length=10**9, seed=cfg.seed, flip=True)
        val_ds = CompositeDataset(val_items, pre, length=cfg.val_composites, seed=cfg.seed + 1)
    else:
        train_ds = InstanceDataset(train_items, pre, flip=True, seed=cfg.seed)
        val_ds = InstanceDataset(val_items, pre)
    log(f"loaded {len(train_ds)} train / {len(val_ds)} val images in {time.time() - t_load:.1f} s")
    model = create_model(cfg.model, num_classes=len(cfg.classes), in_channels=1, **cfg.model_kwargs)
    if cfg.init_encoder:
        log(f"encoder: {load_encoder_weights(model, cfg.init_encoder)} tensors from {cfg.init_encoder}")
    if cfg.init_weights:
        from ..models import load_checkpoint
        loaded, art = load_checkpoint(cfg.init_weights)
        if art.model != cfg.model or loaded.model_kwargs != model.model_kwargs:
            raise InputError(f"init_weights {cfg.init_weights}: got a {art.model!r} model with {loaded.model_kwargs}, "
                             f"expected {cfg.model!r} with {model.model_kwargs}")
        model.load_state_dict(loaded.state_dict())
        log(f"weights: all from {cfg.init_weights}")
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget_s, warmup, start, step = cfg.max_minutes * 60, cfg.warmup_steps, time.time(), 0
    history = []
    model.train()
    if cfg.freeze_encoder:
        model.encoder.eval()  # frozen BatchNorm statistics too
    while step < cfg.max_steps and time.time() - start < budget_s:
        frac = min((time.time() - start) / budget_s, 1.0)
        lr = cfg.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * frac))
        for group in opt.param_groups:
            group["lr"] = lr
        batch = [train_ds[int(i)] for i in rng.integers(0, len(train_ds), cfg.batch_size)]
        images = torch.from_numpy(np.stack([b[0] for b in batch]))
        losses = model(images, [_to_torch(b[1]) for b in batch])
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0:
            parts = {k: round(float(v), 4) for k, v in losses.items()}
            history.append({"step": step, "time_s": round(time.time() - start, 1), "lr": lr, **parts})
            log(f"step {step} {time.time() - start:.0f}s lr {lr:.2e} loss {float(loss):.3f} {parts}")
    train_s = time.time() - start
    out = Path(cfg.out)
    artifact = Artifact(path=out, model=cfg.model, model_kwargs=dict(model.model_kwargs), preprocess=pre,
                        classes=list(cfg.classes),
                        inputs=[TensorSpec("input", ["batch", 1, cfg.size, cfg.size], "float32")],
                        outputs=[TensorSpec("detections", ["batch", "D"], "float32")],
                        extra={"task": "instances"})
    save_checkpoint(model, out, artifact)
    metrics = evaluate_instances(model, val_ds, cfg.classes, out.with_suffix(".val_results.json"))
    report = {"config": asdict(cfg), "steps": step, "train_s": round(train_s, 1), **metrics, "history": history}
    out.with_suffix(".report.json").write_text(json.dumps(report, indent=2))
    log(f"val mask AP {metrics['segm']['AP']:.3f} AP50 {metrics['segm']['AP50']:.3f} "
        f"AP75 {metrics['segm']['AP75']:.3f} | box AP {metrics['bbox']['AP']:.3f}")
    return report


def save_fp16_copy(src, dst, extra: dict | None = None) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with its floating-point tensors stored as float16 (half the size; the
    loader casts them back into the float32 model) and its sidecar, ``extra`` merged into ``extra`` plus
    ``weights_dtype: "float16"``. Returns ``dst``."""
    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise InputError(f"dst: got {str(dst)!r}, expected a path ending in .safetensors")
    art = Artifact.load(src)
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(src)).items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dst),
              metadata={"format": "pt", "model": art.model, "weights_dtype": str(torch.float16)})
    art.path = dst
    art.extra = {**art.extra, **(extra or {}), "weights_dtype": "float16"}
    art.save()
    return dst
