"""RoIAlign export routes (GridSample form, explicit sampling_ratio) and the Mask R-CNN split for TensorRT-RTX."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from _routes import build_rtx, hc18_frames  # noqa: E402

from edgeseg.errors import InputError  # noqa: E402
from edgeseg.ops.roi import roi_align_grid_sample, roi_align_op  # noqa: E402
from edgeseg.ops.routes import export_route  # noqa: E402


def _rois(n: int, count: int, g, extent: float = 80.0):
    """Random boxes (batch index, x1, y1, x2, y2), some reaching past the image on every side."""
    b = torch.rand(count, 4, generator=g) * extent - 10
    b[:, 2:] = b[:, :2] + torch.rand(count, 2, generator=g) * extent / 2
    return torch.cat([torch.randint(0, n, (count, 1), generator=g).float(), b], 1)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
def test_grid_sample_form_equals_the_op(n, aligned, sampling_ratio):
    g = torch.Generator().manual_seed(sampling_ratio)
    x = torch.randn(n, 5, 12, 15, generator=g)
    rois = _rois(n, 9, g)
    want = torch.ops.edgeseg.roi_align(x, rois, 0.2, 7, 6, sampling_ratio, aligned)
    got = roi_align_grid_sample(x, rois, 0.2, 7, 6, sampling_ratio, aligned)
    assert float((got - want).abs().max()) <= 1e-5


def test_grid_sample_form_needs_a_fixed_sampling_ratio():
    with pytest.raises(InputError, match="sampling_ratio: got 0, expected > 0 for the decomposed RoIAlign route"):
        roi_align_grid_sample(torch.zeros(1, 2, 8, 8), torch.zeros(1, 5), 1.0, 2, 2, 0, True)


class Pool(torch.nn.Module):
    """A conv feature map pooled over given boxes, as the Mask R-CNN heads do (1/4 scale, 2x2 samples)."""

    def __init__(self, sampling_ratio: int = 2):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, stride=4, padding=1)
        self.sampling_ratio = sampling_ratio

    def forward(self, x, rois):
        return roi_align_op(self.conv(x), rois, 0.25, 7, 7, self.sampling_ratio, True)


def _export(module, example, path, route):
    from edgeseg.ops.onnx_translations import translation_table

    with export_route(route):
        program = torch.onnx.export(module, example, dynamo=True, opset_version=19, input_names=["input", "rois"],
                                    output_names=["pooled"], custom_translation_table=translation_table(),
                                    dynamic_shapes=({}, {0: torch.export.Dim("rois", min=1, max=512)}))
    program.save(str(path))
    return path


def test_decomposed_route_matches_pytorch_on_hc18_and_builds_on_tensorrt_rtx(tmp_path):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    module = Pool().eval()
    x = torch.from_numpy(hc18_frames(1, (64, 96)))
    g = torch.Generator().manual_seed(0)
    path = _export(module, (x, _rois(1, 6, g, 100.0)), tmp_path / "pool.onnx", "decomposed")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "GridSample" in ops and "RoiAlign" not in ops, ops
    rois = _rois(1, 11, g, 100.0)  # another box count than traced
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy(), "rois": rois.numpy()})[0]
    with torch.no_grad():
        want = module(x, rois).numpy()
    assert np.abs(got - want).max() <= 1e-4
    seconds, size = build_rtx(path, {"rois": ((1, 5), (16, 5), (128, 5))})
    assert size > 0


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_native_roialign_keeps_sampling_ratio_explicit_through_onnxslim(tmp_path, sampling_ratio):
    """NVIDIA's parser defaults a missing sampling_ratio to 1, ONNX to 0 (issue 17 item 11)."""
    import onnx
    from onnx import helper

    from edgeseg.export.onnx_export import _slim

    module = Pool(sampling_ratio).eval()
    example = (torch.zeros(1, 1, 32, 32), torch.tensor([[0.0, 1.0, 2.0, 20.0, 24.0]]))
    proto = _slim(onnx.load(str(_export(module, example, tmp_path / "pool.onnx", "native"))))
    nodes = [n for n in proto.graph.node if n.op_type == "RoiAlign"]
    assert len(nodes) == 1
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs.get("sampling_ratio") == sampling_ratio, attrs


def test_plugin_route_emits_the_edgeseg_roialign_node(tmp_path):
    import onnx
    from onnx import helper

    module = Pool(0).eval()
    example = (torch.zeros(1, 1, 32, 32), torch.tensor([[0.0, 1.0, 2.0, 20.0, 24.0]]))
    nodes = [n for n in onnx.load(str(_export(module, example, tmp_path / "p.onnx", "plugin"))).graph.node
             if n.op_type == "RoIAlign"]
    assert len(nodes) == 1 and nodes[0].domain == "edgeseg"
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs == {"pooled_h": 7, "pooled_w": 7, "spatial_scale": 0.25, "sampling_ratio": 0, "aligned": 1,
                     "plugin_namespace": b"edgeseg"}


@pytest.mark.slow
def test_maskrcnn_decomposed_is_an_engine_graph_plus_a_host_graph_matching_pytorch(tmp_path):
    import onnx
    from _routes import assert_split_matches_pytorch

    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.export.onnx_export import to_onnx
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("maskrcnn", num_classes=3, in_channels=1, width=0.5, channels=16).eval()
    artifact = Artifact(path=tmp_path / "m.safetensors", model="maskrcnn", model_kwargs=dict(model.model_kwargs),
                        classes=["background", "a", "b"],
                        preprocess=Preprocess(size=(128, 128), color="gray", mean=[0.5], std=[0.25]))
    art = to_onnx(model, artifact, tmp_path / "m.onnx", route="decomposed")
    stage = art.extra["export"]["after_engine"]
    assert art.extra["export"]["route"] == "decomposed" and stage["stage"] == "maskrcnn_post"
    engine_ops = {n.op_type for n in onnx.load(str(art.path)).graph.node}
    assert not engine_ops & {"NonZero", "NonMaxSuppression", "RoiAlign", "TopK"}, engine_ops
    assert_split_matches_pytorch(art, model, tmp_path, (128, 128))
