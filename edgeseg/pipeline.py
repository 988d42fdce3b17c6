"""The Segmenter: frame -> preprocess -> runner -> postprocess (+ EMA smoothing, + dense CRF) -> Segmentation.

Instance models (sidecar ``extra.task == "instances"``: Mask R-CNN, FCIS, bottom-up) run through the same
stages and the same runner (any backend); their postprocess decodes the detections
(:class:`~edgeseg.instances.predict.InstanceDecoder`) and fills ``Segmentation.instances``.

>>> import cv2, edgeseg
>>> seg = edgeseg.Segmenter("edgeseg/assets/hc18_fastseg.onnx")          # doctest: +SKIP
>>> result = seg(cv2.imread("frame.png"))                                 # doctest: +SKIP
>>> result.labels.shape, result.probs.shape, result.timings               # doctest: +SKIP
((540, 800), (2, 540, 800), {'pre': ..., 'infer': ..., 'post': ..., 'crf': 0.0})
>>> cv2.imwrite("overlay.png", seg.overlay(frame, result))                # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import postprocess
from .after_engine import after_engine_step
from .artifact import Artifact
from .errors import ArtifactError, InputError, MissingDependencyError
from .preprocess import Preprocessor, Region, check_frame
from .runtime import Runner, create_runner

STAGES = ("pre", "infer", "post", "crf")


class NonFiniteOutputError(ArtifactError):
    """The model returned NaN or infinity: its weights or its sidecar's normalisation are broken."""


def check_output_finite(output: Any, artifact: Artifact, frame: int | None = None) -> None:
    """Raise :class:`NonFiniteOutputError` when ``output`` (NumPy or CuPy) holds NaN or infinity.

    Two reductions, no temporary array: ``min``/``max`` propagate NaN and are infinite if any value is.
    A NaN output would otherwise read as "all background" (a sigmoid of NaN is never above 0.5).
    """
    low, high = float(output.min()), float(output.max())
    if math.isfinite(low) and math.isfinite(high):
        return
    bad = "NaN" if math.isnan(low) or math.isnan(high) else "infinite"
    where = f" on frame {frame}" if frame is not None else ""
    raise NonFiniteOutputError(
        f"{artifact.path.name}: model output {artifact.outputs[0].name!r} holds {bad} values{where}, so its "
        "segmentation cannot be trusted (it would read as all background). The weights or the sidecar's "
        f"preprocess.mean/std ({artifact.sidecar_path.name}) are broken; re-export or retrain the model"
    )


