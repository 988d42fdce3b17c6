"""A shared tester for zoo models, so each model's test is a few lines (segmentation_models.pytorch style).

>>> from edgeseg.models.testing import check_model           # doctest: +SKIP
>>> check_model("fastseg", num_classes=3, in_channels=1)     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .registry import create_model

SIZES = ((64, 64), (96, 128))


def round_up(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """Smallest (H, W) >= ``size`` that is a multiple of ``multiple`` per side."""
    return tuple(-(-s // multiple) * multiple for s in size)


def input_sizes(model: torch.nn.Module, sizes=SIZES) -> list[tuple[int, int]]:
    """``sizes`` rounded up to the model's ``input_multiple`` (1 for models that take any size)."""
    return [round_up(s, getattr(model, "input_multiple", 1)) for s in sizes]



def build(name: str, num_classes: int = 3, in_channels: int = 3, seed: int = 0, **kwargs: Any) -> torch.nn.Module:
    """``create_model`` under a fixed seed."""
    torch.manual_seed(seed)
    return create_model(name, num_classes=num_classes, in_channels=in_channels, **kwargs)


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm random running statistics and affine parameters, as after training, so that
    eval-mode outputs have realistic magnitudes (freshly built nets in eval mode give near-constant logits)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return model


def check_forward_backward(model: torch.nn.Module, num_classes: int, in_channels: int, sizes=SIZES) -> None:
    """Train-mode forward at each size gives (2, C, H, W) logits; backward reaches every parameter."""
    model.train()
    for h, w in input_sizes(model, sizes):
        x = torch.randn(2, in_channels, h, w, generator=torch.Generator().manual_seed(h * w))
        y = model(x)
        assert tuple(y.shape) == (2, num_classes, h, w), f"output {tuple(y.shape)} for input {(2, in_channels, h, w)}"
        assert torch.isfinite(y).all(), "non-finite logits"
        model.zero_grad(set_to_none=True)
        target = torch.randint(0, num_classes, (2, h, w), generator=torch.Generator().manual_seed(1))
        torch.nn.functional.cross_entropy(y, target).backward()
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


def check_deterministic(name: str, num_classes: int, in_channels: int, **kwargs: Any) -> None:
    """The same seed builds the same weights, and eval forward is reproducible bit for bit."""
    a = build(name, num_classes, in_channels, seed=7, **kwargs).eval()
    b = build(name, num_classes, in_channels, seed=7, **kwargs).eval()
    h, w = input_sizes(a, SIZES[:1])[0]
    x = torch.randn(1, in_channels, h, w, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ya, ya2, yb = a(x), a(x), b(x)
    assert torch.equal(ya, ya2), "two eval forwards of one model differ"
    assert torch.equal(ya, yb), "two models built with the same seed differ"


def onnx_parity(model: torch.nn.Module, x: torch.Tensor, **export_kwargs: Any) -> tuple[float, float]:
    """Export with the dynamo exporter, run in ONNX Runtime; return (max |torch - onnxruntime|, std of the
    torch output) so that a caller can check that the comparison is not between near-constant maps."""
    import onnxruntime as ort

    model.eval()
    with torch.no_grad():
        expected = model(x).numpy()
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, **export_kwargs)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return float(np.abs(got - expected).max()), float(expected.std())
