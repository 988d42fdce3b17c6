"""Why TensorRT-RTX's parser says "ROIAlign plugin was not found" on a CPU-only machine although its registry
lists ROIAlign_TRT: not a name/version/namespace mismatch; the plugin's constructor asks CUDA for the device,
fails with no driver, the creator returns null and the parser reports the null as "not found"."""

from __future__ import annotations

import os

import pytest


def _roialign_model(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], output_height=7, output_width=7,
                            sampling_ratio=2, spatial_scale=0.25, coordinate_transformation_mode="half_pixel")
    graph = helper.make_graph([node], "roi", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16]),
                                              helper.make_tensor_value_info("rois", TensorProto.FLOAT, [3, 4]),
                                              helper.make_tensor_value_info("batch", TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 7, 7])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


def test_registered_roialign_plugin_fails_in_its_constructor_without_a_gpu(rtx, tmp_path):
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("a GPU is present: the ROIAlign_TRT constructor can reach CUDA here")
    trt = rtx

    from edgeseg.runtime.tensorrt_env import capturing_logger, log_text

    logger = capturing_logger(trt, echo_severity=-1)  # TensorRT keeps the first logger of the process
    mark = logger.mark()
    assert trt.init_libnvinfer_plugins(logger, "")
    registry = trt.get_plugin_registry()
    listed = {(c.name, c.plugin_version, c.plugin_namespace) for c in registry.all_creators}
    assert ("ROIAlign_TRT", "2", "") in listed  # registered: IPluginV3 version 2, default namespace
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert not parser.parse_from_file(str(_roialign_model(tmp_path / "roi.onnx")))
    assert "ROIAlign plugin was not found" in parser.get_error(0).desc()
    log = log_text(logger, worst=1, since=mark)
    assert "Cuda Error in ROIAlignV3" in log, log[-2000:]  # the constructor ran: the creator was found
