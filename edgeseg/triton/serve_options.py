"""The options of ``edgeseg serve``, shared by the CLI command and the server process it re-executes
(``python -m edgeseg.triton.server``), and where the Triton venv's python is.

The CLI (:mod:`edgeseg.commands.serve`) imports these; the library never imports the CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TRITON_PYTHON_ENV = "EDGESEG_TRITON_PYTHON"


@dataclass
class ServeOptions:
    """What ``edgeseg serve`` configures. Ports must be free; ``host`` is the bind address."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    name: str | None = None
    max_batch_size: int = 8
    dynamic_batching: bool = True
    max_queue_delay_us: int = 100
    instances: int = 1
    threads: int | None = None
    log_verbose: int = 0
    segmenter: bool = False


def add_arguments(parser) -> None:
    """``edgeseg serve``'s options; their defaults are :class:`ServeOptions`'s."""
    d = ServeOptions()
    parser.add_argument("model", help="an .onnx model with its .json sidecar")
    parser.add_argument("--host", default=d.host, help=f"bind address (default {d.host}, loopback only)")
    parser.add_argument("--http-port", type=int, default=d.http_port, help=f"HTTP port (default {d.http_port})")
    parser.add_argument("--grpc-port", type=int, default=d.grpc_port, help=f"gRPC port (default {d.grpc_port})")
    parser.add_argument("--metrics-port", type=int, default=d.metrics_port,
                        help=f"Prometheus metrics port (default {d.metrics_port})")
    parser.add_argument("--name", default=d.name, help="model name on the server (default: the file's stem)")
    parser.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                        help=f"largest dynamic batch (default {d.max_batch_size})")
    parser.add_argument("--no-dynamic-batching", action="store_true",
                        help="run every request on its own (no server-side batching)")
    parser.add_argument("--max-queue-delay-us", type=int, default=d.max_queue_delay_us,
                        help=f"how long the batcher waits to fill a batch, microseconds (default {d.max_queue_delay_us})")
    parser.add_argument("--instances", type=int, default=d.instances,
                        help=f"model instances, ONNX Runtime sessions (default {d.instances})")
    parser.add_argument("--threads", type=int, default=d.threads, help="ONNX Runtime intra-op threads per instance")
    parser.add_argument("--log-verbose", type=int, default=d.log_verbose,
                        help=f"tritonserver verbose log level (default {d.log_verbose}: off)")
    parser.add_argument("--segmenter", action="store_true",
                        help="also serve NAME_segment: BGR frame in, labels/probs out (whole Segmenter on the server)")


def options_from_args(args):
    return ServeOptions(host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                        metrics_port=args.metrics_port, name=args.name, max_batch_size=args.max_batch_size,
                        dynamic_batching=not args.no_dynamic_batching, max_queue_delay_us=args.max_queue_delay_us,
                        instances=args.instances, threads=args.threads, log_verbose=args.log_verbose,
                        segmenter=args.segmenter)


def server_argv(args) -> list[str]:
    """The options of ``args`` as command-line words for ``python -m edgeseg.triton.server``."""
    argv = [str(Path(args.model).resolve()), "--host", args.host, "--http-port", str(args.http_port),
            "--grpc-port", str(args.grpc_port), "--metrics-port", str(args.metrics_port),
            "--max-batch-size", str(args.max_batch_size), "--max-queue-delay-us", str(args.max_queue_delay_us),
            "--instances", str(args.instances), "--log-verbose", str(args.log_verbose)]
    if args.name:
        argv += ["--name", args.name]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if args.no_dynamic_batching:
        argv.append("--no-dynamic-batching")
    if args.segmenter:
        argv.append("--segmenter")
    return argv


def triton_python() -> Path | None:
    """The Triton venv's python: ``$EDGESEG_TRITON_PYTHON``, else ``.venv-triton/`` in the checkout."""
    env = os.environ.get(TRITON_PYTHON_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / ".venv-triton" / "bin" / "python")
    return next((p for p in candidates if p.exists()), None)
