"""Serve a model on a local NVIDIA Triton Inference Server (PyTriton), bound to 127.0.0.1 by default.

Clients then run the model remotely through the Triton backend, over HTTP or gRPC:
  edgeseg run --model hc18_fastseg.onnx --backend triton --url 127.0.0.1:8000 --source cine.dcm --sink null
  create_runner("hc18_fastseg.onnx", backend="triton", url="grpc://127.0.0.1:8001")

The server is the `tritonserver` that the nvidia-pytriton wheel bundles. It needs numpy<2 and a
Python 3.11 whose stdlib matches the wheel's embedded libpython (Debian's /usr/bin/python3.11), so it
lives in its own venv made once with `scripts/setup_triton.sh` (default .venv-triton/ in the checkout;
or point $EDGESEG_TRITON_PYTHON at its python). This command re-executes itself there.

Examples:
  edgeseg serve edgeseg/assets/hc18_fastseg.onnx
  edgeseg serve model.onnx --http-port 9000 --grpc-port 9001 --metrics-port 9002 --no-dynamic-batching
  edgeseg serve model.onnx --instances 2 --threads 1 --max-batch-size 16 --max-queue-delay-us 500
  edgeseg serve model.onnx --segmenter          # + model_segment: frames in, labels out (thin clients)
  edgeseg serve model.onnx --host 0.0.0.0      # reachable from other machines: only on a trusted network

Stop with Ctrl-C (or SIGTERM). For a TensorRT engine or a production Triton, write a model repository
instead (`edgeseg triton-repo MODEL REPO/`) and point `tritonserver --model-repository REPO/` at it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..triton.serve_options import (  # noqa: F401 - options_from_args, server_argv: also importable from here
    TRITON_PYTHON_ENV,
    add_arguments,
    options_from_args,
    server_argv,
    triton_python,
)

HELP = "serve a model on a local Triton Inference Server (PyTriton) for remote clients"


def run(args) -> int:
    from .._deps import available
    from ..errors import MissingDependencyError

    if available("pytriton.triton"):
        from ..triton.server import serve

        return serve(args.model, options_from_args(args))
    python = triton_python()
    if python is None:
        raise MissingDependencyError(
            "PyTriton (nvidia-pytriton) does not import in this Python and no Triton venv was found "
            f"(looked for ${TRITON_PYTHON_ENV} and .venv-triton/). Create it once with: bash scripts/setup_triton.sh")
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    sys.stdout.flush()
    os.execve(str(python), [str(python), "-m", "edgeseg.triton.server", *server_argv(args)], env)
    return 0  # not reached
