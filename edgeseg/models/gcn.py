"""GCN (Peng et al. 2017, "Large Kernel Matters"): Global Convolutional Network + Boundary Refinement.

Each encoder stage (strides 4, 8, 16, 32) feeds a Global Convolution: two branches, (k x 1 then 1 x k)
and (1 x k then k x 1), summed, giving dense k x k connectivity for classification at O(2k) cost
instead of O(k^2), with no nonlinearity inside. A Boundary Refinement block (x + conv3x3(relu(conv3x3(x))))
sharpens each score map. Coarse scores are upsampled x2 by learned deconvolutions (bilinear init),
added to the next finer stage's scores and refined again; two more x2 upsamplings with refinement
reach the input size. ``boundary_refinement=False`` replaces every BR block by the identity (the
paper's ablation of BR).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .encoders import create_encoder, encoder_options
from .layers import BilinearDeconv, crop_to, init_weights
from .registry import register_model


class GlobalConv(nn.Module):
    """(N, in_ch, h, w) -> (N, out_ch, h, w) with a k x k receptive field from separable k x 1 / 1 x k convs."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 15):
        super().__init__()
        if k < 3 or k % 2 == 0:
            raise InputError(f"gcn kernel_size: got {k!r}, expected an odd int >= 3")
        p = k // 2
        self.left = nn.Sequential(nn.Conv2d(in_ch, out_ch, (k, 1), padding=(p, 0)),
                                  nn.Conv2d(out_ch, out_ch, (1, k), padding=(0, p)))
        self.right = nn.Sequential(nn.Conv2d(in_ch, out_ch, (1, k), padding=(0, p)),
                                   nn.Conv2d(out_ch, out_ch, (k, 1), padding=(p, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(x) + self.right(x)


class BoundaryRefinement(nn.Module):
    """Residual refinement of a score map: x + conv3x3(relu(conv3x3(x))), shape preserved."""

    def __init__(self, ch: int):
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class GCN(nn.Module):
    """``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)``."""

    def __init__(self, num_classes: int, in_channels: int = 3, encoder: str = "resnet18", kernel_size: int = 15,
                 boundary_refinement: bool = True, **encoder_kwargs):
        super().__init__()
        self.encoder = create_encoder(encoder, in_channels, output_stride=32, **encoder_kwargs)
        self.indices = [self.encoder.stage_index(s) for s in (4, 8, 16, 32)]
        if self.encoder.strides[0] != 2:
            raise InputError(f"gcn encoder {encoder!r}: first stage stride {self.encoder.strides[0]}, expected 2")
        c = num_classes
        self.gcn = nn.ModuleList(GlobalConv(self.encoder.out_channels[i], c, kernel_size) for i in self.indices)
        br = BoundaryRefinement if boundary_refinement else (lambda _: nn.Identity())
        self.br_stage = nn.ModuleList(br(c) for _ in self.indices)
        self.br_fused = nn.ModuleList(br(c) for _ in self.indices[:-1])
        self.up = nn.ModuleList(BilinearDeconv(c) for _ in range(len(self.indices) + 1))
        self.br_final = nn.ModuleList(br(c) for _ in range(2))
        init_weights(self.gcn, mode="fan_in")
        refinements = nn.ModuleList([self.br_stage, self.br_fused, self.br_final])
        init_weights(refinements, mode="fan_in")
        for m in refinements.modules():  # each refinement starts as the identity (zero-init residual)
            if isinstance(m, BoundaryRefinement):
                nn.init.zeros_(m.residual[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        scores = [br(gcn(features[i])) for i, gcn, br in zip(self.indices, self.gcn, self.br_stage)]
        y = scores[-1]  # stride 32
        for level in (2, 1, 0):  # strides 16, 8, 4
            y = self.br_fused[level](scores[level] + crop_to(self.up[level + 1](y), scores[level]))
        y = self.br_final[0](crop_to(self.up[0](y), features[0]))  # the stem's stride-2 grid
        return self.br_final[1](crop_to(self.up[-1](y), x))


@register_model("gcn")
def gcn(num_classes: int, in_channels: int = 3, encoder: str = "resnet18", kernel_size: int = 15,
        width: float | None = None, boundary_refinement: bool = True) -> GCN:
    """GCN: large-kernel (k x 1 + 1 x k) score branches + Boundary Refinement on ResNet-18 stages.

    ``boundary_refinement=False``: no BR blocks (identity), for the paper's BR ablation.
    """
    return GCN(num_classes, in_channels, encoder, kernel_size, bool(boundary_refinement), **encoder_options(width))
