"""One size rule for train, bench and exported zoo models (issue 16 item 15): sides are multiples of the
encoder stride (32) and of the model's input_multiple (PSPNet: 64); PSPNet exports keep H/W dynamic."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.errors import InputError
from edgeseg.sizes import ENCODER_STRIDE, check_size, parse_size, zoo_multiple

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "edgeseg" / "assets" / "hc18_fastseg.onnx"


def test_parse_and_check_size():
    assert parse_size("256x320", "--size") == (256, 320) and parse_size("128", "--size") == (128, 128)
    for bad in ("7x", "x7", "axb", "0x64", "-32x32"):
        with pytest.raises(InputError, match="--size: got"):
            parse_size(bad, "--size")
    with pytest.raises(InputError, match=r"--size: got 7x7, expected .*multiples of 32 for a fastseg model "
                                         r"\(e\.g\. 32x32\)"):
        check_size(parse_size("7x7", "--size"), "--size", zoo_multiple("fastseg"), "fastseg")
    assert check_size((96, 160), "size", 32) == (96, 160)
    with pytest.raises(InputError, match="in 1..8192"):
        check_size((64, 100000), "size")
    assert zoo_multiple("fastseg") == ENCODER_STRIDE and zoo_multiple("pspnet", 64) == 64
    assert zoo_multiple("tflite_graph", 1) == 1 and zoo_multiple("some_bare_onnx") == 1


def test_train_refuses_sizes_the_model_cannot_take_before_reading_data(capsys, tmp_path):
    base = ["train", "--images", str(tmp_path / "none"), "--masks", str(tmp_path / "none"), "--out",
            str(tmp_path / "m.safetensors"), "--quiet"]
    assert main([*base, "--size", "100", "100"]) == 2
    assert "size: got 100x100, expected height and width that are multiples of 32 for a fastseg model" in \
        capsys.readouterr().err


def test_pspnet_needs_64_before_training():
    pytest.importorskip("torch")
    from edgeseg.models import create_model
    from edgeseg.sizes import model_multiple

    model = create_model("pspnet", num_classes=2, in_channels=1, width=8)
    assert model_multiple(model) == 64
    assert model_multiple(create_model("fastseg", num_classes=2, in_channels=1)) == 32
    with pytest.raises(InputError, match="size: got 96x96, expected .*multiples of 64 for a pspnet model"):
        check_size((96, 96), "size", model_multiple(model), "pspnet")


def test_bench_size_follows_the_model_rule(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    if not SHIPPED.exists():
        pytest.skip("the shipped hc18_fastseg model is not in edgeseg/assets")
    rc = main(["bench", str(SHIPPED), "--size", "7x7", "--iterations", "2", "--out", str(tmp_path / "b")])
    assert rc == 2
    assert "--size: got 7x7, expected height and width that are multiples of 32 for a fastseg model" in \
        capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv, flag", [
    (["bench", "{model}", "--size", "0x64", "--out", "{out}"], "--size"),
    (["bench", "compare", "--interleave", "{model}", "{model}", "--size", "0x64", "--out", "{out}"], "--size"),
    (["check", "{model}", "--input-size", "0x64"], "--input-size"),
    (["run", "--model", "{model}", "--source", "{out}", "--sink", "null", "--input-size", "0x64"], "--input-size"),
])
def test_cli_sizes_with_a_zero_side_are_refused_before_any_work(argv, flag, tmp_path, capsys):
    # bench and the bare-ONNX options parse with sizes.parse_size (they once had their own, one without a > 0 check)
    out = tmp_path / "out"
    args = [a.format(model=tmp_path / "m.onnx", out=out) for a in argv]
    assert main(args) == 2
    assert f"{flag}: got 0x64, expected height and width in 1..8192" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_pspnet_traced_at_one_block_exports_dynamic_height_and_width(tmp_path):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.export.onnx_export import ExportWarning, to_onnx
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("pspnet", num_classes=2, in_channels=1, width=8).eval()
    artifact = Artifact(path=tmp_path / "psp.safetensors", model="pspnet", classes=["background", "head"],
                        model_kwargs={"num_classes": 2, "in_channels": 1, "width": 8},
                        preprocess=Preprocess(size=(64, 64), color="gray", mean=[0.5], std=[0.5]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExportWarning)  # a fallback to static must not pass quietly
        art = to_onnx(model, artifact, tmp_path / "psp.onnx")
    assert art.extra["export"]["shapes"] == "dynamic"
    assert art.inputs[0].shape == ["batch", 1, "height", "width"]
    session = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(2, 1, 128, 192)).astype(np.float32)
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 2, 128, 192) and np.abs(got - want).max() < 1e-4
