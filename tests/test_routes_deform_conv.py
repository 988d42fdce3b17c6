"""DeformConv export routes: the GridSample form against the op, in ONNX Runtime, and built by TensorRT-RTX."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from _routes import build_rtx, hc18_frames  # noqa: E402

from edgeseg.artifact import Artifact, Preprocess  # noqa: E402
from edgeseg.export.trt_build import EngineBuildError  # noqa: E402
from edgeseg.ops.deform_conv import DeformConv2d, deform_conv2d, deform_conv2d_grid_sample  # noqa: E402

GRAY = {"color": "gray", "mean": [0.5], "std": [0.25]}
CASES = [  # n, c, h, w, c_out, k, stride, pad, dilation, groups, offset_groups, mask
    (2, 4, 9, 11, 6, 3, 1, 1, 1, 1, 1, True),
    (1, 8, 10, 7, 4, 3, 2, 2, 2, 2, 2, True),
    (2, 6, 8, 8, 6, 3, 1, 1, 1, 3, 1, False),
    (1, 4, 6, 5, 2, (1, 3), 1, (0, 1), 1, 1, 4, True),
]


@pytest.mark.parametrize("case", CASES)
def test_grid_sample_form_equals_the_op_including_taps_outside_the_image(case):
    n, c, h, w, c_out, k, stride, pad, dil, groups, offset_groups, with_mask = case
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g)
    weight, bias = torch.randn(c_out, c // groups, kh, kw, generator=g), torch.randn(c_out, generator=g)
    out_h = (h + 2 * ph - dil * (kh - 1) - 1) // stride + 1
    out_w = (w + 2 * pw - dil * (kw - 1) - 1) // stride + 1
    offset = torch.randn(n, 2 * offset_groups * kh * kw, out_h, out_w, generator=g) * 4  # many taps land outside
    mask = torch.rand(n, offset_groups * kh * kw, out_h, out_w, generator=g) if with_mask else None
    want = deform_conv2d(x, offset, weight, bias, stride, (ph, pw), dil, mask)
    got = deform_conv2d_grid_sample(x, weight, offset, bias, mask, (stride, stride), (ph, pw), (dil, dil),
                                    groups, offset_groups)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-4 * max(1.0, float(want.abs().max()))


class DCNv2Block(torch.nn.Module):
    """conv -> (offset, mask) conv -> modulated deformable 3x3 conv, as deeplabv3_dcn's deformable stage."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.offsets = torch.nn.Conv2d(4, 27, 3, padding=1)
        self.dcn = DeformConv2d(4, 3, 3, padding=1)
        torch.nn.init.normal_(self.offsets.weight, std=0.5)  # offsets of a few pixels, some out of the image

    def forward(self, x):
        t = torch.relu(self.stem(x))
        o = self.offsets(t)
        return self.dcn(t, o[:, :18], torch.sigmoid(o[:, 18:]))


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    return DCNv2Block().eval()


def _export(block, folder, route):
    from edgeseg.export.onnx_export import to_onnx

    artifact = Artifact(path=folder / "dcn.safetensors", classes=["a", "b", "c"], preprocess=Preprocess(size=(24, 32), **GRAY))
    return to_onnx(block, artifact, folder / f"dcn_{route}.onnx", route=route)


