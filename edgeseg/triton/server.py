"""PyTriton entry point: serve an edgeseg ONNX artifact on a real Triton Inference Server.

Runs inside the Triton venv (``scripts/setup_triton.sh`` makes it: PyTriton's bundled ``tritonserver``
needs numpy<2 and a Python whose stdlib matches its embedded libpython). ``edgeseg serve`` re-executes
itself here when the current interpreter lacks PyTriton; you can also call it directly::

    .venv-triton/bin/python -m edgeseg.triton.server edgeseg/assets/hc18_fastseg.onnx --http-port 8000

The model is served under its sidecar's input/output names (ONNX Runtime runs it in the Python
backend, one session per instance), so :class:`~edgeseg.runtime.triton_runner.TritonRunner` and plain
``tritonclient`` code see the same tensors as the local ONNX Runtime runner. Requests that the dynamic
batcher groups are split by shape, run as one batch per shape, and split back per request.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from ..artifact import Artifact
from ..errors import EdgesegError, InputError
from .local import READY, STOPPED
from .repository import triton_config_from_artifact
from .serve_options import ServeOptions

log = logging.getLogger("edgeseg.triton.server")


# tritonserver probes CUDA at start even on a CPU machine and logs W/E lines about it (pinned memory, CUDA
# driver, CudaDriverHelper), plus a PyTriton quirk ("Failed to set config modification time"); GPU metrics
# (NVML, DCGM) are switched off there, which silences their errors.
NO_GPU_NOTE = ("edgeseg serve: no NVIDIA GPU on this machine, so Triton serves on the CPU; its start-up lines about "
               "pinned memory, the CUDA driver and 'config modification time' are expected, not failures")


def make_infer_func(artifact: Artifact, threads: int | None, batched: bool):
    """An inference callable for PyTriton: ``requests -> responses`` over one ONNX Runtime session."""
    from ..runtime.onnxruntime_runner import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(artifact, threads=threads).activate()
    names = runner.input_names

    def infer(requests):
        if not batched:
            return [runner.infer({n: np.asarray(r[n]) for n in names}) for r in requests]
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(tuple((n, np.asarray(request[n]).shape) for n in names), []).append(i)
        for indices in groups.values():
            feed = {n: np.concatenate([np.asarray(requests[i][n]) for i in indices]) for n in names}
            out = runner.infer(feed)
            start = 0
            for i in indices:
                rows = np.asarray(requests[i][names[0]]).shape[0]
                responses[i] = {k: v[start:start + rows] for k, v in out.items()}
                start += rows
        return responses

    return infer


def bind_model(triton, artifact: Artifact, options: ServeOptions) -> str:
    """Bind ``artifact`` to a PyTriton ``Triton`` instance; return the served model name."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    config = triton_config_from_artifact(artifact, name=options.name, max_batch_size=options.max_batch_size,
                                         dynamic_batching=options.dynamic_batching,
                                         max_queue_delay_us=options.max_queue_delay_us)
    batched = config.max_batch_size > 0 and options.dynamic_batching

    def tensors(specs, declared):
        out = []
        for spec, (_, _, dims) in zip(specs, declared):
            shape = dims if batched else [-1 if not isinstance(d, int) or d <= 0 else d for d in spec.shape]
            out.append(Tensor(name=spec.name, dtype=np.dtype(spec.dtype), shape=tuple(shape)))
        return out

    model_config = ModelConfig(
        batching=batched, max_batch_size=max(config.max_batch_size, 1),
        batcher=DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us,
                               preferred_batch_size=config.preferred_batch_sizes or None))
    funcs = [make_infer_func(artifact, options.threads, batched) for _ in range(options.instances)]
    triton.bind(model_name=config.name, infer_func=funcs if len(funcs) > 1 else funcs[0],
                inputs=tensors(artifact.inputs, config.inputs), outputs=tensors(artifact.outputs, config.outputs),
                config=model_config, strict=True)
    return config.name


SEGMENT_SUFFIX = "_segment"


