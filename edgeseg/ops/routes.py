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
``plugin`` targets edgeseg's ``tensorrt.plugin`` definitions (TensorRT 10.6+). DeconvNet's unpooling is
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
DEFAULT_ROUTE = "native"
_current = [DEFAULT_ROUTE]


def check_route(route: str) -> str:
    """``route`` if it is one of :data:`ROUTES`, else an :class:`InputError` naming the choices."""
    if route not in ROUTES:
        raise InputError(f"route: got {route!r}, expected one of {', '.join(ROUTES)}")
    return route


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
