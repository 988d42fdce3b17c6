"""Bottom-up instance segmentation by metric learning (registry name ``bottomup``).

Per pixel (stride 4) the network predicts an embedding e_p, a seediness S_p and class logits. Two pixels'
similarity is sigma(p, q) = 2 / (1 + exp(||e_p - e_q||^2)), trained by sigmoid cross-entropy towards 1 for
pairs of one instance and 0 otherwise. At inference seeds are picked one at a time,
p_t = argmax over unchosen p of [log S_p + alpha * log D(p)], D(p) = min over chosen q of ||e_p - e_q||^2,
and seed t's instance is the foreground pixels with sigma(p, p_t) >= ``mask_threshold``.

The encoder and feature pyramid are Mask R-CNN's (MobileNetV3 + FPN), with one extra stride-4 level.
Seed selection runs a fixed ``max_instances`` steps, so it is static-shaped and exports inside the ONNX graph;
what stays on the host (:func:`instances_from_seeds`) is the data-dependent part: dropping seeds below the
score threshold and seeds whose mask repeats a better one, and boxes from the kept masks.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .encoders import create_encoder
from .maskrcnn.heads import FPN
from .registry import register_model

#: log(1 - sigma) is clamped here (sigma -> 1 as the distance -> 0)
_LOG_EPS = 1e-6


def similarity(d2: Tensor) -> Tensor:
    """sigma = 2 / (1 + exp(d2)) for squared embedding distances ``d2`` >= 0: 1 at distance 0, -> 0 far away."""
    return 2.0 * torch.sigmoid(-d2)


def pairwise_loss(embeddings: Tensor, instance_ids: Tensor) -> Tensor:
    """Sigmoid cross-entropy on pair similarity: embeddings (P, E) of P sampled pixels, instance_ids (P,)
    -> mean over ordered pairs p != q of -[y log sigma + (1 - y) log(1 - sigma)], y = 1 for the same id."""
    d2 = ((embeddings[:, None] - embeddings[None]) ** 2).sum(-1)
    same = (instance_ids[:, None] == instance_ids[None]).to(d2.dtype)
    log_sim = math.log(2.0) + F.logsigmoid(-d2)
    log_dis = torch.log(torch.tanh(d2 / 2).clamp(min=_LOG_EPS))  # 1 - sigma = tanh(d2 / 2)
    loss = -(same * log_sim + (1 - same) * log_dis)
    off = 1 - torch.eye(d2.shape[0], dtype=d2.dtype, device=d2.device)
    return (loss * off).sum() / off.sum().clamp(min=1)


def select_seeds(embeddings: Tensor, seediness: Tensor, steps: int, alpha: float) -> Tensor:
    """Greedy seeds: embeddings (N, E), seediness (N,) in (0, 1] -> (steps,) int64 pixel indices,
    p_t = argmax over unchosen p of log S_p + alpha * log min_{q chosen} ||e_p - e_q||^2 (t = 0: argmax S)."""
    n = embeddings.shape[0]
    log_s = torch.log(seediness.clamp(min=1e-12))
    d = torch.full((n,), 1e12, dtype=embeddings.dtype)  # no seed yet: a constant, so p_1 = argmax S
    taken = torch.zeros(n, dtype=embeddings.dtype)
    seeds = []
    for _ in range(steps):
        score = log_s + alpha * torch.log(d.clamp(min=1e-12)) - 1e9 * taken
        p = torch.argmax(score[None], 1)  # (1,): TensorRT's ArgMax needs a 2-D input
        seeds.append(p)
        d = torch.minimum(d, ((embeddings - embeddings[p]) ** 2).sum(-1))
        taken = torch.maximum(taken, (torch.arange(n) == p).to(taken.dtype))
    return torch.cat(seeds)


class BottomUp(nn.Module):
    """``forward(images (N, C, H, W), targets=None)``: in training a dict of losses (pairwise, seediness,
    semantic); in eval per image a dict with ``scores`` (T,), ``labels`` (T,) and ``image_masks`` (T, H, W)
    soft masks (similarity to the seed times foreground probability) for T = ``max_instances`` seeds."""

    def __init__(self, num_classes: int, in_channels: int = 1, encoder: str = "mobilenetv3_small",
                 width: float = 0.75, channels: int = 64, embedding_dim: int = 8, alpha: float = 1.0,
                 max_instances: int = 8, mask_threshold: float = 0.5, pixels_per_instance: int = 64):
        super().__init__()
        if num_classes < 2:
            raise InputError(f"num_classes: got {num_classes}, expected >= 2 (background + at least one class)")
        self.encoder = create_encoder(encoder, in_channels, width=width)
        self.levels = [self.encoder.stage_index(s) for s in (4, 8, 16, 32)]
        self.fpn = FPN([self.encoder.out_channels[i] for i in self.levels], channels)
        self.head = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(channels, embedding_dim + 1 + num_classes, 1)
        self.num_classes, self.embedding_dim = num_classes, embedding_dim
        self.alpha, self.max_instances, self.mask_threshold = alpha, max_instances, mask_threshold
        self.pixels_per_instance = pixels_per_instance

    def dense(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """images -> embeddings (N, E, H/4, W/4), seediness logits (N, H/4, W/4), class logits (N, C, H/4, W/4)."""
        stages = self.encoder(images)
        x = self.out(self.head(self.fpn([stages[i] for i in self.levels])[0]))
        e = self.embedding_dim
        return x[:, :e], x[:, e], x[:, e + 1:]

    def forward(self, images: Tensor, targets: list[dict] | None = None):
        if images.dim() != 4:
            raise InputError(f"images: got shape {tuple(images.shape)}, expected (N, C, H, W)")
        if self.training and targets is None:
            raise InputError("targets: got None in training mode, expected one dict per image (boxes, labels, masks)")
        emb, seed, cls = self.dense(images)
        if self.training:
            return self._losses(emb, seed, cls, targets)
        size = tuple(images.shape[-2:])
        return [self.detect(emb[i], seed[i], cls[i], size) for i in range(images.shape[0])]

    def detect(self, emb: Tensor, seed_logits: Tensor, cls_logits: Tensor, size) -> dict[str, Tensor]:
        """One image's dense outputs -> ``scores`` (T,) seediness x class probability at each seed, ``labels``
        (T,) the seed's best non-background class, ``image_masks`` (T, H, W) soft masks at input size."""
        e, h, w = emb.shape
        probs = torch.softmax(cls_logits, 0).reshape(self.num_classes, -1)
        fg = 1 - probs[0]
        flat = emb.reshape(e, -1).t()
        s = torch.sigmoid(seed_logits).reshape(-1) * fg
        seeds = select_seeds(flat, s, self.max_instances, self.alpha)
        d2 = ((flat[None] - flat[seeds][:, None]) ** 2).sum(-1)           # (T, h*w)
        soft = (similarity(d2) * fg[None]).reshape(-1, 1, h, w)
        masks = F.interpolate(soft, size=size, mode="bilinear", align_corners=False)[:, 0]
        best = probs[1:, seeds].max(0)
        return {"scores": s[seeds] * best.values, "labels": best.indices + 1, "image_masks": masks}

    def _losses(self, emb: Tensor, seed_logits: Tensor, cls_logits: Tensor, targets: list[dict]) -> dict:
        n, _, h, w = emb.shape
        pair, seed_loss, sem = [], [], []
        for i, target in enumerate(targets):
            ids, labels = _id_map(target, (h, w), emb.dtype)
            sem.append(F.cross_entropy(cls_logits[i:i + 1], labels[None]))
            picked = _sample_per_instance(ids, self.pixels_per_instance)
            flat = emb[i].reshape(emb.shape[1], -1).t()
            pair.append(pairwise_loss(flat[picked], ids.reshape(-1)[picked]))
            # seediness target (Fathi et al.): how well the mask grown from p matches p's own instance (IoU)
            with torch.no_grad():
                grown = similarity(((flat[picked][:, None] - flat[None].detach()) ** 2).sum(-1)) >= self.mask_threshold
                own = ids.reshape(-1)[None] == ids.reshape(-1)[picked][:, None]
                iou = (grown & own).sum(1) / (grown | own).sum(1).clamp(min=1)
                goal = torch.where(ids.reshape(-1)[picked] > 0, iou.to(emb.dtype), torch.zeros_like(iou, dtype=emb.dtype))
            seed_loss.append(F.binary_cross_entropy_with_logits(seed_logits[i].reshape(-1)[picked], goal))
        return {"pairwise": torch.stack(pair).mean(), "seediness": torch.stack(seed_loss).mean(),
                "semantic": torch.stack(sem).mean()}


