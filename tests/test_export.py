"""PyTorch -> ONNX export: dynamic shapes, fallback to static, the sidecar, and parity on real HC18 images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.artifact import Artifact, Preprocess
from edgeseg.errors import ArtifactError, InputError

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")
from edgeseg.export.check import parity_report
from edgeseg.export.onnx_export import ExportWarning, custom_translation_table, to_onnx

from edgeseg.models import create_model, list_models, save_checkpoint
from edgeseg.runtime import OnnxRuntimeRunner

GRAY = {"color": "gray", "mean": [0.5], "std": [0.25]}


def gray_artifact(path="m.safetensors", size=(64, 64), classes=("background", "head")):
    return Artifact(path=path, classes=list(classes), preprocess=Preprocess(size=size, **GRAY))


def torch_logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def fastseg_export(tmp_path_factory):
    """fastseg_small (random weights, fixed seed) saved as a checkpoint and exported once for the module."""
    folder = tmp_path_factory.mktemp("fastseg")
    torch.manual_seed(0)
    model = create_model("fastseg_small", num_classes=2, in_channels=1).eval()
    ckpt = folder / "fs.safetensors"
    save_checkpoint(model, ckpt, gray_artifact(ckpt))
    exported = to_onnx(model, Artifact.load(ckpt), folder / "onnx" / "fs.onnx")
    return model, ckpt, exported


def test_sidecar_describes_the_graph_and_keeps_the_checkpoint_facts(fastseg_export):
    _, ckpt, art = fastseg_export
    assert art.path.exists() and art.sidecar_path.exists()
    reloaded = Artifact.load(art.path)
    assert [(s.name, s.shape, s.dtype) for s in reloaded.inputs] == [("input", ["batch", 1, "height", "width"], "float32")]
    assert [(s.name, s.shape) for s in reloaded.outputs] == [("logits", ["batch", 2, "height", "width"])]
    assert reloaded.opset == 19 and reloaded.precision == "fp32"
    assert {"torch", "onnx", "onnxruntime", "edgeseg"} <= set(reloaded.versions)
    source = Artifact.load(ckpt)
    assert reloaded.preprocess == source.preprocess and reloaded.classes == source.classes
    assert reloaded.output_kind == "logits" and reloaded.model == "fastseg_small"
    assert (art.path.parent / reloaded.extra["export"]["source"]).resolve() == ckpt.resolve()


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (3, 1, 96, 160), (2, 1, 57, 83)])
def test_dynamic_batch_and_size_match_pytorch(fastseg_export, shape):
    model, _, art = fastseg_export
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    with OnnxRuntimeRunner(art) as runner:
        got = runner.infer({"input": x})["logits"]
    want = torch_logits(model, x)
    assert got.shape == want.shape == (shape[0], 2, *shape[2:])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_parity_on_real_hc18_images(fastseg_export, hc18_dir):
    _, _, art = fastseg_export
    report = parity_report(art.path, images=hc18_dir / "images", limit=4)
    assert report.passed, report.text()
    assert report.max_abs <= 1e-4 and report.agreement >= 0.999
    assert report.images == 4 and report.miou_reference == "ground-truth masks"


def test_parity_fails_against_a_different_model(fastseg_export, hc18_dir):
    _, _, art = fastseg_export
    torch.manual_seed(123)
    other = create_model("fastseg_small", num_classes=2, in_channels=1).eval()
    report = parity_report(art.path, images=hc18_dir / "images", limit=2, model=other)
    assert not report.passed and "max abs diff" in report.problems[0]


def test_cli_export_and_check(fastseg_export, tmp_path, hc18_dir, capsys):
    from edgeseg.cli import main

    _, ckpt, _ = fastseg_export
    assert main(["export", str(ckpt), "-o", str(tmp_path), "--static", "--no-simplify"]) == 0
    out = tmp_path / "fs.onnx"
    assert Artifact.load(out).inputs[0].shape == [1, 1, 64, 64]
    assert main(["check", str(out), "--images", str(hc18_dir / "images"), "--limit", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 3)[-1])
    assert report["passed"] and report["max_abs"] <= 1e-4
    # Checked against another checkpoint (other weights) the tolerance is exceeded: exit code 1.
    torch.manual_seed(7)
    other = tmp_path / "other.safetensors"
    save_checkpoint(create_model("fastseg_small", num_classes=2, in_channels=1), other, gray_artifact(other))
    assert main(["check", str(out), "--checkpoint", str(other), "--images", str(hc18_dir / "images"),
                 "--limit", "1"]) == 1
    assert "FAIL: max abs diff" in capsys.readouterr().out


class FixedGrid(torch.nn.Module):
    """Pools to a fixed 8x8 grid and resizes to a fixed 32x32: only one input size makes sense."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        y = torch.nn.functional.adaptive_avg_pool2d(self.conv(x), (8, 8))
        return torch.nn.functional.interpolate(y, size=(32, 32), mode="bilinear", align_corners=False)


