"""ONNX Runtime backend: CPU by default; CUDA and TensorRT execution providers when present and asked for."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._deps import require
from ..artifact import Artifact, TensorSpec, class_count_problems
from ..errors import ArtifactError, InputError
from .base import Runner, array_module, check_specs_match

GRAPH_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                      "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
_PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                     "tensorrt": "TensorrtExecutionProvider"}


class OnnxRuntimeRunner(Runner):
    """Runs an ``.onnx`` artifact with ONNX Runtime.

    Args:
        artifact: the Artifact (or path of the ``.onnx`` with its sidecar next to it).
        providers: ``None``/``"cpu"`` for CPU; ``"auto"`` for TensorRT > CUDA > CPU as installed;
            or a list of provider names / aliases (``"cuda"``, ``"tensorrt"``) tried in order.
        threads: intra-op thread count (``None``: ONNX Runtime's default, one per core).
        inter_op_threads: inter-op thread count (used by the parallel execution mode).
        graph_optimization: ``"all"`` (default), ``"extended"``, ``"basic"`` or ``"disable"``.

    The sidecar's inputs/outputs are checked against the graph on activate; a mismatch raises
    :class:`ArtifactError`. CuPy inputs are copied to the host and results copied back (same array
    type out as in).

    Example::

        with OnnxRuntimeRunner("model.onnx", threads=2) as runner:
            runner.warmup(3)
            out = runner.infer({"input": x})      # x: (1, C, H, W) float32 -> out["logits"]: (1, K, H, W)
            print(runner.last_latency_s)
    """

    backend = "onnxruntime"

    def __init__(self, artifact: Artifact | str, providers: Any = None, threads: int | None = None,
                 inter_op_threads: int | None = None, graph_optimization: str = "all",
                 check_finite: bool = True) -> None:
        if not isinstance(artifact, Artifact):
            artifact = Artifact.load(artifact)
        if graph_optimization not in GRAPH_OPTIMIZATION:
            raise InputError(
                f"graph_optimization: got {graph_optimization!r}, expected one of {sorted(GRAPH_OPTIMIZATION)}"
            )
        for field, value in (("threads", threads), ("inter_op_threads", inter_op_threads)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InputError(f"{field}: got {value!r}, expected a non-negative int (0 = ONNX Runtime default)")
        self.providers = providers
        self.threads = threads
        self.inter_op_threads = inter_op_threads
        self.graph_optimization = graph_optimization
        self.session = None
        super().__init__(artifact, check_finite=check_finite)

    # --- lifecycle -------------------------------------------------------------------------------
    def _activate(self) -> None:
        ort = require("onnxruntime", "the onnxruntime backend")
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[self.graph_optimization])
        if self.threads:
            options.intra_op_num_threads = self.threads
        if self.inter_op_threads:
            options.inter_op_num_threads = self.inter_op_threads
        options.log_severity_level = 3
        providers = resolve_providers(ort, self.providers)
        path = self.artifact.path
        register_edgeseg_ops(options, path)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            raise ArtifactError(
                f"{path}: ONNX Runtime cannot load this model ({type(exc).__name__}: {_first_line(exc)}). "
                "The file may be truncated or corrupted, or use an op this ONNX Runtime lacks; re-export it "
                "with `edgeseg export`"
            ) from exc
        self._check_sidecar()

    def _deactivate(self) -> None:
        self.session = None

    def _check_sidecar(self) -> None:
        graph_inputs = [TensorSpec.from_ort(i) for i in self.session.get_inputs()]
        graph_outputs = [TensorSpec.from_ort(o) for o in self.session.get_outputs()]
        check_specs_match(self.artifact, "inputs", self.artifact.inputs, graph_inputs)
        declared = self.artifact.outputs
        unknown = [s.name for s in declared if s.name not in {o.name for o in graph_outputs}]
        if unknown:
            raise ArtifactError(
                f"{self.artifact.sidecar_path}: outputs {unknown} are not outputs of {self.artifact.path.name} "
                f"(it has {[o.name for o in graph_outputs]}); re-export the model or fix the sidecar"
            )
        first = next(o for o in graph_outputs if o.name == declared[0].name)
        if self.artifact.extra.get("task") != "instances" and len(first.shape) == 4:
            where = f"{self.artifact.path.name} output {first.name!r}"
            problems = class_count_problems(first.shape[1], self.artifact.num_classes, where)
            if problems:
                raise ArtifactError(f"{self.artifact.sidecar_path}: {problems[0]}; fix the sidecar's classes")

    @property
    def active_providers(self) -> list[str]:
        """Execution providers the session actually uses (after activate)."""
        return self.session.get_providers() if self.session is not None else []

    # --- inference -------------------------------------------------------------------------------
    def _infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        xp = array_module(next(iter(feed.values())))
        host_feed = feed if xp is np else {name: xp.asnumpy(a) for name, a in feed.items()}
        results = self.session.run(self.output_names, host_feed)
        if xp is not np:
            results = [xp.asarray(r) for r in results]
        return dict(zip(self.output_names, results))


def resolve_providers(ort, providers: Any) -> list[str]:
    """Turn ``None`` / ``"cpu"`` / ``"auto"`` / a list of names or aliases into available ORT providers."""
    installed = ort.get_available_providers()
    if providers is None or providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers == "auto":
        wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        return [p for p in wanted if p in installed]
    if isinstance(providers, str):
        providers = [providers]
    resolved = [_PROVIDER_ALIASES.get(p, p) if isinstance(p, str) else p for p in providers]
    names = [p if isinstance(p, str) else p[0] for p in resolved]
    missing = [n for n in names if n not in installed]
    if missing:
        raise InputError(
            f"providers: {missing} are not available in this onnxruntime (installed: {installed}); "
            "install onnxruntime-gpu for CUDA/TensorRT or ask for 'cpu'"
        )
    if "CPUExecutionProvider" not in names:
        resolved.append("CPUExecutionProvider")
    return resolved


def register_edgeseg_ops(options, path) -> bool:
    """Register edgeseg's ONNX Runtime custom-op library (``edgeseg:DenseCRF``) on ``options`` when the model
    at ``path`` imports the ``edgeseg`` domain; the library is compiled with g++ on first use. Returns whether
    it was registered."""
    from edgeseg.plugins import ort_dense_crf
    from edgeseg.plugins.common.build import KernelBuildError

    try:
        needed = ort_dense_crf.DOMAIN in ort_dense_crf.opset_domains(path)
    except (OSError, ValueError):
        return False  # unreadable or not ONNX: ONNX Runtime's own load error says so
    if not needed:
        return False
    try:
        library = ort_dense_crf.library_path()
    except KernelBuildError as exc:
        raise ArtifactError(
            f"{path}: the graph uses edgeseg's custom ops (edgeseg:DenseCRF), whose ONNX Runtime library could not "
            f"be built ({_first_line(exc)}); install g++, or re-export with `edgeseg export --route decomposed` "
            "(the CRF then runs after the graph)"
        ) from exc
    options.register_custom_ops_library(str(library))
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
