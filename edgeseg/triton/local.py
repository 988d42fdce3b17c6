"""Start and stop ``edgeseg serve`` as a child process on free loopback ports (tests, benchmarks, notebooks).

>>> from edgeseg.triton.local import LocalServer
>>> with LocalServer("edgeseg/assets/hc18_fastseg.onnx") as server:          # doctest: +SKIP
...     runner = create_runner("edgeseg/assets/hc18_fastseg.onnx", backend="triton", url=server.grpc_url)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import EdgesegError, MissingDependencyError

READY = "edgeseg serve: ready"  # the line server.py prints once Triton serves the model
STOPPED = "edgeseg serve: stopped"
ROOT = Path(__file__).resolve().parents[2]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that were free on ``host`` a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalServer:
    """``python -m edgeseg.triton.server MODEL`` in the Triton venv, on 127.0.0.1, with bounded waits.

    Args:
        model: the ``.onnx`` artifact to serve.
        *extra: more ``edgeseg serve`` options (``"--no-dynamic-batching"``, ``"--threads", "2"``).
        log: file that receives the server's output (default: a temporary file).
        start_timeout_s / stop_timeout_s: how long ``start()`` / ``stop()`` may wait.

    ``start()`` keeps the same ports across restarts, so clients can reconnect to a restarted server.
    """

    def __init__(self, model: str | Path, *extra: str, log: str | Path | None = None,
                 start_timeout_s: float = 120.0, stop_timeout_s: float = 30.0) -> None:
        from .serve_options import TRITON_PYTHON_ENV, triton_python

        self.python = triton_python()
        if self.python is None:
            raise MissingDependencyError(f"no Triton venv (.venv-triton/ or ${TRITON_PYTHON_ENV}); "
                                         "create it with: bash scripts/setup_triton.sh")
        self.model = Path(model).resolve()
        self.extra = list(extra)
        self.log = Path(log) if log else Path(tempfile.mkstemp(prefix="edgeseg-triton-", suffix=".log")[1])
        self.start_timeout_s, self.stop_timeout_s = start_timeout_s, stop_timeout_s
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def start(self) -> LocalServer:
        """Launch the server and return once it prints its ready line; raise with the log tail otherwise."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        cmd = [str(self.python), "-m", "edgeseg.triton.server", str(self.model), "--host", "127.0.0.1",
               "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
               "--metrics-port", str(self.metrics_port), *self.extra]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if READY in self._log_since(offset):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.25)
        code = self.proc.poll()
        self.stop()
        why = (f"exited with code {code} before it was ready" if code is not None
               else f"did not become ready within {self.start_timeout_s:.0f} s")
        raise EdgesegError(f"the Triton server {why} (log {self.log}):\n{self._log_since(offset)[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout_s``, then kill. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> LocalServer:  # noqa: PYI034 - start() returns self
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _log_since(self, offset: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