def test_model_that_bakes_a_size_falls_back_to_static_with_a_reason(tmp_path):
    model = FixedGrid()
    model.model_kwargs = {"num_classes": 2, "in_channels": 1}
    with pytest.warns(ExportWarning, match="dynamic shapes failed for FixedGrid .*exporting static 32x32"):
        art = to_onnx(model, gray_artifact(size=(32, 32)), tmp_path / "fixed.onnx")
    assert art.inputs[0].shape == [1, 1, 32, 32] and art.extra["export"]["shapes"] == "static"
    x = np.random.default_rng(0).normal(size=(1, 1, 32, 32)).astype(np.float32)
    with OnnxRuntimeRunner(art) as runner:
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], torch_logits(model, x), atol=1e-5)
        with pytest.raises(InputError, match="expected 32 dim 2"):
            runner.infer({"input": np.zeros((1, 1, 64, 64), np.float32)})


class Stride8(torch.nn.Module):
    """Down by 8 then up by 8 with transposed convs: side lengths must be multiples of 8."""

    input_multiple = 8

    def __init__(self):
        super().__init__()
        self.down = torch.nn.Conv2d(1, 4, 8, stride=8)
        self.up = torch.nn.ConvTranspose2d(4, 3, 8, stride=8)

    def forward(self, x):
        return self.up(torch.relu(self.down(x)))


def test_input_multiple_gives_dynamic_sizes_in_steps(tmp_path):
    model = Stride8()
    with pytest.warns(ExportWarning, match=r"preprocess.size \(30, 44\) changed to \(32, 48\).*multiples of 8"):
        art = to_onnx(model, gray_artifact(size=(30, 44), classes=("a", "b", "c")), tmp_path / "s8.onnx")
    assert art.preprocess.size == (32, 48)
    assert art.extra["export"] == {"shapes": "dynamic", "traced_size": [32, 48], "input_multiple": 8,
                                   "source": "m.safetensors", "route": "native"}
    assert art.inputs[0].shape == ["batch", 1, "height", "width"]
    x = np.random.default_rng(0).normal(size=(2, 1, 40, 24)).astype(np.float32)
    with OnnxRuntimeRunner(art) as runner:
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], torch_logits(model, x), atol=1e-5)


def test_custom_translation_table_covers_every_edgeseg_op():
    from edgeseg.ops import onnx_translations as home

    ops = torch.ops.edgeseg
    assert custom_translation_table() == {ops.deform_conv2d.default: home.deform_conv2d_to_onnx,
                                          ops.roi_align.default: home.roi_align_to_onnx,
                                          ops.nms.default: home.nms_to_onnx,
                                          ops.crf_as_rnn.default: home.crf_as_rnn_to_onnx}


def test_bad_export_arguments(tmp_path):
    model = Stride8()
    with pytest.raises(InputError, match="out_path: got .*expected a file name ending in .onnx"):
        to_onnx(model, gray_artifact(), tmp_path / "x.pt")
    with pytest.raises(InputError, match="opset: got 11"):
        to_onnx(model, gray_artifact(), tmp_path / "x.onnx", opset=11)
    with pytest.raises(InputError, match="model_kwargs"):
        to_onnx(model, None, tmp_path / "x.onnx")


