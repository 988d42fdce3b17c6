"""CRF-as-RNN (Zheng et al., 2015): mean-field iterations of the dense CRF unrolled as network layers,
with learnable kernel weights and label compatibility, trainable end to end.

Message passing is **windowed** (ConvCRF): exact Gaussian kernels restricted to a k x k neighbourhood,
computed with ``F.unfold``. That keeps every step a plain differentiable tensor expression (no
lattice to differentiate through) and is exactly :func:`edgeseg.ops.dense_crf_windowed` -- the model
the fused CUDA kernel (``edgeseg.plugins.dense_crf``) and the TensorRT plugin run at deployment::

    Q_0 = softmax(z)
    Q_t = softmax(z - sym(mu) (w_g m_g(Q_{t-1}) + w_b m_b(Q_{t-1})))     m_k = N_k K_k N_k (windowed)

``z`` are the network's logits, ``w = (w_g, w_b)`` the learnable kernel weights (``kernel_weights``),
``mu`` the learnable compatibility (``compatibility``, initialised to Potts ``1 - I``). The module
returns ``log Q_T`` (N, C, H, W): feed it to ``nn.NLLLoss`` or ``CrossEntropyLoss`` (log-softmax of
log-probabilities is the identity).

Export: under ``torch.onnx.export(..., dynamo=True, custom_translation_table=translation_table())``
(:mod:`edgeseg.ops.onnx_translations`) the module emits ``Softmax -> edgeseg.DenseCRF(probs, image NHWC,
params=JSON) -> Log``; ``params`` are the keyword arguments of :func:`edgeseg.ops.dense_crf` (window included), frozen from the
parameters at the last ``.eval()`` / ``load_state_dict`` / :meth:`CRFasRNN.freeze_for_export`.
The node is the ``edgeseg::DenseCRF`` TensorRT plugin's contract (``plugins/tensorrt/dense_crf.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import InputError

__all__ = ["CRFasRNN", "DeepLabV3CRF", "mean_field_windowed_torch", "run_after_engine"]


def mean_field_windowed_torch(logits: torch.Tensor, image: torch.Tensor, kernel_weights: torch.Tensor,
                              compatibility: torch.Tensor, iterations: int, window: int,
                              sxy_gaussian: Sequence[float], sxy_bilateral: Sequence[float],
                              srgb: Sequence[float]) -> torch.Tensor:
    """Windowed mean field, differentiable: logits (N, C, H, W), image (N, K, H, W) in 0..255 -> log Q.

    ``kernel_weights`` (2,) = (w_gauss, w_bilateral); ``compatibility`` (C, C) mu (symmetrised).
    """
    n, c, h, w = logits.shape
    k = image.shape[1]
    r, taps = window // 2, window * window
    dtype, device = logits.dtype, logits.device
    image = image.to(dtype)
    offsets = torch.arange(-r, r + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")  # unfold's tap order: row-major (dy, dx)
    dy, dx = dy.reshape(taps, 1), dx.reshape(taps, 1)
    valid = F.unfold(torch.ones(n, 1, h, w, dtype=dtype, device=device), window, padding=r)  # (N, T, HW)
    gauss = torch.exp(-0.5 * ((dx / sxy_gaussian[0]) ** 2 + (dy / sxy_gaussian[1]) ** 2)) * valid
    inv_srgb = torch.tensor([1.0 / s for s in srgb], dtype=dtype, device=device).view(1, k, 1, 1)
    neighbours = F.unfold(image, window, padding=r).view(n, k, taps, h * w)
    colour = (((image.view(n, k, 1, h * w) - neighbours) * inv_srgb) ** 2).sum(1)
    bilat = torch.exp(-0.5 * ((dx / sxy_bilateral[0]) ** 2 + (dy / sxy_bilateral[1]) ** 2 + colour)) * valid
    weights = [_normalised(kernel, h, w, window) for kernel in (gauss, bilat)]  # (N, T, HW) each
    mu = 0.5 * (compatibility + compatibility.t())
    z = logits.reshape(n, c, h * w)
    energy = z
    for _ in range(iterations):
        q = torch.softmax(energy, dim=1).view(n, c, h, w)
        q_taps = F.unfold(q, window, padding=r).view(n, c, taps, h * w)
        message = sum(kernel_weights[i] * (q_taps * weights[i].unsqueeze(1)).sum(2) for i in range(2))
        energy = z - torch.einsum("lm,nmp->nlp", mu, message)
    return torch.log_softmax(energy, dim=1).view(n, c, h, w)


def _normalised(kernel: torch.Tensor, h: int, w: int, window: int) -> torch.Tensor:
    """``n(p) k(p, q) n(q)`` with ``n = 1/sqrt(sum_q k)``; kernel (N, T, HW) -> (N, T, HW)."""
    n = kernel.shape[0]
    norm = torch.rsqrt(kernel.sum(1))  # (N, HW)
    norm_taps = F.unfold(norm.view(n, 1, h, w), window, padding=window // 2)  # (N, T, HW), 0 outside
    return kernel * norm.unsqueeze(1) * norm_taps


class CRFasRNN(nn.Module):
    """Dense-CRF mean field as a layer: (logits (N, C, H, W), image (N, K, H, W) in 0..255) -> log Q.

    Args:
        num_classes: C.  channels: K (3 for colour, 1 for ultrasound).
        iterations: unrolled mean-field steps (5 at training time in Zheng et al.).
        window: odd neighbourhood size k of the message passing.
        sxy_gaussian, sxy_bilateral, srgb: fixed kernel widths (pixels; intensity).
        compat_gaussian, compat_bilateral: initial kernel weights (learnable: ``kernel_weights``).

    >>> crf = CRFasRNN(num_classes=2, channels=1, window=5)
    >>> crf(torch.randn(1, 2, 8, 8), torch.rand(1, 1, 8, 8) * 255).shape
    torch.Size([1, 2, 8, 8])
    """

    def __init__(self, num_classes: int, channels: int = 3, iterations: int = 5, window: int = 7,
                 sxy_gaussian: float = 3.0, sxy_bilateral: float = 80.0, srgb: float | Sequence[float] = 13.0,
                 compat_gaussian: float = 3.0, compat_bilateral: float = 10.0):
        super().__init__()
        if num_classes < 2:
            raise InputError(f"num_classes: got {num_classes!r}, expected >= 2")
        if window < 1 or window % 2 == 0:
            raise InputError(f"window: got {window!r}, expected an odd int >= 1")
        srgb = [float(srgb)] * channels if isinstance(srgb, (int, float)) else [float(s) for s in srgb]
        if len(srgb) != channels:
            raise InputError(f"srgb: got {srgb!r}, expected one width per channel ({channels})")
        self.num_classes, self.channels, self.iterations, self.window = num_classes, channels, iterations, window
        self.sxy_gaussian = (float(sxy_gaussian),) * 2
        self.sxy_bilateral = (float(sxy_bilateral),) * 2
        self.srgb = tuple(srgb)
        self.kernel_weights = nn.Parameter(torch.tensor([compat_gaussian, compat_bilateral], dtype=torch.float32))
        self.compatibility = nn.Parameter(1.0 - torch.eye(num_classes))
        self._frozen_params: str | None = None
        self.register_load_state_dict_post_hook(_refreeze_after_load)

    def forward(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise InputError(f"logits: got shape {tuple(logits.shape)}, expected (N, {self.num_classes}, H, W)")
        if image.dim() != 4 or image.shape[1] != self.channels or image.shape[2:] != logits.shape[2:]:
            raise InputError(f"image: got shape {tuple(image.shape)}, expected (N, {self.channels}, "
                             f"{logits.shape[2]}, {logits.shape[3]}) with values in 0..255")
        if torch.compiler.is_exporting():
            if self._frozen_params is None:
                raise InputError("CRFasRNN: call model.eval() (or crf.freeze_for_export()) before exporting, so "
                                 "the learned weights are written into the ONNX node")
            return torch.ops.edgeseg.crf_as_rnn(logits, image, self._frozen_params)
        return mean_field_windowed_torch(logits, image, self.kernel_weights, self.compatibility, self.iterations,
                                         self.window, self.sxy_gaussian, self.sxy_bilateral, self.srgb)

    def dense_crf_params(self) -> dict[str, Any]:
        """Keyword arguments of :func:`edgeseg.ops.dense_crf` that run this layer's model on (C, H, W) probs."""
        w = self.kernel_weights.detach().cpu().double().tolist()
        mu = self.compatibility.detach().cpu().double()
        # clip: the smallest normal float32, not dense_crf's 1e-5: the layer's unary is the logits themselves, and
        # -log(softmax) equals them (up to a per-pixel constant) only unclipped; 1e-5 moved log Q by up to 1.5.
        return {"iterations": self.iterations, "window": self.window, "sxy_gaussian": list(self.sxy_gaussian),
                "sxy_bilateral": list(self.sxy_bilateral), "srgb": list(self.srgb), "compat_gaussian": w[0],
                "compat_bilateral": w[1], "compat": (0.5 * (mu + mu.t())).tolist(),
                "clip": float(torch.finfo(torch.float32).tiny)}

    def freeze_for_export(self) -> str:
        """Snapshot the learned values into the JSON the ONNX node carries; returns it."""
        self._frozen_params = json.dumps(self.dense_crf_params())
        return self._frozen_params

    def train(self, mode: bool = True) -> CRFasRNN:
        super().train(mode)
        if not mode:
            self.freeze_for_export()
        return self


