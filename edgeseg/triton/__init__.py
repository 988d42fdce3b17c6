"""Serve edgeseg models on NVIDIA Triton Inference Server.

- :func:`~edgeseg.triton.repository.write_repository`: a Triton model repository (``config.pbtxt`` for
  ``onnxruntime_onnx`` / ``tensorrt_plan``, versioned folders, the sidecar beside the model).
- :mod:`edgeseg.triton.server`: ``edgeseg serve`` — a real local Triton (PyTriton) serving an ONNX artifact;
  its options and the Triton venv's python: :mod:`edgeseg.triton.serve_options`.
- :class:`~edgeseg.runtime.triton_runner.TritonRunner`: the Runner contract against a server
  (``create_runner(path, backend="triton", url="127.0.0.1:8000")``).

Importing this package registers the ``"triton"`` runtime backend (nothing heavy is imported).
"""

from __future__ import annotations

from ..runtime import register_backend


def register() -> None:
    """Register runtime backend ``"triton"`` (idempotent). Chosen only when asked for or when no local backend runs."""
    register_backend("triton", "edgeseg.runtime.triton_runner:triton_factory", formats=["onnx", "engine"],
                     priority=-100, requires=["tritonclient"])


register()
