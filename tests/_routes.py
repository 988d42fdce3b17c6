"""Helpers of the export-route tests: real HC18 frames as tensors, and a parse + build of an ONNX file with
the real TensorRT-RTX builder (no GPU needed: it builds ahead of time).

``build_rtx`` is a small stand-in until ``edgeseg.export.trt_build`` takes ``flavour="rtx"``; it returns
what the route tests report (build seconds, engine bytes) and raises with the parser's node and reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

HC18_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18" / "images"


def hc18_frames(count: int, size: tuple[int, int]) -> np.ndarray:
    """The first ``count`` HC18 ultrasound frames, gray, resized to ``size`` (H, W), normalised (x/255 - 0.5)/0.25:
    (count, 1, H, W) float32. Skips when the data set is not there."""
    cv2 = pytest.importorskip("cv2")
    files = sorted(HC18_IMAGES.glob("*_HC.png"))[:count]
    if len(files) < count:
        pytest.skip(f"HC18 images not found at {HC18_IMAGES}")
    frames = [cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), size[::-1], interpolation=cv2.INTER_AREA)
              for f in files]
    return ((np.stack(frames)[:, None].astype(np.float32) / 255.0) - 0.5) / 0.25


def tensorrt_rtx():
    """``import tensorrt_rtx``, or skip saying why it does not import here."""
    try:
        import tensorrt_rtx
    except Exception as exc:  # noqa: BLE001 - a missing wheel or missing libraries: skip with the reason
        pytest.skip(f"tensorrt_rtx does not import: {type(exc).__name__}: {exc}")
    return tensorrt_rtx


class RtxBuildError(RuntimeError):
    """The parser or builder refused the network; the message names the node and the reason."""


def parser_errors(parser) -> list[str]:
    """One line per parser error: node name, op type and TensorRT's reason."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        lines.append(f"node {err.node_name() or err.node()!r} ({err.node_operator()}): {err.desc()}")
    return lines


def build_rtx(onnx_path: str | Path, shapes: dict[str, tuple[tuple[int, ...], ...]] | None = None):
    """Build ``onnx_path`` strongly typed; ``shapes``: input -> (min, opt, max) for its dynamic dims.

    Returns ``(seconds, engine bytes)``.
    """
    trt = tensorrt_rtx()
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise RtxBuildError("TensorRT-RTX cannot parse " + Path(onnx_path).name + ": " + "; ".join(parser_errors(parser)))
    config = builder.create_builder_config()
    dynamic = [network.get_input(i) for i in range(network.num_inputs) if -1 in tuple(network.get_input(i).shape)]
    if dynamic:
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            if tensor.name not in (shapes or {}):
                raise RtxBuildError(f"input {tensor.name!r} has dynamic shape {tuple(tensor.shape)}: pass its shapes")
            profile.set_shape(tensor.name, *shapes[tensor.name])
        config.add_optimization_profile(profile)
    start = time.perf_counter()
    engine = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if engine is None:
        raise RtxBuildError(f"TensorRT-RTX could not build {Path(onnx_path).name} (see the log above)")
    return seconds, engine.nbytes