class Segmentation:
    """One frame's result.

    Attributes:
        labels: (H, W) uint8 class index per pixel, at frame size (uint16 for models with more than 256
            classes).
        probs: (C, H, W) float32 class probabilities at frame size (a 1-channel sigmoid model gives
            C = 2: background, foreground).
        foreground: (H, W) float32 probability of "not background" (``1 - probs[0]``; ``probs[1]`` for a
            two-class model) at frame size.
        timings: seconds per stage, keys ``"pre"``, ``"infer"``, ``"post"``, ``"crf"`` (0 when off).
        instances: per-instance results for instance models, None for semantic models.

    A two-class model's result is kept at model resolution and each frame-size plane is built the first time
    it is read, by the cheapest route for what is read: ``foreground`` first resizes the probability in
    float32 (the selfie effects); ``labels`` first resizes a 16-bit fixed-point copy (probability steps of
    1/65534; overlays, contours, measurements) and a later ``foreground`` read converts that same plane, so
    ``labels == (foreground > 0.5)`` holds either way. The routes differ by at most one step (1.5e-5), so
    their labels can differ only where the probability is that close to 0.5; an exact 0.5 is background on both.
    ``probs`` stacks background and foreground. Whoever reads first pays for the upsampling, so for a two-class
    model without CRF ``timings["post"]`` covers the model-resolution work only. Construct with ``labels`` and
    ``probs``, or ``foreground`` alone (two-class).
    """

    def __init__(self, labels: np.ndarray | None = None, probs: np.ndarray | None = None,
                 timings: dict[str, float] | None = None, instances: Any = None,
                 foreground: np.ndarray | None = None) -> None:
        if probs is None and foreground is None:
            raise InputError("Segmentation: got neither probs nor foreground, expected at least one of them")
        if labels is None and foreground is None:
            raise InputError("Segmentation: got probs without labels, expected labels (or a two-class foreground)")
        self._labels = labels
        self._probs = probs
        self._foreground = foreground
        self._fixed: np.ndarray | None = None  # frame-size uint16 foreground, when labels were read first
        self._pending: tuple[np.ndarray, Region, tuple[int, int]] | None = None
        self._lock = threading.RLock()  # two threads reading different planes must build them from one route
        self.timings = {} if timings is None else timings
        self.instances = instances

    @classmethod
    def at_model_resolution(cls, foreground: np.ndarray, region: Region, frame_hw: tuple[int, int],
                            timings: dict[str, float] | None = None) -> Segmentation:
        """A two-class result from the (h, w) model-resolution foreground; frame-size planes come on first read."""
        result = cls(foreground=foreground, timings=timings)
        result._foreground, result._pending = None, (foreground, region, frame_hw)
        return result

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            with self._lock:
                if self._labels is None:
                    if self._foreground is None and self._pending is not None:
                        self._fixed = postprocess.fixed_point_foreground_to_frame_size(*self._pending)
                        self._pending = None
                        self._labels = postprocess.labels_from_fixed_point(self._fixed)
                    else:
                        self._labels = (self.foreground > 0.5).view(np.uint8)
        return self._labels

    @labels.setter
    def labels(self, value: np.ndarray) -> None:
        self._labels = value

    @property
    def probs(self) -> np.ndarray:
        if self._probs is None:
            with self._lock:
                if self._probs is None:
                    fg = self.foreground
                    probs = np.empty((2, *fg.shape), np.float32)
                    probs[1] = fg
                    np.subtract(1.0, fg, out=probs[0])
                    self._probs = probs
        return self._probs

    @probs.setter
    def probs(self, value: np.ndarray) -> None:
        if self._labels is None:  # labels keep describing the old probabilities, as for a plain attribute
            self._labels = self.labels
        self._probs, self._foreground, self._fixed, self._pending = value, None, None, None

    @property
    def foreground(self) -> np.ndarray:
        if self._foreground is None:
            with self._lock:
                if self._foreground is None:
                    self._foreground = self._build_foreground()
                    self._fixed = self._pending = None  # both frame-size planes exist or can come from this one
        return self._foreground

    def _build_foreground(self) -> np.ndarray:
        if self._fixed is not None:
            return postprocess.foreground_from_fixed_point(self._fixed)
        if self._pending is not None:
            return postprocess.foreground_to_frame_size(*self._pending)
        probs = self._probs
        return probs[1] if probs.shape[0] == 2 else np.subtract(1.0, probs[0], dtype=np.float32)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    @property
    def total_s(self) -> float:
        return float(sum(self.timings.values()))

    def __repr__(self) -> str:
        planes = (self._foreground, self._fixed, self._labels, None if self._probs is None else self._probs[0])
        shape = self._pending[2] if self._pending is not None else next(p for p in planes if p is not None).shape
        return f"Segmentation({shape[0]}x{shape[1]}, timings={self.timings})"


@dataclass
class FrameInFlight:
    """A frame between the Segmenter's stages: the frame, the model input, where the frame sits in it
    (letterbox), the model output once inferred (an instance model's: every output by name), and the stage
    timings so far."""

    frame: np.ndarray
    blob: np.ndarray
    region: Region
    timings: dict[str, float]
    output: np.ndarray | dict[str, np.ndarray] | None = None


