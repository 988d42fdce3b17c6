"""Export routes: which ONNX form edgeseg's custom ops take (``edgeseg export --route``).

==========  ==========================  ==================================  ==========================
route       DeformConv                  RoIAlign                            DenseCRF (deeplabv3_crf)
==========  ==========================  ==================================  ==========================
native      ONNX ``DeformConv`` (19)    ONNX ``RoiAlign``                   ``edgeseg.DenseCRF`` node
decomposed  ``GridSample`` + 1x1 Conv   ``GridSample`` (border) + average   graph ends before the CRF
plugin      ``edgeseg.DeformConv2d``    ``edgeseg.RoIAlign``                ``edgeseg.DenseCRF`` node
==========  ==========================  ==================================  ==========================

``native`` suits TensorRT 10.1+ and ONNX Runtime; ``decomposed`` is standard ops that TensorRT-RTX and
TensorRT 8.x (JetPack 5 / 6.0) parse, with the CRF left to the CuPy/host stage after the engine;
``plugin`` targets edgeseg's ``tensorrt.plugin`` definitions (TensorRT 10.6+). ``auto``
(:func:`resolve_route`) picks ``decomposed`` where the TensorRT library this machine loads is TensorRT-RTX
(no RoiAlign, NonZero, NMS, DeformConv or DenseCRF it can build), else ``native``. DeconvNet's unpooling is
always the standard-op switch mask (no TensorRT parses ``MaxPool`` with indices), and NMS is always
ONNX ``NonMaxSuppression``. The ops read the route while ``torch.compiler.is_exporting()``:

>>> with export_route("decomposed"):            # doctest: +SKIP
...     torch.onnx.export(model, (x,), dynamo=True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..errors import InputError

ROUTES = ("native", "decomposed", "plugin")
CHOICES = ("auto", *ROUTES)  # what edgeseg export --route takes; auto resolves to one of ROUTES
DEFAULT_ROUTE = "native"
_current = [DEFAULT_ROUTE]


def check_route(route: str) -> str:
    """``route`` if it is one of :data:`ROUTES`, else an :class:`InputError` naming the choices."""
    if route not in ROUTES:
        raise InputError(f"route: got {route!r}, expected one of {', '.join(ROUTES)}")
    return route


def resolve_route(route: str, flavour: str = "auto") -> tuple[str, str]:
    """``(route, why)``: ``route`` itself, or for ``"auto"`` the route that builds with the TensorRT library
    ``flavour`` loads on this machine: ``decomposed`` for TensorRT-RTX, ``native`` for the standard library
    (10.3+, native RoiAlign and DeformConv) and when none loads (ONNX Runtime runs every native op)."""
    if route != "auto":
        if route not in CHOICES:
            raise InputError(f"route: got {route!r}, expected one of {', '.join(CHOICES)}")
        return route, f"--route {route}"
    from ..errors import MissingDependencyError
    from ..runtime.tensorrt_env import load_flavour

    try:
        lib = load_flavour(flavour)
    except MissingDependencyError:
        return "native", "auto: no TensorRT library loads here, so the native graph (ONNX Runtime runs all of it)"
    if lib.name == "rtx":
        return "decomposed", (f"auto: TensorRT-RTX {lib.version} loads here; it builds no NonZero, NonMaxSuppression, "
                              "DeformConv or DenseCRF, and its ROIAlign_TRT plugin needs a GPU when created")
    return "native", f"auto: TensorRT {lib.version} loads here (native RoiAlign, DeformConv from 10.1)"


def current_route() -> str:
    """The route the ops export with (``native`` outside :func:`export_route`)."""
    return _current[-1]


@contextlib.contextmanager
def export_route(route: str) -> Iterator[str]:
    """Export edgeseg's custom ops in ``route``'s form inside the ``with`` block."""
    _current.append(check_route(route))
    try:
        yield route
    finally:
        _current.pop()


def decomposed_exporting() -> bool:
    """True while an export traces with the ``decomposed`` route (the ops then emit standard ops)."""
    import torch

    return torch.compiler.is_exporting() and current_route() == "decomposed"
