"""Triton model repository writer: config.pbtxt parsed by Triton's own ModelConfig protobuf (no server)."""

from __future__ import annotations

import json

import pytest

from edgeseg.artifact import Artifact, TensorSpec
from edgeseg.errors import ArtifactError, InputError
from edgeseg.triton.repository import (
    check_config,
    parse_config,
    triton_config_from_artifact,
    write_repository,
)

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="pip install 'tritonclient[grpc]' for config checks")


def _artifact(tmp_path, name="seg.onnx", batch="batch", dtype="float32", engine=None):
    path = tmp_path / name
    path.write_bytes(b"model bytes " + name.encode())
    art = Artifact(path=path, model="fastseg", model_kwargs={"num_classes": 2, "in_channels": 1},
                   inputs=[TensorSpec("input", [batch, 1, "height", "width"], dtype)],
                   outputs=[TensorSpec("logits", [batch, 2, "height", "width"], "float32")],
                   classes=["background", "head"], engine=engine)
    art.preprocess.color, art.preprocess.mean, art.preprocess.std = "gray", [0.5], [0.25]
    art.save()
    return art


def test_onnx_repository_layout_and_config_parse(tmp_path):
    art = _artifact(tmp_path)
    config_path = write_repository(art.path, tmp_path / "repo", max_batch_size=8, max_queue_delay_us=250,
                                   instance_count=2)
    assert config_path == tmp_path / "repo" / "seg" / "config.pbtxt"
    config = parse_config(config_path.read_text())
    assert config.name == "seg" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert [(t.name, list(t.dims)) for t in config.input] == [("input", [1, -1, -1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [2, -1, -1])]
    fp32 = parse_config('name: "x" input [{ name: "a" data_type: TYPE_FP32 dims: [1] }]').input[0].data_type
    assert config.input[0].data_type == fp32
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    group = config.instance_group[0]
    assert group.count == 2 and group.kind == group.KIND_CPU
    model_file = tmp_path / "repo" / "seg" / "1" / "model.onnx"
    assert model_file.read_bytes() == art.path.read_bytes()
    copied = Artifact.load(model_file)  # the sidecar beside it is a valid edgeseg sidecar for clients
    assert copied.classes == ["background", "head"] and copied.preprocess.mean == [0.5]
    assert json.loads((model_file.parent / "model.onnx.json").read_text())["file"] == "model.onnx"


def test_fixed_batch_has_no_batching(tmp_path):
    art = _artifact(tmp_path, batch=1)
    config = parse_config(write_repository(art, tmp_path / "repo").read_text())
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [1, 1, -1, -1]
    assert not config.HasField("dynamic_batching")


def test_engine_uses_plan_gpu_and_profile_batch_cap(tmp_path):
    profiles = {"input": [[1, 1, 256, 256], [2, 1, 256, 256], [4, 1, 256, 256]]}
    art = _artifact(tmp_path, name="seg.engine", engine={"profiles": profiles})
    config_path = write_repository(art, tmp_path / "repo", name="seg_trt", max_batch_size=16, gpus=[0])
    config = parse_config(config_path.read_text())
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 4  # the engine cannot run more than its profile's max batch
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU
    assert list(config.instance_group[0].gpus) == [0]
    assert (tmp_path / "repo" / "seg_trt" / "1" / "model.plan").read_bytes() == art.path.read_bytes()


def test_no_dynamic_batching_keeps_batch_dim(tmp_path):
    config = parse_config(write_repository(_artifact(tmp_path), tmp_path / "r", dynamic_batching=False).read_text())
    assert config.max_batch_size == 8 and not config.HasField("dynamic_batching")


def test_existing_version_is_not_overwritten_silently(tmp_path):
    art = _artifact(tmp_path)
    write_repository(art, tmp_path / "repo")
    with pytest.raises(InputError, match="overwrite"):
        write_repository(art, tmp_path / "repo")
    write_repository(art, tmp_path / "repo", version=2)
    assert (tmp_path / "repo" / "seg" / "2" / "model.onnx").exists()
    write_repository(art, tmp_path / "repo", overwrite=True)


@pytest.mark.parametrize("options, match", [
    ({"preferred_batch_sizes": [16]}, "preferred_batch_sizes"),
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"instance_kind": "KIND_TPU"}, "instance_kind"),
    ({"name": "bad/name"}, "name"),
])
def test_bad_options_name_the_field(tmp_path, options, match):
    with pytest.raises(InputError, match=match):
        triton_config_from_artifact(_artifact(tmp_path), **options)


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "a\\b"])
def test_repo_name_cannot_leave_the_repository(tmp_path, capsys, name):
    from edgeseg.cli import main

    art = _artifact(tmp_path)
    repo = tmp_path / "sub" / "repo"
    assert main(["triton-repo", str(art.path), str(repo), "--name", name]) == 2
    assert f"name: got {name!r}" in capsys.readouterr().err
    with pytest.raises(InputError, match="name"):
        triton_config_from_artifact(art, name=name)
    assert not (tmp_path / "sub" / "config.pbtxt").exists() and not (tmp_path / "sub" / "1").exists()
    assert not repo.exists()