def _id_map(target: dict, size: tuple[int, int], dtype) -> tuple[Tensor, Tensor]:
    """Target masks (G, H, W) -> instance ids (h, w) int64 (0 background, g + 1 for mask g; later masks win
    where they overlap) and class labels (h, w) at ``size``, by area-averaged downsampling >= 0.5."""
    masks = target["masks"]
    ids = torch.zeros(size, dtype=torch.long)
    labels = torch.zeros(size, dtype=torch.long)
    if masks.shape[0]:
        small = F.interpolate(masks[:, None].to(dtype), size=size, mode="area")[:, 0] >= 0.5
        for g in range(small.shape[0]):
            ids[small[g]] = g + 1
            labels[small[g]] = int(target["labels"][g])
    return ids, labels


def _sample_per_instance(ids: Tensor, k: int) -> Tensor:
    """Up to ``k`` random flat pixel indices of every id in ``ids`` (background included), so each instance
    weighs the same in the pairwise loss whatever its size."""
    flat = ids.reshape(-1)
    picked = []
    for v in torch.unique(flat):
        where = torch.nonzero(flat == v).flatten()
        picked.append(where[torch.randperm(where.numel())[:k]])
    return torch.cat(picked)


def instances_from_seeds(scores, labels, image_masks, score_threshold: float = 0.0, mask_threshold: float = 0.5,
                         iou_threshold: float = 0.5, frame_size: tuple[int, int] | None = None):
    """Host post-processing of the graph's seeds -> :class:`~edgeseg.instances.Instances`: binarise the soft
    masks at ``mask_threshold`` (resized to ``frame_size`` first), keep seeds scoring >= ``score_threshold``
    best first, drop empty masks and masks whose IoU with a kept one exceeds ``iou_threshold``."""
    from ..instances.data import boxes_from_masks
    from ..instances.types import Instances
    from .._deps import require

    scores, labels = np.asarray(scores, np.float32).reshape(-1), np.asarray(labels, np.int64).reshape(-1)
    soft = np.asarray(image_masks, np.float32)
    if frame_size is not None and tuple(soft.shape[-2:]) != tuple(frame_size):
        cv2 = require("cv2", "resizing instance masks")
        soft = np.stack([cv2.resize(m, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_LINEAR)
                         for m in soft]) if len(soft) else np.zeros((0, *frame_size), np.float32)
    binary = soft >= mask_threshold
    kept = []
    for t in np.argsort(-scores, kind="stable"):
        m = binary[t]
        if scores[t] < score_threshold or not m.any():
            continue
        if any((m & binary[j]).sum() / (m | binary[j]).sum() > iou_threshold for j in kept):
            continue
        kept.append(t)
    masks = binary[kept] if kept else np.zeros((0, *soft.shape[-2:]), bool)
    return Instances(boxes_from_masks(masks.astype(np.uint8)), scores[kept], labels[kept], masks)


@register_model("bottomup")
def bottomup(num_classes: int, in_channels: int = 3, encoder: str = "mobilenetv3_small", width: float = 0.75,
             channels: int = 64, embedding_dim: int = 8, alpha: float = 1.0, max_instances: int = 8,
             mask_threshold: float = 0.5) -> BottomUp:
    """Bottom-up instances: pixel embeddings + seediness, greedy seeds, similarity masks (Fathi et al. 2017)."""
    return BottomUp(num_classes, in_channels, encoder=encoder, width=width, channels=channels,
                    embedding_dim=embedding_dim, alpha=alpha, max_instances=max_instances,
                    mask_threshold=mask_threshold)
