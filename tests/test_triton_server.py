"""A real Triton Inference Server (PyTriton) on 127.0.0.1: concurrent clients, parity with ONNX Runtime,
a server stopped mid-stream and brought back.

Needs the Triton venv (`bash scripts/setup_triton.sh` makes `.venv-triton/`); skips with that command otherwise.
Each server start takes ~5-15 s; every wait below is bounded.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeseg.artifact import Artifact, TensorSpec
from edgeseg.commands.serve import triton_python
from edgeseg.errors import ArtifactError, InputError
from edgeseg.triton.local import LocalServer

pytest.importorskip("tritonclient.http", reason="pip install 'tritonclient[grpc,http]' for the triton backend")
pytest.importorskip("tritonclient.grpc", reason="pip install 'tritonclient[grpc,http]' for the triton backend")

import edgeseg.triton  # noqa: F401 - registers the "triton" backend
from edgeseg.runtime import create_runner
from edgeseg.runtime.triton_runner import TritonUnavailableError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "edgeseg" / "assets" / "hc18_fastseg.onnx"
PYTHON = triton_python()


def triton_venv_problem() -> str | None:
    """Why the Triton venv cannot serve (missing, or made but without PyTriton), or None."""
    if PYTHON is None:
        return "no Triton venv (.venv-triton/ or $EDGESEG_TRITON_PYTHON): create it with `bash scripts/setup_triton.sh`"
    probe = subprocess.run([str(PYTHON), "-c", "import numpy, pytriton"], capture_output=True, text=True, timeout=60)
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"the Triton venv at {PYTHON} is incomplete ({last}): rerun `bash scripts/setup_triton.sh`"
    return None


PROBLEM = triton_venv_problem()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")]


def tiny_onnx(path: Path) -> Path:
    """A 1 -> 2 channel 3x3 conv segmentation model with dynamic batch/height/width (+ sidecar)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.array([0.1, -0.1], np.float32), "b")
    node = helper.make_node("Conv", ["input", "w", "b"], ["logits"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             ["batch", 1, "height", "width"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                             ["batch", 2, "height", "width"])], [w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    art = Artifact(path=path, model="tiny_conv", model_kwargs={"num_classes": 2, "in_channels": 1},
                   inputs=[TensorSpec("input", ["batch", 1, "height", "width"])],
                   outputs=[TensorSpec("logits", ["batch", 2, "height", "width"])], classes=["background", "head"])
    art.preprocess.color, art.preprocess.mean, art.preprocess.std = "gray", [0.2], [0.2]
    art.save()
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    if SHIPPED.exists():
        return SHIPPED
    return tiny_onnx(tmp_path_factory.mktemp("triton_model") / "tiny_seg.onnx")


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    srv = LocalServer(model, "--segmenter", log=tmp_path_factory.mktemp("triton_log") / "server.log").start()
    yield srv
    srv.stop()


def test_concurrent_clients_match_onnxruntime(server, model):
    rng = np.random.default_rng(0)
    size = Artifact.load(model).preprocess.size
    inputs = [rng.standard_normal((1 + i % 2, 1, *size)).astype(np.float32) for i in range(12)]
    with create_runner(model, backend="onnxruntime", threads=1) as local:
        expected = [local.infer({"input": x})["logits"] for x in inputs]
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []

    def client(index: int) -> None:
        url = [server.http_url, server.grpc_url][index % 2]  # HTTP and gRPC clients at the same time
        try:
            with create_runner(model, backend="triton", url=url, timeout_s=30) as runner:
                for k, x in enumerate(inputs):
                    results[index, k] = runner.infer({"input": x})["logits"]
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 4 * len(inputs)
    for (index, k), out in results.items():
        assert out.shape == expected[k].shape
        # same ONNX Runtime version on both sides; dynamic batching may change the batch, not the math
        assert np.array_equal(out.argmax(1), expected[k].argmax(1)), (index, k)
        assert np.max(np.abs(out - expected[k])) <= 1e-5, (index, k)


def test_segmenter_over_triton_matches_local_on_real_frames(server, model, hc18_dir):
    cv2 = pytest.importorskip("cv2")
    from edgeseg import Segmenter

    frames = [cv2.imread(str(p)) for p in sorted((hc18_dir / "images").glob("*.png"))[:3]]
    local = Segmenter(model, backend="onnxruntime")
    remote = Segmenter(model, backend="triton", url=server.grpc_url)
    for frame in frames:
        a, b = local(frame), remote(frame)
        assert np.array_equal(a.labels, b.labels)
        assert np.allclose(a.probs, b.probs, atol=1e-5)
        assert b.timings["infer"] > 0


def test_served_segmenter_matches_local_segmenter(server, model, hc18_dir):
    cv2 = pytest.importorskip("cv2")
    from edgeseg import Segmenter
    from edgeseg.triton.client import RemoteSegmenter

    paths = sorted((hc18_dir / "images").glob("*.png"))[3:5]
    frames = [cv2.imread(str(p)) for p in paths] + [cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE)]
    local = Segmenter(model, backend="onnxruntime")
    with RemoteSegmenter(server.http_url, server_name(model) + "_segment") as remote:
        for frame in frames:
            a, b = local(frame), remote(frame)
            a.probs  # noqa: B018 - first, as the server does: the same (float32) route, so 1e-5 is a fair tolerance
            assert b.labels.shape == frame.shape[:2] and b.labels.dtype == np.uint8
            assert np.array_equal(a.labels, b.labels)
            assert np.allclose(a.probs, b.probs, atol=1e-5)


def test_unknown_model_and_disagreeing_sidecar_are_clear(server, model, tmp_path):
    with pytest.raises(TritonUnavailableError, match="'nope' is not ready"):
        create_runner(model, backend="triton", url=server.http_url, model_name="nope").activate()
    wrong = Artifact.load(model).with_path(tmp_path / "wrong.onnx")
    wrong.path.write_bytes(b"")
    wrong.inputs = [TensorSpec("input", ["batch", 3, "height", "width"])]
    with pytest.raises(ArtifactError, match="shape"):
        create_runner(wrong, backend="triton", url=server.http_url, model_name=server_name(model)).activate()
    loose = wrong.with_path(wrong.path)  # a sidecar that does not pin channels: the server has to refuse
    loose.inputs = [TensorSpec("input", ["batch", "channels", "height", "width"])]
    size = Artifact.load(model).preprocess.size
    for url in (server.http_url, server.grpc_url):
        with create_runner(loose, backend="triton", url=url, model_name=server_name(model)) as runner:
            with pytest.raises(InputError, match="rejected the input"):
                runner.infer({"input": np.zeros((1, 3, *size), np.float32)})


def server_name(model: Path) -> str:
    return model.stem


def test_server_stopped_mid_stream_then_back(model, tmp_path):
    srv = LocalServer(model, log=tmp_path / "server.log").start()
    size = Artifact.load(model).preprocess.size
    x = np.ones((1, 1, *size), np.float32)
    try:
        runners = [create_runner(model, backend="triton", url=url, retries=2, backoff_s=0.1, timeout_s=5)
                   for url in (srv.http_url, srv.grpc_url)]
        before = [r.infer({"input": x})["logits"] for r in runners]
        srv.stop()
        for runner in runners:
            start = time.monotonic()
            with pytest.raises(TritonUnavailableError, match="unreachable.*edgeseg serve"):
                runner.infer({"input": x})
            assert time.monotonic() - start < 30  # bounded: retries with backoff, then a clear error
        srv.start()  # same ports
        for runner, old in zip(runners, before):
            again = runner.infer({"input": x})["logits"]  # the same runner reconnects
            assert np.array_equal(again, old)
            assert runner.reconnects >= 2
            runner.deactivate()
    finally:
        srv.stop()


def test_cpu_machine_log_explains_the_cuda_lines_and_has_no_gpu_metrics_errors(server):
    from edgeseg.info import may_have_gpu
    from edgeseg.triton.server import NO_GPU_NOTE

    log = server.log.read_text(errors="replace")
    if may_have_gpu():
        assert NO_GPU_NOTE not in log
    else:  # one line explains what tritonserver logs about CUDA; NVML/DCGM (GPU metrics) are not started
        assert NO_GPU_NOTE in log and "NVML" not in log and "DCGM" not in log