@pytest.mark.parametrize("bad", ['in"put', 'a" }] output [{ name: "x', "in\nput", "in put", ""])
def test_unsafe_sidecar_tensor_names_are_refused(tmp_path, bad):
    art = _artifact(tmp_path)
    art.inputs[0].name = bad
    with pytest.raises(ArtifactError, match="tensor name"):
        triton_config_from_artifact(art)
    with pytest.raises(ArtifactError, match="tensor name"):
        write_repository(art, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_onnx_style_tensor_names_are_kept(tmp_path):
    art = _artifact(tmp_path)
    art.inputs[0].name, art.outputs[0].name = "input:0", "model/logits_1"
    config = parse_config(write_repository(art, tmp_path / "repo").read_text())
    assert [t.name for t in config.input] == ["input:0"] and [t.name for t in config.output] == ["model/logits_1"]


def test_engine_on_cpu_and_unknown_dtype_are_refused(tmp_path):
    with pytest.raises(InputError, match="KIND_GPU"):
        triton_config_from_artifact(_artifact(tmp_path, name="m.engine"), instance_kind="KIND_CPU")
    with pytest.raises(ArtifactError, match="complex64"):
        triton_config_from_artifact(_artifact(tmp_path, dtype="complex64"))
    side_only = Artifact(path=tmp_path / "x.safetensors")
    with pytest.raises(InputError, match="onnx"):
        triton_config_from_artifact(side_only)


def test_check_config_rejects_what_triton_would(tmp_path):
    with pytest.raises(ArtifactError, match="does not parse"):
        check_config('name: "x" platform: "onnxruntime_onnx" max_batch_size: "eight"')
    with pytest.raises(ArtifactError, match="exceeds max_batch_size"):
        check_config('name: "x" platform: "onnxruntime_onnx" max_batch_size: 2 '
                     'input [{ name: "a" data_type: TYPE_FP32 dims: [3] }] '
                     'output [{ name: "b" data_type: TYPE_FP32 dims: [3] }] '
                     'dynamic_batching { preferred_batch_size: [4] }')
    with pytest.raises(ArtifactError, match="dims"):
        check_config('name: "x" platform: "onnxruntime_onnx" '
                     'input [{ name: "a" data_type: TYPE_FP32 dims: [0] }] '
                     'output [{ name: "b" data_type: TYPE_FP32 dims: [3] }]')


def test_triton_repo_command_writes_a_parseable_repository(tmp_path, capsys):
    from edgeseg.cli import main

    art = _artifact(tmp_path)
    code = main(["triton-repo", str(art.path), str(tmp_path / "repo"), "--name", "hc18", "--max-batch-size", "4",
                 "--preferred-batch-sizes", "4", "--instances", "3", "--version", "2"])
    assert code == 0
    config = parse_config((tmp_path / "repo" / "hc18" / "config.pbtxt").read_text())
    assert config.name == "hc18" and config.max_batch_size == 4 and config.instance_group[0].count == 3
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert (tmp_path / "repo" / "hc18" / "2" / "model.onnx").exists()
    assert main(["triton-repo", str(art.path), str(tmp_path / "repo"), "--name", "hc18", "--version", "2"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_export_with_triton_writes_the_exported_model_into_a_repository(tmp_path, capsys):
    pytest.importorskip("torch")
    from pathlib import Path

    import edgeseg
    from edgeseg.cli import main

    ckpt = Path(edgeseg.__file__).parent / "assets" / "hc18_fastseg.safetensors"
    assert main(["export", str(ckpt), "-o", str(tmp_path / "out"), "--triton", str(tmp_path / "repo")]) == 0
    config = parse_config((tmp_path / "repo" / "hc18_fastseg" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime"
    assert [i.name for i in config.input] == ["input"] and [o.name for o in config.output] == ["logits"]
    exported = (tmp_path / "out" / "hc18_fastseg.onnx").read_bytes()
    assert (tmp_path / "repo" / "hc18_fastseg" / "1" / "model.onnx").read_bytes() == exported
    assert "tritonserver --model-repository" in capsys.readouterr().out


# --- TritonRunner and `edgeseg serve` without a server ------------------------------------------------
def test_url_parsing_and_served_name(tmp_path):
    from edgeseg.runtime.triton_runner import parse_url, served_name

    assert parse_url("127.0.0.1:8000") == ("http", "127.0.0.1:8000")
    assert parse_url("grpc://host:8001/") == ("grpc", "host:8001")
    for bad in ("https://h:1", "localhost", "grpc://h:port", ""):
        with pytest.raises(InputError, match="url"):
            parse_url(bad)
    art = _artifact(tmp_path)
    write_repository(art, tmp_path / "repo", name="hc18")
    assert served_name(Artifact.load(tmp_path / "repo" / "hc18" / "1" / "model.onnx")) == "hc18"
    assert served_name(art) == "seg"


def test_unreachable_server_is_a_clear_bounded_error(tmp_path, monkeypatch):
    import socket
    import time

    pytest.importorskip("tritonclient.grpc", reason="pip install 'tritonclient[grpc,http]'")
    import edgeseg.triton  # noqa: F401 - registers the backend
    from edgeseg.runtime import create_runner
    from edgeseg.runtime.triton_runner import TritonUnavailableError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    art = _artifact(tmp_path)
    for url in (f"127.0.0.1:{port}", f"grpc://127.0.0.1:{port}"):
        runner = create_runner(art, backend="triton", url=url, retries=2, backoff_s=0.01, timeout_s=2)
        start = time.monotonic()
        with pytest.raises(TritonUnavailableError, match=f"127.0.0.1:{port} is unreachable .* after 3 attempts"):
            runner.activate()
        assert time.monotonic() - start < 20
        assert runner.reconnects == 2
    monkeypatch.delenv("EDGESEG_TRITON_URL", raising=False)
    with pytest.raises(InputError, match="url"):
        create_runner(art, backend="triton")


def test_serve_reexec_arguments_round_trip():
    import argparse

    from edgeseg.commands import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["m.onnx", "--http-port", "9000", "--no-dynamic-batching", "--threads", "1",
                              "--name", "x"])
    again = parser.parse_args(serve.server_argv(args))
    assert serve.options_from_args(again) == serve.options_from_args(args)
    assert again.host == "127.0.0.1"  # loopback unless asked
