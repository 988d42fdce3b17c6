"""A Segmenter whose whole pipeline runs on the server (``edgeseg serve MODEL --segmenter``).

The device sends the BGR frame and gets labels and probabilities back at frame size: no ONNX Runtime,
no preprocessing on the client, only ``tritonclient``. For tensor-level access (your own pre/post) use
:class:`~edgeseg.runtime.triton_runner.TritonRunner` instead.

>>> from edgeseg.triton.client import RemoteSegmenter
>>> seg = RemoteSegmenter("grpc://10.0.0.5:8001", "hc18_fastseg_segment")   # doctest: +SKIP
>>> result = seg(frame)          # frame: (H, W, 3) BGR uint8 -> result.labels (H, W) uint8   # doctest: +SKIP
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from ..pipeline import Segmentation
from ..runtime.triton_runner import TritonRunner


class RemoteSegmenter:
    """Callable ``frame -> Segmentation`` against a served ``<name>_segment`` model.

    Args:
        url: ``host:port`` (HTTP) or ``grpc://host:port``.
        model_name: the served segmenter, ``<model>_segment``.
        **options: :class:`TritonRunner` connection options (``timeout_s``, ``retries``, ``backoff_s``).

    ``timings`` has ``"infer"`` (the round trip, server-side pre/post included) and zeros for
    ``"pre"``, ``"post"``, ``"crf"``.
    """

    def __init__(self, url: str, model_name: str, **options) -> None:
        from ..artifact import Artifact, TensorSpec

        sidecar = Artifact(path=f"{model_name}.onnx", inputs=[TensorSpec("frame", ["height", "width", "channels"], "uint8")],
                           outputs=[TensorSpec("labels", ["height", "width"], "uint8"),
                                    TensorSpec("probs", ["classes", "height", "width"], "float32")])
        self.runner = TritonRunner(sidecar, url=url, model_name=model_name, check_finite=False, **options)

    def __call__(self, frame: np.ndarray) -> Segmentation:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
            raise InputError(f"frame: got {frame.dtype} array of shape {frame.shape}, expected (H, W, 3) BGR or "
                             "(H, W) gray uint8")
        if frame.ndim == 2:
            frame = frame[..., None]
        start = time.perf_counter()
        out = self.runner.infer({"frame": np.ascontiguousarray(frame)})
        infer_s = time.perf_counter() - start
        return Segmentation(labels=out["labels"], probs=out["probs"],
                            timings={"pre": 0.0, "infer": infer_s, "post": 0.0, "crf": 0.0})

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> RemoteSegmenter:  # noqa: PYI034 - plain class
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