class Segmenter:
    """Segment BGR uint8 frames with any model artifact.

    Args:
        model: a model path (``.onnx``, ``.safetensors``, ``.engine``, sidecar next to it), an
            :class:`~edgeseg.artifact.Artifact` or a ready :class:`~edgeseg.runtime.Runner`.
        backend: runner backend for a path/artifact (``"auto"``, ``"onnxruntime"``, ``"torch"``, ...).
        crf: ``None``/``False`` (off), ``True`` (default parameters) or a dict of parameters for
            ``edgeseg.ops.dense_crf(probs, frame, **params)``, run in the ``"crf"`` stage.
        smooth: ``None`` or ``a`` in [0, 1): exponential moving average of probabilities across calls,
            ``p = a * p_previous + (1 - a) * p_frame`` (``reset()`` clears it; a size change resets it).
        threads: CPU threads for the backend (ONNX Runtime intra-op / torch).
        check_output: check the model output for NaN/infinity every Nth frame (1: every frame, the default,
            about 35 us at 2x256x256; 0: never) and raise :class:`NonFiniteOutputError` instead of returning a
            meaningless all-background result (semantic models).
        score_threshold: instance models only: detections scoring below it are dropped (default 0.5).
        **runner_options: passed to :func:`~edgeseg.runtime.create_runner`.

    An instance model (sidecar ``extra.task == "instances"``) runs through the same runner and stages; its
    results carry ``instances`` (:class:`~edgeseg.instances.Instances`), ``overlay`` draws each instance in
    its own colour, it takes neither ``crf`` nor ``smooth``, and ``threads`` defaults to 1.
    :class:`~edgeseg.instances.segmenter.InstanceSegmenter` is this class for instance models.

    Example::

        seg = Segmenter("edgeseg/assets/hc18_fastseg.onnx", smooth=0.5)
        result = seg(frame)                   # frame: (H, W, 3) BGR uint8 or (H, W) gray
        result.labels                         # (H, W) uint8
        result.probs                          # (C, H, W) float32
        view = seg.overlay(frame, result)     # (H, W, 3) BGR uint8
    """

    def __init__(self, model: str | Path | Artifact | Runner, backend: str = "auto", crf: Any = None,
                 smooth: float | None = None, threads: int | None = None, check_output: int = 1,
                 score_threshold: float | None = None, **runner_options: Any) -> None:
        if isinstance(check_output, bool) or not isinstance(check_output, int) or check_output < 0:
            raise InputError(f"check_output: got {check_output!r}, expected an int >= 0 (check every Nth frame, "
                             "0 = never)")
        self.check_output = check_output
        self._frames_out = 0  # frames postprocessed, for check_output
        if smooth is not None and not (isinstance(smooth, (int, float)) and 0.0 <= smooth < 1.0):
            raise InputError(f"smooth: got {smooth!r}, expected None or a number in [0, 1)")
        if crf not in (None, False, True) and not isinstance(crf, dict):
            raise InputError(f"crf: got {crf!r}, expected None, True or a dict of dense_crf parameters")
        if isinstance(model, Runner):
            self.runner = model
            instances = self._is_instance_model(model.artifact)
        else:
            artifact = model if isinstance(model, Artifact) else Artifact.load(model)
            instances = self._is_instance_model(artifact)
            if instances:
                threads = 1 if threads is None else threads
                if artifact.format == "safetensors" or not artifact.outputs:  # name what the eval forward returns
                    from .instances.predict import instance_output_specs

                    artifact = replace(artifact, outputs=instance_output_specs(artifact))
            if threads is not None:
                runner_options["threads"] = threads
            self.runner = create_runner(artifact, backend=backend, **runner_options)
        self.artifact: Artifact = self.runner.artifact
        spec = self.artifact.inputs[0]
        self.input_name = spec.name
        self.output_name = self.artifact.outputs[0].name
        _check_input_size(self.artifact)
        self.instance_decoder = None
        if instances:
            self.instance_decoder = self._instance_decoder(crf, smooth, score_threshold, threads)
        elif score_threshold is not None:
            raise InputError(f"score_threshold: got {score_threshold!r}, but {self.artifact.path.name} is a semantic "
                             "model (its sidecar's extra.task is not 'instances'); drop score_threshold")
        self.preprocessor = None if instances else Preprocessor(self.artifact.preprocess, dtype=spec.dtype)
        # the stage a decomposed export leaves after the engine (the CRF of deeplabv3_crf), run in infer()
        self._after_engine = None if instances else after_engine_step(self.artifact)
        self.smooth = smooth
        self.crf_params = None if crf in (None, False) else ({} if crf is True else dict(crf))
        self._dense_crf = _load_dense_crf() if self.crf_params is not None else None
        self._ema: np.ndarray | None = None
        self._ema_frame_hw: tuple[int, int] | None = None
        self.runner.activate()

    def _is_instance_model(self, artifact: Artifact) -> bool:
        """Whether to decode instances: the sidecar says so (``extra.task``)."""
        return artifact.extra.get("task") == "instances"

    def _instance_decoder(self, crf: Any, smooth: float | None, score_threshold: float | None, threads: int | None):
        from .instances.predict import InstanceDecoder

        name = self.artifact.path.name
        for option, value in (("crf", crf), ("smooth", smooth)):
            if value not in (None, False):
                raise InputError(f"{option}: got {value!r}, but {name} is an instance model, which has no "
                                 f"{'dense-CRF' if option == 'crf' else 'smoothing'} stage; drop {option}")
        return InstanceDecoder(self.artifact, 0.5 if score_threshold is None else score_threshold, threads)

    # --- public ----------------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.artifact.classes)

    @property
    def colors(self) -> list[tuple[int, int, int]]:
        return list(self.artifact.colors)

    def __call__(self, frame: np.ndarray) -> Segmentation:
        """Segment one frame: (H, W, 3) BGR uint8 or (H, W) gray -> :class:`Segmentation` at (H, W)."""
        return self.postprocess(self.infer(self.preprocess(frame)))

    # The three stages, for pipelines that run them in different threads (edgeseg.stream does): preprocess
    # is stateless (any thread), infer uses the runner (one thread), postprocess carries the smoothing
    # state (one thread, frames in order).
    def preprocess(self, frame: np.ndarray) -> FrameInFlight:
        """Validate and convert a frame into the model input (raises InputError naming the problem)."""
        t0 = time.perf_counter()
        if self.instance_decoder is not None:  # as in training: stretched to the model size
            frame = check_frame(frame)
            blob, region = self.instance_decoder.blob(frame), Region(0, 0, *self.artifact.preprocess.size)
        else:
            blob, region = self.preprocessor(frame)
            frame = check_frame(frame)
        return FrameInFlight(frame, blob, region, {"pre": time.perf_counter() - t0})

    def infer(self, item: FrameInFlight) -> FrameInFlight:
        """Run the model on a preprocessed frame (fills ``item.output``)."""
        t0 = time.perf_counter()
        # (pixel / 255 - mean) / std is always finite with the sidecar's validated bounds (std >= 1e-6,
        # |mean| <= 1e3): no NaN scan of the blob; the output is checked in postprocess (check_output)
        outputs = self.runner.infer({self.input_name: item.blob}, check_finite=False)
        item.output = outputs if self.instance_decoder is not None else outputs[self.output_name]
        if self._after_engine is not None:  # finish the model the graph stopped short of (--route decomposed)
            item.output = self._after_engine(item.output, item.blob)
        item.timings["infer"] = time.perf_counter() - t0
        return item

    def postprocess(self, item: FrameInFlight) -> Segmentation:
        """Model output -> :class:`Segmentation` at frame size (smoothing and CRF included)."""
        t0 = time.perf_counter()
        output, region, frame_hw = item.output, item.region, item.frame.shape[:2]
        if self.instance_decoder is not None:
            labels, probs, instances = self.instance_decoder.decode(output, frame_hw)
            timings = {"pre": item.timings["pre"], "infer": item.timings["infer"],
                       "post": time.perf_counter() - t0, "crf": 0.0}
            return Segmentation(labels=labels, probs=probs, timings=timings, instances=instances)
        index, self._frames_out = self._frames_out, self._frames_out + 1
        if self.check_output and index % self.check_output == 0:
            check_output_finite(output, self.artifact, index)
        binary = postprocess.is_binary(output[0])
        if binary:  # one plane at model resolution; frame-size planes are built when read (Segmentation)
            fg = self._smoothed(postprocess.foreground(output[0], self.artifact.output_kind), frame_hw)
            if self._dense_crf is not None:  # the CRF refines frame-size probabilities of every class
                probs = Segmentation(foreground=postprocess.foreground_to_frame_size(fg, region, frame_hw)).probs
        else:
            probs = self._smoothed(postprocess.probabilities(output[0], self.artifact.output_kind), frame_hw)
            probs = postprocess.to_frame_size(probs, region, frame_hw)
            labels = postprocess.argmax_labels(probs)
        t1 = time.perf_counter()
        timings = {"pre": item.timings["pre"], "infer": item.timings["infer"], "post": t1 - t0, "crf": 0.0}
        if self._dense_crf is not None:
            probs, labels = self._refine(probs, item.frame)
            timings["crf"] = time.perf_counter() - t1
        elif binary:
            return Segmentation.at_model_resolution(fg, region, frame_hw, timings)
        return Segmentation(labels=labels, probs=probs, timings=timings)

    def overlay(self, frame: np.ndarray, result: Segmentation, alpha: float = 0.5) -> np.ndarray:
        """Frame with class colours blended in (``alpha`` = colour weight) -> (H, W, 3) BGR uint8; for an
        instance model each instance in its own colour, its box and "class score" drawn."""
        if self.instance_decoder is not None:
            from .instances.predict import draw_instances

            return draw_instances(check_frame(frame), result.instances, self.classes, alpha)
        return postprocess.overlay(check_frame(frame), result.labels, self.colors, alpha)

    def reset(self) -> None:
        """Forget the smoothing history (call between unrelated videos)."""
        self._ema = None

    def close(self) -> None:
        self.runner.deactivate()
        if self.instance_decoder is not None:
            self.instance_decoder.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- stages ----------------------------------------------------------------------------------
    def _smoothed(self, probs: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """EMA at model resolution: cheap, and equal to smoothing at frame size since resizing is linear."""
        if not self.smooth:
            return probs
        if self._ema is None or self._ema.shape != probs.shape or self._ema_frame_hw != frame_hw:
            self._ema, self._ema_frame_hw = probs.copy(), frame_hw
        else:
            self._ema *= self.smooth
            self._ema += (1.0 - self.smooth) * probs
        return self._ema.copy()

    def _refine(self, probs: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # A gray frame goes in as (H, W): the CRF's bilateral kernel then uses one intensity feature
        # (a 3-D lattice) instead of three equal colour channels.
        refined = self._dense_crf(probs, frame, **self.crf_params)
        if isinstance(refined, tuple):  # (probs, labels)
            refined = refined[0]
        refined = np.asarray(refined)
        if refined.ndim == 2:  # labels only
            return probs, refined.astype(postprocess.label_dtype(probs.shape[0]), copy=False)
        refined = refined.astype(np.float32, copy=False)
        return refined, postprocess.argmax_labels(refined)


def _check_input_size(artifact: Artifact) -> None:
    """A model with a fixed input size must be fed exactly that size by ``preprocess.size``."""
    spec = artifact.inputs[0]
    fixed = tuple(spec.shape[-2:])
    if len(spec.shape) == 4 and all(isinstance(d, int) and d > 0 for d in fixed) and fixed != tuple(
            artifact.preprocess.size):
        raise ArtifactError(
            f"{artifact.sidecar_path}: preprocess.size is {list(artifact.preprocess.size)} but input {spec.name!r} "
            f"is fixed at {list(fixed)} (height, width); set preprocess.size to {list(fixed)} or re-export"
        )


def _load_dense_crf():
    try:
        module = importlib.import_module("edgeseg.ops.crf")
    except ModuleNotFoundError as exc:
        if exc.name != "edgeseg.ops.crf":
            raise
        raise MissingDependencyError(
            "crf: edgeseg.ops.dense_crf is not available in this edgeseg build; construct Segmenter with crf=None"
        ) from exc
    return module.dense_crf