def test_decomposed_route_is_standard_ops_matches_pytorch_on_hc18_and_builds_on_tensorrt_rtx(block, tmp_path):
    import onnx
    import onnxruntime as ort

    art = _export(block, tmp_path, "decomposed")
    ops = {n.op_type for n in onnx.load(str(art.path)).graph.node}
    assert "GridSample" in ops and "DeformConv" not in ops, ops
    assert art.extra["export"]["route"] == "decomposed"
    x = hc18_frames(2, (40, 56))  # another size than traced: the graph is dynamic
    session = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        want = block(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-4
    seconds, size = build_rtx(art.path, {"input": ((1, 1, 16, 16), (2, 1, 40, 56), (4, 1, 128, 128))})
    assert size > 0


def test_decomposed_route_in_fp16_keeps_its_sampling_grid_fp32_and_builds_on_tensorrt_rtx(block, tmp_path):
    import onnx
    import onnxruntime as ort

    from edgeseg.export.quantize import quantize_fp16

    art = _export(block, tmp_path, "decomposed")
    grid_nodes = art.extra["export"]["fp32_nodes"]
    ops = {n.name: n.op_type for n in onnx.load(str(art.path)).graph.node}
    assert grid_nodes and {ops[name] for name in grid_nodes} >= {"Add", "Div"}
    assert not {ops[name] for name in grid_nodes} & {"Conv", "GridSample", "Sigmoid"}
    half = quantize_fp16(art, tmp_path / "dcn.fp16.onnx")
    assert set(grid_nodes) <= set(half.extra["quantization"]["layer_precisions"])
    x = hc18_frames(1, (40, 56))
    got, want = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
                 for p in (half.path, art.path))
    assert np.abs(got - want).max() <= 5e-3 * max(1.0, float(np.abs(want).max()))
    seconds, size = build_rtx(half.path, {"input": ((1, 1, 16, 16), (1, 1, 40, 56), (2, 1, 64, 64))})
    assert size > 0


def test_native_route_keeps_onnx_deformconv_which_tensorrt_rtx_cannot_parse(block, tmp_path):
    import onnx

    art = _export(block, tmp_path, "native")
    assert "DeformConv" in {n.op_type for n in onnx.load(str(art.path)).graph.node}
    assert art.extra["export"]["route"] == "native"
    with pytest.raises(EngineBuildError, match="DeformConv"):  # no native DeformConv, no plugin registered
        build_rtx(art.path, {"input": ((1, 1, 16, 16), (1, 1, 24, 32), (2, 1, 64, 64))})


def test_plugin_route_emits_the_edgeseg_plugin_node_with_all_five_inputs(block, tmp_path):
    import onnx
    from onnx import helper

    art = _export(block, tmp_path, "plugin")
    nodes = [n for n in onnx.load(str(art.path)).graph.node if n.op_type == "DeformConv2d"]
    assert len(nodes) == 1 and nodes[0].domain == "edgeseg" and len(nodes[0].input) == 5
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs == {"stride_h": 1, "stride_w": 1, "pad_h": 1, "pad_w": 1, "dilation_h": 1, "dilation_w": 1,
                     "groups": 1, "offset_groups": 1, "plugin_namespace": b"edgeseg"}
    assert art.extra["export"]["route"] == "plugin"


def test_an_unknown_route_names_the_choices(block, tmp_path):
    from edgeseg.errors import InputError

    with pytest.raises(InputError, match="route: got 'fast', expected one of auto, native, decomposed, plugin"):
        _export(block, tmp_path, "fast")


@pytest.mark.slow
def test_deeplabv3_dcn_cli_export_decomposed_matches_pytorch_on_hc18_and_builds(tmp_path, hc18_dir, capsys):
    from edgeseg.cli import main
    from edgeseg.export.check import parity_report
    from edgeseg.models import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("deeplabv3_dcn", num_classes=2, in_channels=1, width=16, aspp_channels=32).eval()
    ckpt = tmp_path / "dcn.safetensors"
    save_checkpoint(model, ckpt, Artifact(path=ckpt, classes=["background", "head"],
                                          preprocess=Preprocess(size=(64, 64), **GRAY)))
    assert main(["export", str(ckpt), "-o", str(tmp_path / "out"), "--route", "decomposed"]) == 0
    assert "(route decomposed)" in capsys.readouterr().out
    onnx_path = tmp_path / "out" / "dcn.onnx"
    report = parity_report(onnx_path, images=hc18_dir / "images", limit=4)
    assert report.max_abs <= 1e-4, report.text()
    seconds, size = build_rtx(onnx_path, {"input": ((1, 1, 64, 64), (1, 1, 64, 64), (2, 1, 128, 128))})
    assert size > 0
