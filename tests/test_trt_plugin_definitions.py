"""Our tensorrt.plugin definitions against the rules tensorrt.plugin enforces when it registers them
(NVIDIA/TensorRT python/packaging/bindings_wheel/tensorrt/plugin/_validate.py), checked here without
TensorRT through a recording stand-in for the module: real annotations (not strings), tensors before
attributes, impl/autotune/aot_impl argument schemas, return annotations; plus the shape functions and
the AOT scalar arguments evaluated with plain integers against the kernels' own shape code and PTX."""

from __future__ import annotations

import importlib
import inspect
import sys
import types
import typing

import pytest

ATTR_TYPES = (int, float, bytes, bool, str)


def _stub_modules():
    trtp = types.ModuleType("tensorrt.plugin")
    registry: dict[str, dict[str, object]] = {}

    class TensorDesc:
        def __init__(self, shape_expr=None, dtype="float32"):
            self.shape_expr, self.dtype = shape_expr, dtype

        def like(self):
            return TensorDesc(self.shape_expr, self.dtype)

    class Tensor:
        pass

    class AutoTuneCombination:
        def __init__(self, types_, layouts="LINEAR", tactics=None):
            self.types, self.layouts = types_, layouts

    class KernelLaunchParams:
        pass

    class SymExprs:
        pass

    class SymIntExprs(SymExprs, tuple):
        @classmethod
        def from_tuple(cls, values):
            return cls(values)

    class ShapeExprs(tuple):
        @classmethod
        def from_tuple(cls, values):
            return cls(values)

        def numel(self):
            out = 1
            for v in self:
                out *= v
            return out

    def decorator(kind):
        def outer(name):
            def inner(fn):
                registry.setdefault(name, {})[kind] = fn
                return fn
            return inner
        return outer

    for kind in ("register", "impl", "autotune", "aot_impl"):
        setattr(trtp, kind, decorator(kind))
    trtp.TensorDesc, trtp.Tensor, trtp.AutoTuneCombination = TensorDesc, Tensor, AutoTuneCombination
    trtp.KernelLaunchParams, trtp.SymExprs, trtp.SymIntExprs, trtp.ShapeExprs = (
        KernelLaunchParams, SymExprs, SymIntExprs, ShapeExprs)
    trtp.SymInt32 = int
    trtp.cdiv = lambda a, b: -(-a // b)
    trt = types.ModuleType("tensorrt")
    trt.float16, trt.float32, trt.__version__ = "float16", "float32", "10.9.0.34"
    trt.plugin = trtp
    return trt, trtp, registry


@pytest.fixture
def plugins(monkeypatch):
    from edgeseg.runtime import tensorrt_env

    monkeypatch.setattr(tensorrt_env, "gpu_info", lambda device=0: tensorrt_env.GpuInfo("Orin (stand-in)", "8.7"))
    trt, trtp, registry = _stub_modules()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    modules = {}
    for name in ("deform_conv", "roi_align", "dense_crf"):
        full = f"edgeseg.plugins.tensorrt.{name}"
        monkeypatch.delitem(sys.modules, full, raising=False)
        modules[name] = importlib.import_module(full)
    yield trtp, registry, modules
    for name in modules:
        sys.modules.pop(f"edgeseg.plugins.tensorrt.{name}", None)


def _register_schema(trtp, fn):
    sig = inspect.signature(fn)
    tensors, attrs = [], {}
    for name, p in sig.parameters.items():
        assert not isinstance(p.annotation, str), f"{fn.__name__}.{name}: string annotation (from __future__?)"
        assert p.annotation is not inspect.Parameter.empty and p.default is inspect.Parameter.empty
        if isinstance(p.annotation, type) and issubclass(p.annotation, trtp.TensorDesc):
            assert not attrs, f"{fn.__name__}: tensor {name} after attributes"
            tensors.append(name)
        else:
            assert p.annotation in ATTR_TYPES, f"{fn.__name__}.{name}: {p.annotation} is not serializable"
            assert name not in ("outputs", "stream", "tactic")
            attrs[name] = p.annotation
    assert sig.return_annotation is trtp.TensorDesc or typing.get_origin(sig.return_annotation) is tuple
    return tensors, attrs


def _check_schema(fn, tensors, attrs, tail, element):
    sig = inspect.signature(fn)
    names = list(sig.parameters)
    used = [n for n in attrs if n in names]
    assert names == tensors + used + tail, f"{fn.__name__}: {names} != {tensors + used + tail}"
    for name in used:
        assert sig.parameters[name].annotation == attrs[name]
    outputs = sig.parameters["outputs"].annotation
    assert typing.get_origin(outputs) is tuple and all(issubclass(a, element) for a in typing.get_args(outputs))
    return sig


@pytest.mark.parametrize("op", ["deform_conv", "roi_align", "dense_crf"])
def test_definitions_follow_tensorrt_plugin_schema(plugins, op):
    trtp, registry, modules = plugins
    funcs = registry[modules[op].OP]
    assert modules[op].OP.startswith("edgeseg::")
    tensors, attrs = _register_schema(trtp, funcs["register"])
    sig = _check_schema(funcs["impl"], tensors, attrs, ["outputs", "stream"], trtp.Tensor)
    assert sig.return_annotation in (None, "None", inspect.Parameter.empty)
    sig = _check_schema(funcs["autotune"], tensors, attrs, ["outputs"], trtp.TensorDesc)
    ret = sig.return_annotation
    assert typing.get_origin(ret) is list and typing.get_args(ret) == (trtp.AutoTuneCombination,)
    if op != "dense_crf":
        assert "aot_impl" in funcs, "nvcc is present here, so the AOT implementation must register"
        sig = _check_schema(funcs["aot_impl"], tensors, attrs, ["outputs", "tactic"], trtp.TensorDesc)
        args = typing.get_args(sig.return_annotation)
        assert len(args) == 4 and issubclass(args[2], trtp.KernelLaunchParams) and issubclass(args[3], trtp.SymExprs)


def _ptx_params(source, entry):
    from edgeseg.plugins.common.build import compile_ptx

    ptx = compile_ptx(source, arch="sm_87").read_text()
    start = ptx.index(f".entry {entry}(")
    return ptx[start:ptx.index(")", start)].count(".param")


@pytest.mark.nvcc
def test_deform_conv_shape_and_aot_arguments_match_the_kernel(plugins):
    trtp, registry, modules = plugins
    from edgeseg.plugins.deform_conv import KERNEL_SOURCE, check_shapes

    funcs = registry[modules["deform_conv"].OP]
    shapes = dict(input=(2, 6, 9, 7), offset=(2, 2 * 2 * 9, 5, 4), mask=(2, 2 * 9, 5, 4), weight=(4, 3, 3, 3), bias=(4,))
    attrs = dict(stride_h=2, stride_w=2, pad_h=1, pad_w=2, dilation_h=1, dilation_w=2, groups=2, offset_groups=2)
    descs = {k: trtp.TensorDesc(trtp.ShapeExprs(v)) for k, v in shapes.items()}
    out = funcs["register"](**descs, **attrs)
    dims = check_shapes(shapes["input"], shapes["offset"], shapes["weight"], shapes["mask"], shapes["bias"],
                        (2, 2), (1, 2), (1, 2))
    n, _, _, _, co, ho, wo = dims[:7]
    assert tuple(out.shape_expr) == (n, co, ho, wo)
    name, ptx, launch, extra = funcs["aot_impl"](**descs, **attrs, outputs=(out,), tactic=0)
    assert name == "deform_conv_aot_f32" and f".entry {name}(" in ptx
    assert tuple(extra) == dims  # the 17 ints in the kernel's order
    assert _ptx_params(KERNEL_SOURCE, name) == 5 + len(extra) + 1
    assert launch.grid_x * launch.block_x >= n * co * ho * wo


@pytest.mark.nvcc
def test_roi_align_shape_and_aot_arguments_match_the_kernel(plugins):
    trtp, registry, modules = plugins
    from edgeseg.plugins.roi_align import KERNEL_SOURCE

    funcs = registry[modules["roi_align"].OP]
    inp, rois = trtp.TensorDesc(trtp.ShapeExprs((2, 8, 16, 12))), trtp.TensorDesc(trtp.ShapeExprs((5, 5)))
    attrs = dict(pooled_h=3, pooled_w=4, spatial_scale=0.25, sampling_ratio=0, aligned=1)
    out = funcs["register"](inp, rois, **attrs)
    assert tuple(out.shape_expr) == (5, 8, 3, 4)
    name, ptx, launch, extra = funcs["aot_impl"](inp, rois, **attrs, outputs=(out,), tactic=0)
    import numpy as np

    assert tuple(extra[:7]) == (2, 8, 16, 12, 5, 3, 4) and tuple(extra[8:]) == (0, 1)
    assert np.array([extra[7]], np.int32).view(np.float32)[0] == np.float32(0.25)
    assert _ptx_params(KERNEL_SOURCE, name) == 2 + len(extra) + 1


@pytest.mark.parametrize("op", ["deform_conv", "roi_align", "dense_crf"])
def test_onnx_node_contract_matches_the_plugin_definition(plugins, op):
    from edgeseg.ops.onnx_translations import PLUGIN_OPS

    trtp, registry, modules = plugins
    name = modules[op].OP.split("::")[1]
    tensors, attrs = _register_schema(trtp, registry[modules[op].OP]["register"])
    assert PLUGIN_OPS[name] == (tuple(tensors), attrs)


def test_plugin_nodes_pass_the_onnx_checker():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edgeseg.errors import InputError
    from edgeseg.ops.onnx_translations import plugin_node, register_onnx_schemas

    register_onnx_schemas()
    register_onnx_schemas()  # idempotent
    node = plugin_node("RoIAlign", ["feats", "rois"], ["pooled"], pooled_h=7, pooled_w=7, spatial_scale=1,
                       sampling_ratio=0, aligned=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 8, 32, 32]),
                                            helper.make_tensor_value_info("rois", TensorProto.FLOAT, [4, 5])],
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [4, 8, 7, 7])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgeseg", 1)])
    onnx.checker.check_model(model, full_check=True)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["plugin_namespace"] == b"edgeseg" and attrs["spatial_scale"] == 1.0 and node.domain == "edgeseg"
    with pytest.raises(InputError, match="pooled_w"):
        plugin_node("RoIAlign", ["f", "r"], ["o"], pooled_h=7, pooled_w=7.5, spatial_scale=1.0, sampling_ratio=0,
                    aligned=1)
    with pytest.raises(InputError, match="expected exactly"):
        plugin_node("DenseCRF", ["p", "i"], ["o"])
