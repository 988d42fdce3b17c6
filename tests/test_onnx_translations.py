"""edgeseg.ops.onnx_translations: the one home of the ops' ONNX side (issue 21 item 7). The translations' numbers
are checked where each op is exported (test_ops_onnx, test_nms, test_crf_rnn, test_routes_*); here: the tables per
route, the plugin-node schemas, importing without torch, and the deprecated paths that still resolve."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from edgeseg.errors import InputError


def test_the_plugin_contract_imports_without_torch_or_onnx():
    code = ("import sys; sys.modules['torch'] = sys.modules['onnx'] = sys.modules['onnxscript'] = None\n"
            "from edgeseg.ops.onnx_translations import PLUGIN_OPS, MIN_OPSET; print(sorted(PLUGIN_OPS), MIN_OPSET)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['DeformConv2d', 'DenseCRF', 'RoIAlign'] 19"


def test_the_route_picks_standard_onnx_or_plugin_nodes():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgeseg.ops import onnx_translations as home

    ops = torch.ops.edgeseg
    native, plugin = home.translation_table("native"), home.translation_table("plugin")
    assert native[ops.deform_conv2d.default] is home.deform_conv2d_to_onnx
    assert native[ops.roi_align.default] is home.roi_align_to_onnx
    assert plugin[ops.deform_conv2d.default] is home.deform_conv2d_to_plugin
    assert plugin[ops.roi_align.default] is home.roi_align_to_plugin
    for table in (native, plugin):  # NMS and the CRF node take one form on every route
        assert table[ops.nms.default] is home.nms_to_onnx and table[ops.crf_as_rnn.default] is home.crf_as_rnn_to_onnx
    with pytest.raises(InputError, match="route: got 'trt'"):
        home.translation_table("trt")


def _single_node_model(node, inputs, output, shape):
    from onnx import TensorProto, helper

    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("edgeseg", 1)])


def test_one_dense_crf_schema_params_optional_other_attributes_required():
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    from edgeseg.ops.onnx_translations import register_onnx_schemas

    register_onnx_schemas()
    crf_inputs = [("probs", [1, 2, 8, 8]), ("image", [1, 8, 8, 3])]
    for attrs in ({"params": '{"window": 5}'}, {}):  # without params ONNX Runtime's op uses dense_crf's defaults
        node = helper.make_node("DenseCRF", ["probs", "image"], ["refined"], domain="edgeseg", **attrs)
        onnx.checker.check_model(_single_node_model(node, crf_inputs, "refined", [1, 2, 8, 8]), full_check=True)
    node = helper.make_node("RoIAlign", ["feats", "rois"], ["pooled"], domain="edgeseg", pooled_h=7, spatial_scale=1.0,
                            sampling_ratio=0, aligned=1)  # no pooled_w
    with pytest.raises(onnx.checker.ValidationError, match="pooled_w"):
        onnx.checker.check_model(_single_node_model(node, [("feats", [1, 8, 32, 32]), ("rois", [4, 5])], "pooled",
                                                    [4, 8, 7, 7]))


def test_deprecated_paths_warn_and_resolve_to_the_home():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgeseg.ops import onnx_translations as home

    ops = torch.ops.edgeseg
    for path in ("edgeseg.export.op_translations", "edgeseg.plugins.tensorrt.onnx_nodes"):
        with pytest.warns(DeprecationWarning, match="edgeseg.ops.onnx_translations"):  # on import (again)
            importlib.reload(sys.modules[path]) if path in sys.modules else importlib.import_module(path)
    old = sys.modules["edgeseg.export.op_translations"]
    assert old.translation_table is home.translation_table and old.MIN_OPSET == home.MIN_OPSET
    assert old.CUSTOM_TRANSLATION_TABLE == {ops.deform_conv2d.default: home.deform_conv2d_to_onnx,
                                            ops.roi_align.default: home.roi_align_to_onnx}
    assert old.PLUGIN_TRANSLATION_TABLE == {ops.deform_conv2d.default: home.deform_conv2d_to_plugin,
                                            ops.roi_align.default: home.roi_align_to_plugin}
    assert sys.modules["edgeseg.plugins.tensorrt.onnx_nodes"].plugin_node is home.plugin_node
    crf_rnn = sys.modules["edgeseg.ops.crf_rnn"]  # (edgeseg.ops.nms.NMS_TRANSLATION went with its module, now ops.boxes)
    with pytest.warns(DeprecationWarning, match="edgeseg.ops.onnx_translations"):
        assert crf_rnn.crf_translation_table() == {ops.crf_as_rnn.default: home.crf_as_rnn_to_onnx}
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        crf_rnn.missing  # noqa: B018 - the module __getattr__ still refuses unknown names