def test_check_without_checkpoint_names_the_fix(fastseg_export, tmp_path):
    _, _, art = fastseg_export
    moved = tmp_path / "moved.onnx"
    moved.write_bytes(art.path.read_bytes())
    data = json.loads(art.sidecar_path.read_text())
    moved.with_name("moved.onnx.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="pass --checkpoint"):
        parity_report(moved, images=tmp_path)


# --- the zoo: every model exports and matches PyTorch on real images -------------------------------------
def _zoo_model(name):
    torch.manual_seed(0)
    return create_model(name, num_classes=2, in_channels=1).eval()  # every zoo model builds with defaults


@pytest.mark.slow
# tflite_graph is built from an imported file; the instance models have their own exporter and parity tests
# (tests/test_maskrcnn.py, test_fcis.py, test_bottomup.py).
@pytest.mark.parametrize("name", [n for n in list_models() if n not in ("tflite_graph", "maskrcnn", "fcis", "bottomup")])
def test_zoo_model_exports_passes_check_and_builds_with_tensorrt_rtx(name, tmp_path, hc18_dir):
    """Every zoo model, on the route TensorRT-RTX and JetPack's TensorRT 8.x need (``decomposed``: standard ops
    only), matches PyTorch on real frames in ONNX Runtime and builds into a real TensorRT-RTX engine (ahead of
    time, no GPU needed)."""
    model = _zoo_model(name)
    multiple = getattr(model, "input_multiple", 1)
    size = tuple(-(-64 // multiple) * multiple for _ in range(2))
    ckpt = tmp_path / f"{name}.safetensors"
    save_checkpoint(model, ckpt, gray_artifact(ckpt, size=size))
    art = to_onnx(model, Artifact.load(ckpt), tmp_path / f"{name}.onnx", route="decomposed")
    assert not art.extra["export"].get("custom_domains"), "the decomposed route must use standard ONNX ops only"
    if not art.extra["export"].get("after_engine"):  # split (CRF after the engine): tests/test_routes_crf.py
        report = parity_report(art.path, images=hc18_dir / "images", limit=4)
        assert report.max_abs <= 1e-4, report.text()
        assert report.agreement >= 0.999, report.text()
    from _routes import build_rtx

    seconds, engine_bytes = build_rtx(art.path)
    assert engine_bytes > 0


class Deconvs(torch.nn.Module):
    """A stride-1 ConvTranspose (rewritten as Conv) followed by a stride-2 one (left alone)."""

    def __init__(self):
        super().__init__()
        self.same = torch.nn.ConvTranspose2d(1, 4, 3, padding=1)
        self.up = torch.nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.edge = torch.nn.ConvTranspose2d(2, 2, (3, 5), padding=(0, 1), bias=False)

    def forward(self, x):
        return self.edge(self.up(torch.relu(self.same(x))))


def test_stride1_conv_transpose_becomes_conv_with_equal_numbers(tmp_path):
    import onnx

    torch.manual_seed(0)
    model = Deconvs().eval()
    art = to_onnx(model, gray_artifact(size=(16, 16)), tmp_path / "d.onnx", simplify=False)
    ops = [n.op_type for n in onnx.load(str(art.path)).graph.node]
    assert ops.count("ConvTranspose") == 1 and ops.count("Conv") == 2, ops
    x = np.random.default_rng(0).normal(size=(2, 1, 20, 12)).astype(np.float32)
    with OnnxRuntimeRunner(art) as runner:
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], torch_logits(model, x), atol=1e-5)


def test_shipped_onnx_matches_its_checkpoint_on_hc18(hc18_dir):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "hc18_fastseg.onnx"
    if not shipped.exists() or not shipped.with_suffix(".safetensors").exists():
        pytest.skip("the shipped hc18_fastseg model is not in edgeseg/assets")
    report = parity_report(shipped, images=hc18_dir / "images", limit=8)
    assert report.passed, report.text()
    assert report.miou_onnx > 0.8, report.text()   # a trained model, not random weights
    assert Artifact.load(shipped).classes == ["background", "head"]
