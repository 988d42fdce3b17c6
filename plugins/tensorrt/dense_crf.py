"""``edgeseg::DenseCRF``: mean-field dense CRF refinement as a TensorRT plugin (JIT, CuPy).
Inputs: probs (N, C, H, W) float32 (softmax probabilities), image (N, H, W, 3) float32 in 0..255 (the
frame the probabilities belong to, BGR). Attribute: params (str, JSON object of keyword arguments for
``edgeseg.ops.dense_crf``, e.g. '{"iterations": 5}'). Output: refined probs (N, C, H, W) float32.
Runs ``edgeseg.ops.dense_crf`` on CuPy arrays on TensorRT's stream (several kernels: no AOT form);
``params='{"window": 7}'`` selects the windowed CRF, one fused kernel launch per iteration
(``edgeseg.plugins.dense_crf``), otherwise the fully connected permutohedral-lattice CRF.
"""

# No `from __future__ import annotations` here: tensorrt.plugin reads these annotations at run time
# (issubclass(annotation, TensorDesc), typing.get_origin(...) is tuple); strings would break it.

from typing import List, Tuple  # noqa: UP035 - see above

import tensorrt.plugin as trtp

from . import _common

REQUIRES_TENSORRT = (10, 6)
OP = "edgeseg::DenseCRF"


@trtp.register(OP)
def dense_crf_desc(probs: trtp.TensorDesc, image: trtp.TensorDesc, params: str) -> trtp.TensorDesc:
    return probs.like()


@trtp.autotune(OP)
def dense_crf_autotune(probs: trtp.TensorDesc, image: trtp.TensorDesc,
                       outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
    return [trtp.AutoTuneCombination("FP32, FP32, FP32", "LINEAR")]


@trtp.impl(OP)
def dense_crf_impl(probs: trtp.Tensor, image: trtp.Tensor, params: str, outputs: Tuple[trtp.Tensor],
                   stream: int) -> None:
    import cupy as cp

    from edgeseg.ops import dense_crf

    options = _common.json_attribute("params", params)
    view = _common.cupy_view
    p, img, out = view(probs), view(image), view(outputs[0])
    with _common.external_stream(stream):
        for b in range(p.shape[0]):
            frame = cp.clip(img[b], 0, 255).astype(cp.uint8)
            out[b] = dense_crf(p[b], frame, **options)
