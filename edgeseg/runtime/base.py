"""The Runner lifecycle shared by every backend (Polygraphy-style).

A runner is cheap to build and does nothing until activated; ``with runner:`` activates and
deactivates it. ``infer`` takes and returns ``dict[str, array]`` in the caller's array type
(NumPy in, NumPy out; CuPy in, CuPy out) and validates names, shapes and dtypes against the
artifact's ``inputs`` before the backend sees them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..artifact import Artifact, TensorSpec
from ..errors import ArtifactError, InputError


def default_input_spec(artifact: Artifact) -> TensorSpec:
    """The input an edgeseg model takes when the sidecar does not list one: ``(batch, C, height, width)``."""
    return TensorSpec("input", ["batch", artifact.preprocess.channels, "height", "width"], "float32")


def default_output_spec(artifact: Artifact) -> TensorSpec:
    """The output an edgeseg model gives when the sidecar does not list one: ``(batch, classes, height, width)``."""
    channels = artifact.model_kwargs.get("num_classes", artifact.num_classes)
    return TensorSpec("logits", ["batch", channels, "height", "width"], "float32")


def array_module(array: Any):
    """``numpy`` for NumPy arrays, ``cupy`` for CuPy arrays (without importing CuPy otherwise)."""
    if isinstance(array, np.ndarray):
        return np
    module = type(array).__module__.split(".")[0]
    if module == "cupy":
        import cupy

        return cupy
    raise InputError(f"input array: got {type(array).__name__}, expected a numpy.ndarray or cupy.ndarray")


class Runner:
    """Runs one model artifact. Subclasses implement ``_activate``, ``_deactivate`` and ``_infer``.

    Args:
        artifact: the model's :class:`~edgeseg.artifact.Artifact`; ``artifact.inputs`` (name, shape
            with string dims for dynamic axes, dtype) is what ``infer`` validates against.
        check_finite: reject inputs holding NaN or infinity (costs one pass over the input).

    Example::

        runner = create_runner("model.onnx")
        with runner:
            out = runner.infer({"input": np.zeros((1, 3, 256, 256), np.float32)})
        out["logits"].shape   # (1, num_classes, 256, 256)
    """

    backend = "base"

    def __init__(self, artifact: Artifact, check_finite: bool = True) -> None:
        self.artifact = artifact
        self.check_finite = check_finite
        self.is_active = False
        self.last_latency_s: float | None = None
        if not artifact.inputs:
            artifact.inputs = [default_input_spec(artifact)]
        if not artifact.outputs:
            artifact.outputs = [default_output_spec(artifact)]

    # --- names -----------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.artifact.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.artifact.outputs]

    @property
    def name(self) -> str:
        return f"{self.backend}:{self.artifact.path.name}"

    # --- lifecycle -------------------------------------------------------------------------------
    def activate(self) -> Runner:
        """Load the model (session, engine, module). Idempotent."""
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        """Release what ``activate`` loaded. Idempotent."""
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc_info) -> None:
        self.deactivate()

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"<{type(self).__name__} {self.artifact.path} ({state})>"

    # --- inference -------------------------------------------------------------------------------
    def infer(self, feed: Mapping[str, Any], *, check_finite: bool | None = None) -> dict[str, Any]:
        """Run the model on ``feed`` (input name -> array) and return output name -> array.

        Arrays come back in the type they went in (NumPy or CuPy). Raises :class:`InputError` naming
        the input and what was expected when a name, rank, fixed dim, dtype or value is wrong.
        An inactive runner is activated on first use (and stays active until ``deactivate``).
        ``check_finite`` overrides the runner's setting for this call (False: the caller vouches for the values).
        """
        self.validate(feed, check_finite=check_finite)
        if not self.is_active:
            self.activate()
        start = time.perf_counter()
        outputs = self._infer(dict(feed))
        self.last_latency_s = time.perf_counter() - start
        return outputs

    def warmup(self, n: int = 3) -> None:
        """Run ``n`` inferences on zeros of the declared shape (dynamic dims: preprocess size, batch 1)."""
        feed = {spec.name: np.zeros(self._example_shape(spec), dtype=spec.dtype) for spec in self.artifact.inputs}
        for _ in range(n):
            self.infer(feed)

    def validate(self, feed: Mapping[str, Any], *, check_finite: bool | None = None) -> None:
        """Check ``feed`` against ``artifact.inputs``; raise :class:`InputError` on the first problem."""
        if not isinstance(feed, Mapping):
            raise InputError(
                f"feed: got {type(feed).__name__}, expected a dict of input name -> array, "
                f"e.g. {{{self.input_names[0]!r}: array}}"
            )
        unknown = [name for name in feed if name not in self.input_names]
        if unknown:
            raise InputError(
                f"input name {unknown[0]!r}: the model has no such input; expected one of {self.input_names}"
            )
        for spec in self.artifact.inputs:
            if spec.name not in feed:
                raise InputError(f"input {spec.name!r}: missing from the feed (got names {list(feed)})")
            self._validate_array(spec, feed[spec.name], self.check_finite if check_finite is None else check_finite)

    def _validate_array(self, spec: TensorSpec, array: Any, check_finite: bool) -> None:
        xp = array_module(array)
        where = f"input {spec.name!r}"
        if array.ndim != len(spec.shape):
            raise InputError(
                f"{where}: got shape {tuple(array.shape)} (rank {array.ndim}), expected rank {len(spec.shape)} "
                f"{_shape_text(spec.shape)}"
            )
        for axis, (got, want) in enumerate(zip(array.shape, spec.shape)):
            if isinstance(want, int) and want > 0 and got != want:
                what = "channels" if axis == 1 and len(spec.shape) == 4 else f"dim {axis}"
                raise InputError(
                    f"{where}: got shape {tuple(array.shape)} with {got} {what}, expected {want} {what} "
                    f"{_shape_text(spec.shape)}"
                )
            if got == 0:
                raise InputError(f"{where}: got shape {tuple(array.shape)} with an empty dim {axis}, expected non-empty")
        if str(array.dtype) != spec.dtype:
            raise InputError(
                f"{where}: got dtype {array.dtype}, expected {spec.dtype} (convert with .astype(np.{spec.dtype}))"
            )
        if check_finite and array.dtype.kind == "f" and not bool(xp.isfinite(array).all()):
            bad = "NaN" if bool(xp.isnan(array).any()) else "infinite"
            raise InputError(f"{where}: holds {bad} values, expected finite numbers")

    def _example_shape(self, spec: TensorSpec) -> tuple[int, ...]:
        size = list(self.artifact.preprocess.size)
        shape = []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif axis == 0:
                shape.append(1)
            else:
                shape.append(size.pop(0) if axis >= len(spec.shape) - 2 and size else 1)
        return tuple(shape)

    # --- backend hooks ---------------------------------------------------------------------------
    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def _infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def _shape_text(shape: list) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def check_specs_match(artifact: Artifact, kind: str, declared: list[TensorSpec], actual: list[TensorSpec]) -> None:
    """Raise :class:`ArtifactError` when the sidecar's ``kind`` specs disagree with the model file's."""
    side = artifact.sidecar_path
    declared_names = [s.name for s in declared]
    actual_names = [s.name for s in actual]
    if declared_names != actual_names:
        raise ArtifactError(
            f"{side}: {kind} names {declared_names} do not match the model file {artifact.path.name} "
            f"({actual_names}); re-export the model or fix the sidecar"
        )
    for want, got in zip(declared, actual):
        if len(want.shape) != len(got.shape):
            raise ArtifactError(
                f"{side}: {kind} {want.name!r} has shape {want.shape} but the model file says {got.shape}"
            )
        for a, b in zip(want.shape, got.shape):
            if isinstance(a, int) and isinstance(b, int) and a > 0 and b > 0 and a != b:
                raise ArtifactError(
                    f"{side}: {kind} {want.name!r} has shape {want.shape} but the model file says {got.shape}"
                )
        if want.dtype != got.dtype:
            raise ArtifactError(
                f"{side}: {kind} {want.name!r} has dtype {want.dtype} but the model file says {got.dtype}"
            )
