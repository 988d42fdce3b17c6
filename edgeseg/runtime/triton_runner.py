"""Triton backend: the Runner contract over ``tritonclient`` (HTTP or gRPC) against a remote or local server.

The model runs on the server; the client keeps only the sidecar (to validate inputs and to know the
preprocessing). Each thread gets its own client connection (tritonclient's HTTP client is not shared
across threads), and a request that cannot reach the server is retried with exponential backoff after
reconnecting; when all attempts fail :class:`TritonUnavailableError` says where and what to do, and the
next ``infer`` tries again, so a restarted server is picked up without rebuilding the runner.

>>> from edgeseg.runtime import create_runner
>>> runner = create_runner("model.onnx", backend="triton", url="grpc://10.0.0.5:8001")   # doctest: +SKIP
>>> with runner:                                                                          # doctest: +SKIP
...     out = runner.infer({"input": x})          # x: (1, 1, 256, 256) float32 -> out["logits"]: (1, 2, 256, 256)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..artifact import Artifact
from ..errors import ArtifactError, EdgesegError, InputError
from .base import Runner, array_module

URL_ENV = "EDGESEG_TRITON_URL"
log = logging.getLogger(__name__)
_TRITON_DTYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
                  "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "uint16": "UINT16", "bool": "BOOL"}
_UNAVAILABLE_HINTS = ("unavailable", "connection refused", "connect", "failed to establish", "broken pipe",
                      "reset by peer", "timed out", "timeout", "eof", "socket closed", "deadline")


class TritonUnavailableError(EdgesegError, ConnectionError):
    """The Triton server could not be reached (after retries) or does not serve the model (not ready)."""


class TritonRunner(Runner):
    """Runs an artifact that a Triton Inference Server serves (``edgeseg serve`` or any Triton).

    Args:
        artifact: the local sidecar of the served model (``model.onnx`` + ``model.onnx.json``; the model
            file itself is not read), or a repository's ``REPO/<name>/1/model.onnx``.
        url: ``host:port`` / ``http://host:port`` (HTTP) or ``grpc://host:port`` (gRPC); default
            ``$EDGESEG_TRITON_URL``.
        model_name: name on the server (default: the repository folder name, else the file's stem).
        model_version: ``""`` for the server's latest.
        timeout_s: connection and request timeout per attempt.
        retries: reconnect-and-retry attempts after an unreachable server, waiting ``backoff_s * 2**k``
            (at most ``max_backoff_s``) before attempt ``k``.
        threads: accepted for interface parity with local backends and ignored (the server decides).

    Example::

        with TritonRunner("hc18_fastseg.onnx", url="127.0.0.1:8000") as runner:
            logits = runner.infer({"input": x})["logits"]     # x: (N, 1, H, W) float32 -> (N, 2, H, W)
    """

    backend = "triton"

    def __init__(self, artifact: Artifact | str | Path, url: str | None = None, model_name: str | None = None,
                 model_version: str = "", timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2,
                 max_backoff_s: float = 2.0, threads: int | None = None, check_finite: bool = True) -> None:
        if not isinstance(artifact, Artifact):
            artifact = Artifact.load(artifact)
        url = url or os.environ.get(URL_ENV)
        if not url:
            raise InputError(f"url: got None, expected the Triton server address, e.g. url='127.0.0.1:8000' or "
                             f"'grpc://127.0.0.1:8001' (or set ${URL_ENV}); start a local one with `edgeseg serve MODEL`")
        self.protocol, self.url = parse_url(url)
        for field, value in (("timeout_s", timeout_s), ("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s)):
            if not isinstance(value, (int, float)) or value < 0 or (field == "timeout_s" and value == 0):
                raise InputError(f"{field}: got {value!r}, expected a positive number of seconds")
        if not isinstance(retries, int) or retries < 0:
            raise InputError(f"retries: got {retries!r}, expected an int >= 0")
        self.model_name = model_name or served_name(artifact)
        self.model_version = str(model_version)
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.reconnects = 0
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        super().__init__(artifact, check_finite=check_finite)

    @property
    def address(self) -> str:
        return f"{self.protocol}://{self.url}"

    # --- lifecycle -------------------------------------------------------------------------------
    def _activate(self) -> None:
        self._module()  # a missing tritonclient fails here, with the extra to install
        self._call(self._check_model)

    def _deactivate(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            _close(client)
        self._local = threading.local()

    def _check_model(self, client) -> None:
        if not client.is_server_live():
            raise TritonUnavailableError(f"Triton server at {self.address} answers but is not live")
        if not client.is_model_ready(self.model_name, self.model_version):
            try:
                names = sorted(m["name"] if isinstance(m, dict) else m.name for m in _index(client))
            except Exception:  # noqa: BLE001 - the index is only a hint in the message
                names = []
            raise TritonUnavailableError(
                f"model {self.model_name!r} is not ready on the Triton server at {self.address} "
                f"(server models: {names or 'unknown'}); pass model_name=... or wait for it to load")
        self._check_metadata(_metadata(client, self.model_name, self.model_version))

    def _check_metadata(self, meta: dict) -> None:
        served = {t["name"]: t for t in meta.get("inputs", [])}
        for spec in self.artifact.inputs:
            if spec.name not in served:
                raise ArtifactError(f"{self.artifact.sidecar_path}: input {spec.name!r} is not an input of "
                                    f"{self.model_name!r} on {self.address} (it has {sorted(served)})")
            want, got = _TRITON_DTYPES.get(spec.dtype), served[spec.name]["datatype"]
            if want != got:
                raise ArtifactError(f"{self.artifact.sidecar_path}: input {spec.name!r} is {spec.dtype} ({want}) "
                                    f"but the server's {self.model_name!r} takes {got}")
            shape = [int(d) for d in served[spec.name].get("shape", [])]
            if not _shapes_agree(spec.shape, shape):
                raise ArtifactError(f"{self.artifact.sidecar_path}: input {spec.name!r} has shape {spec.shape} but the "
                                    f"server's {self.model_name!r} takes {shape} (-1: any); the sidecar does not "
                                    "describe the served model")
        outputs = {t["name"] for t in meta.get("outputs", [])}
        missing = [n for n in self.output_names if n not in outputs]
        if missing:
            raise ArtifactError(f"{self.artifact.sidecar_path}: outputs {missing} are not outputs of "
                                f"{self.model_name!r} on {self.address} (it has {sorted(outputs)})")

    # --- inference -------------------------------------------------------------------------------
    def _infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        xp = array_module(next(iter(feed.values())))
        host = {name: np.ascontiguousarray(a if xp is np else xp.asnumpy(a)) for name, a in feed.items()}
        results = self._call(lambda client: self._request(client, host))
        if xp is not np:
            results = {name: xp.asarray(a) for name, a in results.items()}
        return results

    def _request(self, client, host: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        module = self._module()
        inputs = []
        for name, array in host.items():
            tensor = module.InferInput(name, list(array.shape), _TRITON_DTYPES[str(array.dtype)])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(name) for name in self.output_names]
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = client.infer(self.model_name, inputs, model_version=self.model_version, outputs=outputs, **kwargs)
        return {name: result.as_numpy(name) for name in self.output_names}

    def _call(self, fn):
        """Run ``fn(client)``; on an unreachable server reconnect and retry with backoff."""
        exc_type = self._module().InferenceServerException if self._module() else Exception
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))
                self._drop_client()
                self.reconnects += 1
            try:
                return fn(self._client())
            except TritonUnavailableError:
                raise
            except exc_type as exc:
                if not _is_unavailable(exc):
                    raise _request_error(self, exc) from exc
                last = exc
            except (OSError, EOFError) as exc:
                last = exc
        raise TritonUnavailableError(
            f"Triton server at {self.address} is unreachable for model {self.model_name!r} after "
            f"{self.retries + 1} attempts ({type(last).__name__}: {_first_line(last)}). Is it running? Start one with "
            f"`edgeseg serve {self.artifact.path}` or check the url; the next infer() tries again") from last

    # --- clients ---------------------------------------------------------------------------------
    def _module(self):
        name = "tritonclient.grpc" if self.protocol == "grpc" else "tritonclient.http"
        return require(name, "the triton backend")

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            module = self._module()
            if self.protocol == "grpc":
                client = module.InferenceServerClient(self.url)
            else:
                client = module.InferenceServerClient(self.url, connection_timeout=self.timeout_s,
                                                      network_timeout=self.timeout_s)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _drop_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
            _close(client)


def parse_url(url: str) -> tuple[str, str]:
    """``"grpc://h:p"`` -> ``("grpc", "h:p")``; ``"http://h:p"`` or ``"h:p"`` -> ``("http", "h:p")``."""
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"url: got {url!r}, expected 'host:port', 'http://host:port' or 'grpc://host:port'")
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "http", url.strip()
    if scheme not in ("http", "grpc"):
        raise InputError(f"url: got scheme {scheme!r} in {url!r}, expected 'http' or 'grpc' (https is not supported)")
    rest = rest.rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"url: got {url!r}, expected a host and a port, e.g. '127.0.0.1:8000'")
    return scheme, rest


def served_name(artifact: Artifact) -> str:
    """Model name on the server: ``REPO/<name>/<version>/model.onnx`` -> ``<name>``, else the file's stem."""
    path = artifact.path
    if path.stem == "model" and path.parent.name.isdigit() and path.parent.parent.name:
        return path.parent.parent.name
    return path.stem


def triton_factory(artifact: Artifact, **options) -> TritonRunner:
    """Backend factory. Never guesses a server: without ``url`` (or ``$EDGESEG_TRITON_URL``) it refuses, which
    also stops ``backend="auto"`` from falling through to Triton when no local backend runs the file."""
    if not options.get("url") and not os.environ.get(URL_ENV):
        raise InputError(
            f"url: got None, expected the Triton server address for {artifact.path.name} (pass backend='triton', "
            f"url='host:port' or 'grpc://host:port', or set ${URL_ENV}); no local backend was usable for it "
            "if you asked for backend='auto'")
    return TritonRunner(artifact, **options)


def _is_unavailable(exc: BaseException) -> bool:
    status = str(getattr(exc, "status", lambda: "")() or "").lower()
    text = f"{status} {exc}".lower()
    return any(hint in text for hint in _UNAVAILABLE_HINTS)


def _request_error(runner: TritonRunner, exc: BaseException) -> EdgesegError:
    text = _first_line(exc)
    lower = text.lower()
    if "shape" in lower or "datatype" in lower or "dims" in lower or "batch" in lower:
        return InputError(f"the Triton server rejected the input for {runner.model_name!r}: {text}")
    if "not found" in lower or "unknown model" in lower or "not ready" in lower:
        return TritonUnavailableError(f"model {runner.model_name!r} on {runner.address}: {text}")
    return EdgesegError(f"Triton server at {runner.address} failed the request for {runner.model_name!r}: {text}")


def _metadata(client, name: str, version: str) -> dict:
    meta = client.get_model_metadata(name, version)
    if isinstance(meta, dict):
        return meta
    return {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.outputs]}


def _shapes_agree(declared: list, served: list[int]) -> bool:
    """Same rank, and every dim fixed on both sides is equal (strings and -1 are dynamic)."""
    if not served:
        return True  # the server did not say
    if len(declared) != len(served):
        return False
    return all(not (isinstance(a, int) and a > 0 and b > 0 and a != b) for a, b in zip(declared, served))


def _index(client):
    index = client.get_model_repository_index()
    return getattr(index, "models", index)


def _close(client) -> None:
    try:
        client.close()
    except Exception as exc:  # noqa: BLE001 - closing a dead connection must not hide the real error
        log.debug("closing a Triton client failed: %s", exc)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
