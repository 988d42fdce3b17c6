"""Helpers of the export-route tests: real HC18 frames as tensors, and a parse + build of an ONNX file with
the real TensorRT-RTX builder (no GPU needed: it builds ahead of time).

``build_rtx`` builds through ``edgeseg.export.trt_build.engine_from_onnx(flavour="rtx")`` when the graph
has a sidecar, directly with the builder when it has none; it returns what the route tests report
(build seconds, engine bytes).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

HC18_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18" / "images"


def hc18_gray(count: int) -> list[np.ndarray]:
    """The first ``count`` HC18 ultrasound frames as the gray uint8 images a user feeds the Segmenter (their own
    size). Skips when the data set is not there."""
    cv2 = pytest.importorskip("cv2")
    files = sorted(HC18_IMAGES.glob("*_HC.png"))[:count]
    if len(files) < count:
        pytest.skip(f"HC18 images not found at {HC18_IMAGES}")
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]


def hc18_frames(count: int, size: tuple[int, int]) -> np.ndarray:
    """:func:`hc18_gray` resized to ``size`` (H, W), normalised (x/255 - 0.5)/0.25: (count, 1, H, W) float32."""
    gray = hc18_gray(count)  # skips first when cv2 or the data set is missing
    import cv2

    frames = [cv2.resize(frame, size[::-1], interpolation=cv2.INTER_AREA) for frame in gray]
    return ((np.stack(frames)[:, None].astype(np.float32) / 255.0) - 0.5) / 0.25


def tensorrt_rtx():
    """``import tensorrt_rtx``, or skip saying why it does not import here."""
    try:
        import tensorrt_rtx
    except Exception as exc:  # noqa: BLE001 - a missing wheel or missing libraries: skip with the reason
        pytest.skip(f"tensorrt_rtx does not import: {type(exc).__name__}: {exc}")
    return tensorrt_rtx


def build_rtx(onnx_path: str | Path, shapes: dict[str, tuple[tuple[int, ...], ...]] | None = None):
    """Build ``onnx_path`` with TensorRT-RTX; ``shapes``: input -> (min, opt, max) for its dynamic dims.

    With a sidecar the product's builder does it (``engine_from_onnx(flavour="rtx")``, profiles from the
    sidecar plus ``shapes``); a bare graph is built strongly typed here. Returns ``(seconds, engine bytes)``;
    raises :class:`~edgeseg.export.trt_build.EngineBuildError` naming the node the parser refused.
    """
    trt = tensorrt_rtx()
    from edgeseg.artifact import sidecar_path
    from edgeseg.export.trt_build import EngineBuildError, engine_from_onnx

    path = Path(onnx_path)
    start = time.perf_counter()
    if sidecar_path(path).exists():
        engine = engine_from_onnx(path, path.with_suffix(".engine"), flavour="rtx", shapes=shapes, timing_cache=False)
        return time.perf_counter() - start, engine.path.stat().st_size
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = [f"node {e.node_name()!r} ({e.node_operator()}): {e.desc()}"
                  for e in (parser.get_error(i) for i in range(parser.num_errors))]
        raise EngineBuildError(f"TensorRT-RTX cannot parse {path.name}: " + "; ".join(errors))
    config = builder.create_builder_config()
    dynamic = [network.get_input(i) for i in range(network.num_inputs) if -1 in tuple(network.get_input(i).shape)]
    if dynamic:
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            profile.set_shape(tensor.name, *shapes[tensor.name])
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise EngineBuildError(f"TensorRT-RTX could not build {path.name}")
    return time.perf_counter() - start, engine.nbytes


def assert_split_matches_pytorch(art, model, folder: Path, size: tuple[int, int]) -> None:
    """A split instance export (engine graph + host graph, ``route="decomposed"``) on two real HC18 frames:
    the host graph uses the GridSample RoIAlign, engine graph (ORT) + ``run_after_engine`` give PyTorch's
    detections within 1e-4, and the engine graph builds with TensorRT-RTX."""
    import onnx
    import onnxruntime as ort
    import torch

    from edgeseg.models.maskrcnn.export import MaskRCNNDetections, run_after_engine

    stage = art.extra["export"]["after_engine"]
    host_ops = {n.op_type for n in onnx.load(str(folder / stage["onnx"])).graph.node}
    assert "GridSample" in host_ops and "RoiAlign" not in host_ops  # the standard-op RoIAlign in the host graph
    session = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    for x in hc18_frames(2, size):
        got = run_after_engine(stage, *session.run(None, {"input": x[None]}), folder=folder)
        with torch.no_grad():
            want = [t.numpy() for t in MaskRCNNDetections(model)(torch.from_numpy(x[None]))]
        assert got[0].shape == want[0].shape and got[0].shape[0] > 0
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-4)
    seconds, size_bytes = build_rtx(art.path)
    assert size_bytes > 0