def bind_segmenter(triton, artifact: Artifact, options: ServeOptions, model_name: str) -> str:
    """Bind ``<model_name>_segment``: a whole :class:`~edgeseg.Segmenter` on the server.

    Input ``frame`` (H, W, C) uint8, C = 3 (BGR) or 1 (gray), one frame per request; outputs ``labels``
    (H, W) uint8 (uint16 beyond 256 classes) and ``probs`` (K, H, W) float32 at frame size. Thin clients send frames, not tensors
    (see :class:`~edgeseg.triton.client.RemoteSegmenter`).
    """
    from pytriton.model_config import ModelConfig, Tensor

    from ..pipeline import Segmenter
    from ..postprocess import label_dtype

    labels_dtype = label_dtype(len(artifact.classes))

    def make_infer():
        segmenter = Segmenter(artifact, backend="onnxruntime", threads=options.threads)

        def infer(requests):
            responses = []
            for request in requests:
                frame = np.asarray(request["frame"])
                result = segmenter(frame[..., 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame)
                probs = result.probs  # first: the float32 route, then labels are a threshold of it
                responses.append({"labels": result.labels.astype(labels_dtype, copy=False),
                                  "probs": probs.astype(np.float32, copy=False)})
            return responses

        return infer

    name = model_name + SEGMENT_SUFFIX
    funcs = [make_infer() for _ in range(options.instances)]
    triton.bind(model_name=name, infer_func=funcs if len(funcs) > 1 else funcs[0],
                inputs=[Tensor(name="frame", dtype=np.uint8, shape=(-1, -1, -1))],
                outputs=[Tensor(name="labels", dtype=labels_dtype.type, shape=(-1, -1)),
                         Tensor(name="probs", dtype=np.float32, shape=(-1, -1, -1))],
                config=ModelConfig(batching=False), strict=True)
    return name


def serve(model: str | Path | Artifact, options: ServeOptions | None = None,
          stop: threading.Event | None = None) -> int:
    """Start Triton on ``options.host`` serving ``model`` until SIGINT/SIGTERM (or ``stop`` is set)."""
    options = options or ServeOptions()
    artifact = model if isinstance(model, Artifact) else Artifact.load(model)
    if artifact.format != "onnx":
        raise InputError(f"model: got a {artifact.format!r} file ({artifact.path.name}), expected an .onnx artifact "
                         "(for a TensorRT engine write a repository with `edgeseg triton-repo` and run tritonserver)")
    for field in ("http_port", "grpc_port", "metrics_port"):
        port = getattr(options, field)
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InputError(f"{field}: got {port!r}, expected a port number in 1..65535")
    if not isinstance(options.instances, int) or options.instances < 1:
        raise InputError(f"instances: got {options.instances!r}, expected an int >= 1")
    from pytriton.triton import Triton, TritonConfig

    from ..info import may_have_gpu

    stop = stop or threading.Event()
    _stop_on_signals(stop)
    gpu = may_have_gpu()
    if not gpu:
        print(NO_GPU_NOTE, flush=True)
    config = TritonConfig(http_address=options.host, http_port=options.http_port, grpc_address=options.host,
                          grpc_port=options.grpc_port, metrics_address=options.host,
                          metrics_port=options.metrics_port, exit_timeout_secs=5,
                          log_verbose=options.log_verbose, allow_gpu_metrics=gpu)
    with Triton(config=config) as triton:
        name = bind_model(triton, artifact, options)
        if options.segmenter:
            bind_segmenter(triton, artifact, options, name)
        triton.run()
        print(f"{READY} model={name}{' segmenter=' + name + SEGMENT_SUFFIX if options.segmenter else ''} http://{options.host}:{options.http_port} "
              f"grpc://{options.host}:{options.grpc_port} batching={'dynamic' if options.dynamic_batching else 'off'}",
              flush=True)
        while not stop.wait(0.2):
            if not triton.is_alive():
                print("edgeseg serve: the Triton server process exited", file=sys.stderr, flush=True)
                return 1
    print(STOPPED, flush=True)
    return 0


def _stop_on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


SERVER_PROCESS_HELP = ("The Triton server process that `edgeseg serve` re-executes in the Triton venv; "
                       "see `edgeseg serve --help` for the examples.")


def main(argv: list[str] | None = None) -> int:
    """``python -m edgeseg.triton.server MODEL [options]`` with the options of ``edgeseg serve``."""
    import argparse

    from .serve_options import add_arguments, options_from_args

    parser = argparse.ArgumentParser(prog="edgeseg serve", description=SERVER_PROCESS_HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve(args.model, options_from_args(args))
    except EdgesegError as exc:
        print(f"edgeseg serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
