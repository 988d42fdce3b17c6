"""The ops agree with ONNX: ONNX's own node test cases for DeformConv and RoiAlign (generated from the
installed onnx package) pass through edgeseg's ops, and modules using the ops export with the dynamo
exporter and ``edgeseg.ops.onnx_translations`` to standard ONNX nodes that ONNX Runtime runs to within 1e-5."""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from edgeseg.ops import DeformConv2d, deform_conv2d, roi_align


@functools.cache
def _node_cases(op_type: str) -> list:
    """ONNX's backend node test cases for ``op_type`` (inputs, expected outputs and the node's attributes)."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():  # some unrelated case generators overflow casts on purpose
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    return [c for c in cases if c.model.graph.node[0].op_type == op_type]


def _attributes(case) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in case.model.graph.node[0].attribute}


def _assert_matches_case(case, inputs, got, expected):
    """Within the case's own tolerance of its stored output (ONNX rounds some to 4 decimals), and within
    1e-5 of ONNX's reference evaluator recomputing it at full precision."""
    from onnx.reference import ReferenceEvaluator

    np.testing.assert_allclose(got, expected, rtol=case.rtol, atol=case.atol, err_msg=f"{case.name}: stored output")
    (recomputed,) = ReferenceEvaluator(case.model).run(None, dict(zip(_graph_inputs(case), inputs)))
    np.testing.assert_allclose(got, recomputed, rtol=1e-5, atol=1e-6, err_msg=f"{case.name}: onnx.reference")


def _graph_inputs(case) -> list[str]:
    return [i.name for i in case.model.graph.input]


def _case_ids(op_type):
    return [c.name for c in _node_cases(op_type)]


@pytest.mark.parametrize("name", _case_ids("DeformConv"))
def test_onnx_deformconv_node_cases_pass_through_deform_conv2d(name):
    (case,) = [c for c in _node_cases("DeformConv") if c.name == name]
    attrs = _attributes(case)
    pads = attrs.get("pads", [0, 0, 0, 0])
    assert pads[:2] == pads[2:], "torchvision semantics pad symmetrically"
    # the node's inputs in schema order, "" where an optional one is skipped; data sets hold the given ones
    keys = [key for key, given in zip(["X", "W", "offset", "B", "mask"], case.model.graph.node[0].input) if given]
    for inputs, outputs in case.data_sets:
        t = {key: torch.from_numpy(np.asarray(v)) for key, v in zip(keys, inputs)}
        got = deform_conv2d(t["X"], t["offset"], t["W"], t.get("B"), stride=tuple(attrs.get("strides", [1, 1])),
                            padding=tuple(pads[:2]), dilation=tuple(attrs.get("dilations", [1, 1])),
                            mask=t.get("mask"))
        _assert_matches_case(case, inputs, got.numpy(), outputs[0])


@pytest.mark.parametrize("name", _case_ids("RoiAlign"))
def test_onnx_roialign_node_cases_pass_through_roi_align(name):
    (case,) = [c for c in _node_cases("RoiAlign") if c.name == name]
    attrs = _attributes(case)
    mode = attrs.get("mode", b"avg")
    if mode in (b"max", "max"):
        pytest.skip("mode='max' has no torchvision counterpart; edgeseg.ops.roi_align averages (mode='avg')")
    transform = attrs.get("coordinate_transformation_mode", b"half_pixel")
    aligned = {b"half_pixel": True, b"output_half_pixel": False}[transform]
    for (x, rois, batch_indices), (expected,) in case.data_sets:
        boxes = torch.from_numpy(np.concatenate([batch_indices[:, None].astype(rois.dtype), rois], 1))
        got = roi_align(torch.from_numpy(x), boxes, (attrs.get("output_height", 1), attrs.get("output_width", 1)),
                        spatial_scale=attrs.get("spatial_scale", 1.0), sampling_ratio=attrs.get("sampling_ratio", 0),
                        aligned=aligned)
        _assert_matches_case(case, (x, rois, batch_indices), got.numpy(), expected)


def test_node_cases_were_found():
    """The parametrized tests above must not pass vacuously."""
    assert len(_node_cases("DeformConv")) >= 4 and len(_node_cases("RoiAlign")) >= 2


class _DeformBlock(torch.nn.Module):
    """Offsets and mask predicted by a convolution, as in DCNv2; grouped, strided, dilated."""

    def __init__(self, with_mask: bool):
        super().__init__()
        self.with_mask = with_mask
        self.offsets = torch.nn.Conv2d(4, 3 * 2 * 9, 3, padding=1, stride=2)
        self.deform = DeformConv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=with_mask)

    def forward(self, x):
        predicted = self.offsets(x)
        offset = predicted[:, : 2 * 2 * 9] * 3.0  # 2 offset groups, large enough to leave the image
        mask = predicted[:, 2 * 2 * 9 :].sigmoid() if self.with_mask else None
        return self.deform(x, offset, mask)


class _RoIBlock(torch.nn.Module):
    def __init__(self, aligned: bool, sampling_ratio: int):
        super().__init__()
        self.aligned, self.sampling_ratio = aligned, sampling_ratio

    def forward(self, x, rois):
        return roi_align(x, rois, (3, 4), 0.5, self.sampling_ratio, self.aligned)


def _export_and_run(module, inputs, tmp_path, opset):
    from edgeseg.ops.onnx_translations import translation_table

    program = torch.onnx.export(module.eval(), inputs, dynamo=True, opset_version=opset,
                                custom_translation_table=translation_table("native"), verbose=False)
    path = tmp_path / "model.onnx"
    program.save(str(path))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    return model, session.run(None, feeds)[0]


@pytest.mark.parametrize("with_mask", [True, False], ids=["dcnv2", "dcnv1"])
def test_deform_conv2d_exports_to_onnx_deformconv(tmp_path, with_mask):
    torch.manual_seed(0)
    module, x = _DeformBlock(with_mask), torch.randn(2, 4, 13, 11)
    model, got = _export_and_run(module, (x,), tmp_path, opset=19)
    assert "DeformConv" in [n.op_type for n in model.graph.node]
    assert not [n for n in model.graph.node if n.domain not in ("", "ai.onnx")], "standard ops only"
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("aligned,sampling_ratio", [(True, -1), (False, -1), (True, 2), (False, 3)])
def test_roi_align_exports_to_onnx_roialign(tmp_path, aligned, sampling_ratio):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((2, 3, 10, 12)), dtype=torch.float32)
    xy = rng.uniform(-4, 22, (9, 2))
    rois = np.concatenate([rng.integers(0, 2, (9, 1)), xy, xy + rng.uniform(0.2, 14, (9, 2))], 1)
    rois = torch.tensor(rois, dtype=torch.float32)
    opset = 21 if aligned else 19  # the range ONNX Runtime 1.32 runs (see onnx_translations.MAX_ORT_OPSET)
    model, got = _export_and_run(_RoIBlock(aligned, sampling_ratio), (x, rois), tmp_path, opset=opset)
    assert [n.op_type for n in model.graph.node].count("RoiAlign") == 1
    want = roi_align(x, rois, (3, 4), 0.5, sampling_ratio, aligned).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