def _refreeze_after_load(module: CRFasRNN, incompatible_keys) -> None:
    module.freeze_for_export()


class DeepLabV3CRF(nn.Module):
    """The zoo's ``deeplabv3`` followed by :class:`CRFasRNN`: x (N, K, H, W) normalised -> log Q (N, C, H, W).

    The CRF needs the image in 0..255: ``pixel = (x * std + mean) * 255`` (the preprocessing inverted).

    >>> model = DeepLabV3CRF(num_classes=2, in_channels=1)                # doctest: +SKIP
    >>> model(torch.randn(1, 1, 64, 64)).shape                            # doctest: +SKIP
    torch.Size([1, 2, 64, 64])
    """

    def __init__(self, num_classes: int, in_channels: int = 3, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, crf_iterations: int = 5, window: int = 7, **backbone_kwargs):
        super().__init__()
        from edgeseg.models import create_model

        self.backbone = create_model("deeplabv3", num_classes, in_channels, **backbone_kwargs)
        self.crf = CRFasRNN(num_classes, channels=in_channels, iterations=crf_iterations, window=window)
        mean = [0.0] * in_channels if mean is None else list(mean)
        std = [1.0] * in_channels if std is None else list(std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, in_channels, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, in_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from edgeseg.ops.routes import decomposed_exporting

        if decomposed_exporting():  # the graph stops before the CRF: it runs after the engine (after_engine_stage)
            return self.backbone(x)
        return self.crf(self.backbone(x), (x * self.std + self.mean) * 255.0)

    def engine_part(self) -> nn.Module:
        """What a ``decomposed`` export computes: the backbone (input -> logits)."""
        return self.backbone

    def after_engine_stage(self) -> dict[str, Any]:
        """The sidecar's ``extra.export.after_engine`` for a graph exported without the CRF (``--route decomposed``).

        The engine outputs the backbone's logits; :func:`run_after_engine` finishes the model from them and
        the network input: ``log(dense_crf(softmax(logits), (input * std + mean) * 255, **params))``.
        """
        return {"stage": "dense_crf", "engine_output": "logits", "params": self.crf.dense_crf_params(),
                "image": {"from": "input", "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist(),
                          "scale": 255.0},
                "output": "log probabilities (N, C, H, W)"}


def run_after_engine(stage: dict[str, Any], logits, network_input):
    """Finish a ``decomposed`` deeplabv3_crf on the host (NumPy) or GPU (CuPy arrays): the sidecar's
    ``after_engine`` stage on the engine's logits (N, C, H, W) and the network input (N, K, H, W) -> log Q.
    :func:`edgeseg.after_engine.finish_dense_crf` (the Segmenter runs it by itself)."""
    from edgeseg.after_engine import finish_dense_crf

    return finish_dense_crf(stage, logits, network_input)


def deeplabv3_crf(num_classes: int, in_channels: int = 3, **kwargs: Any) -> DeepLabV3CRF:
    """Registry factory for ``deeplabv3_crf`` (see :class:`DeepLabV3CRF`)."""
    return DeepLabV3CRF(num_classes, in_channels, **kwargs)


try:  # registration only: the zoo lists "deeplabv3_crf" -> this module
    from edgeseg.models.registry import register_model
except ImportError:  # a build without the zoo
    pass
else:
    register_model("deeplabv3_crf")(deeplabv3_crf)


# --- export: the torch custom op (its ONNX translation: edgeseg.ops.onnx_translations) ---------------

@torch.library.custom_op("edgeseg::crf_as_rnn", mutates_args=())
def _crf_as_rnn_op(logits: torch.Tensor, image: torch.Tensor, params: str) -> torch.Tensor:
    """The exported form of :class:`CRFasRNN` (its math with frozen ``params``); returns log Q."""
    p = json.loads(params)
    compat = torch.tensor(p["compat"], dtype=logits.dtype, device=logits.device)
    weights = torch.tensor([p["compat_gaussian"], p["compat_bilateral"]], dtype=logits.dtype, device=logits.device)
    return mean_field_windowed_torch(logits, image, weights, compat, p["iterations"], p["window"],
                                     p["sxy_gaussian"], p["sxy_bilateral"], p["srgb"])


@_crf_as_rnn_op.register_fake
def _(logits, image, params):
    return torch.empty_like(logits)


def __getattr__(name: str):
    # The ONNX translation and schema moved to edgeseg.ops.onnx_translations, the one home of edgeseg's ONNX side.
    # Resolved by name on first use: that module imports this one (to register the op), not the other way round.
    if name not in ("crf_translation_table", "register_onnx_schema", "CRF_TRANSLATION_TABLE"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    import warnings

    warnings.warn(f"edgeseg.ops.crf_rnn.{name} is deprecated: use edgeseg.ops.onnx_translations.translation_table() "
                  "(every edgeseg op) or register_onnx_schemas()", DeprecationWarning, stacklevel=2)
    home = importlib.import_module("edgeseg.ops.onnx_translations")
    if name == "register_onnx_schema":
        return home.register_onnx_schemas

    def crf_translation_table() -> dict:
        home.register_onnx_schemas()
        return {torch.ops.edgeseg.crf_as_rnn.default: home.crf_as_rnn_to_onnx}

    return crf_translation_table() if name == "CRF_TRANSLATION_TABLE" else crf_translation_table
