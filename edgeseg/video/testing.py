"""Helpers for testing and benchmarking streams without a camera or a trained model.

- :func:`write_clip` writes a real video whose frame ``i`` carries ``i`` in two flat blocks, and
  :func:`frame_number` reads it back (robust to lossy codecs), so tests can check order and completeness.
- :class:`FakeSegmenter` is a Segmenter stand-in with a controllable delay and failure point.
- :func:`threshold_onnx` writes a tiny real ONNX model + sidecar (pixel > 127 is class 1) for end-to-end runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BLOCK_STEP = 15  # 17 levels per block (0..240) -> frame numbers up to 17 * 17 - 1


def numbered_frame(i: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """(H, W, 3) BGR uint8 frame for number ``i``: left half (i // 17) * 15, right half (i % 17) * 15;
    a bright square in the bottom-left quarter gives the segmenter something to find."""
    if not 0 <= i < 17 * 17:
        raise ValueError(f"i: got {i}, expected 0 <= i < {17 * 17}")
    w, h = size
    frame = np.empty((h, w, 3), np.uint8)
    frame[:, : w // 2] = (i // 17) * BLOCK_STEP
    frame[:, w // 2:] = (i % 17) * BLOCK_STEP
    frame[h * 3 // 4:, : w // 4] = 255
    return frame


def frame_number(image: np.ndarray) -> int:
    """The number :func:`numbered_frame` drew into ``image`` (read from the top half, away from the square)."""
    h, w = image.shape[:2]
    top = image[: h // 2].astype(np.float64)
    high = int(round(top[:, 2: w // 2 - 2].mean() / BLOCK_STEP))
    low = int(round(top[:, w // 2 + 2: -2].mean() / BLOCK_STEP))
    return high * 17 + low


def write_clip(path: str | Path, frames: int, size: tuple[int, int] = (96, 64), fps: float = 25.0,
               codec: str | None = None) -> Path:
    """Write ``frames`` numbered frames to ``path`` (.avi: OpenCV MJPG; .mp4: H.264 via PyAV, or ``codec``)."""
    from .sinks import VideoFileSink

    path = Path(path)
    with VideoFileSink(path, fps=fps, size=size, codec=codec) as sink:
        for i in range(frames):
            sink.write(numbered_frame(i, size))
    return path


def count_frames(path: str | Path) -> int:
    """Decode a video file with OpenCV and count the frames that decode."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    n = 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


@dataclass
class FakeSegmentation:
    labels: np.ndarray
    probs: np.ndarray
    timings: dict
    instances: object = None


@dataclass
class FakeSegmenter:
    """Callable frame -> segmentation: labels = red channel > 127, after sleeping ``delay`` seconds.

    Raises RuntimeError on call number ``fail_at`` (0-based) when set. Records the thread it ran on.
    """

    delay: float = 0.0
    fail_at: int | None = None
    smooth: float | None = None
    calls: int = 0
    resets: int = 0
    threads: set = field(default_factory=set)

    def __call__(self, frame: np.ndarray) -> FakeSegmentation:
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError(f"fake failure on call {self.calls}")
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        t0 = time.perf_counter()
        if self.delay:
            time.sleep(self.delay)
        labels = (frame[:, :, 2] > 127).view(np.uint8)
        probs = np.stack([1 - labels, labels]).astype(np.float32)
        return FakeSegmentation(labels, probs, {"pre": 0.0, "infer": time.perf_counter() - t0, "post": 0.0,
                                                "crf": 0.0})

    def overlay(self, frame: np.ndarray, result, alpha: float = 0.5) -> np.ndarray:
        out = frame.copy()
        out[result.labels == 1] = (0, 0, 255)
        return out

    def reset(self) -> None:
        self.resets += 1


def threshold_onnx(path: str | Path, size: tuple[int, int] = (64, 96)) -> Path:
    """Write a 1x1-conv ONNX model on gray input (logits (-8x, 8x): pixel > 127.5 is class 1) + its sidecar.

    ``size`` is the model input (H, W). Needs ``onnx``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..artifact import Artifact, Preprocess, TensorSpec

    path = Path(path)
    weight = np.array([[[[-8.0]]], [[[8.0]]]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"])], "threshold",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, *size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, *size])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    Artifact(path=path, model="threshold", classes=["background", "foreground"],
             preprocess=Preprocess(size=size, color="gray", mean=[0.5], std=[0.5]),
             inputs=[TensorSpec("input", [1, 1, *size])],
             outputs=[TensorSpec("logits", [1, 2, *size])]).save()
    return path


class FakeCamera:
    """A ``cv2.VideoCapture`` stand-in for reconnect tests. ``plan[k]`` is what the k-th open does: deliver that
    many numbered frames and then fail reads, or ``None`` to fail the open. Opens past the plan fail.
    Reset ``FakeCamera.opens = 0`` before each use.

    >>> source = VideoSource(0, live=True, capture_factory=lambda target, api: FakeCamera([3, None, 2]))
    """

    opens = 0

    def __init__(self, plan):
        FakeCamera.opens += 1
        self.remaining = plan[FakeCamera.opens - 1] if FakeCamera.opens <= len(plan) else None
        self.count = 0

    def isOpened(self):
        return self.remaining is not None

    def read(self):
        if not self.remaining:
            return False, None
        self.remaining -= 1
        self.count += 1
        return True, numbered_frame(self.count)

    def get(self, prop):
        return 0.0

    def set(self, prop, value):
        return True

    def release(self):
        pass
