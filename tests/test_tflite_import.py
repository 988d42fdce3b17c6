"""The TFLite importer: op-by-op parity with LiteRT on small .tflite files built here, layout/padding rules
against independent references, and clear errors. None of these needs the MediaPipe model."""

from __future__ import annotations

import numpy as np
import pytest

tflite = pytest.importorskip("tflite")
flatbuffers = pytest.importorskip("flatbuffers")
torch = pytest.importorskip("torch")

from edgeseg.errors import ArtifactError
from edgeseg.tflite.convert import (
    UnsupportedOperatorError,
    conv_weight_to_torch,
    depthwise_weight_to_torch,
    graph_from_tflite,
    same_padding,
)
from edgeseg.tflite.graph_model import TfliteGraph
from edgeseg.tflite.reader import read_tflite

F32, F16, I32 = 0, 1, 2
SAME, VALID = 0, 1


# --- a minimal .tflite writer (flatbuffers + the tflite schema builders) -------------------------------
class TinyModel:
    """Builds a single-subgraph .tflite: tensors, constant buffers, builtin or custom operators."""

    def __init__(self):
        self.tensors: list[tuple[list[int], int, bytes | None]] = []
        self.ops: list[tuple[tuple, list[int], list[int], str | None, dict, bytes]] = []

    def tensor(self, shape, dtype=F32, data: np.ndarray | None = None) -> int:
        self.tensors.append((list(shape), dtype, None if data is None else np.ascontiguousarray(data).tobytes()))
        return len(self.tensors) - 1

    def const(self, value, dtype=F32) -> int:
        value = np.asarray(value, {F32: np.float32, F16: np.float16, I32: np.int32}[dtype])
        return self.tensor(value.shape, dtype, value)

    def op(self, code, inputs, outputs, options: str | None = None, custom_options: bytes = b"", **fields):
        self.ops.append((code, inputs, outputs, options, fields, custom_options))
        return outputs[0]

    def build(self, inputs, outputs) -> bytes:
        b = flatbuffers.Builder(1024)
        codes = sorted({op[0] for op in self.ops}, key=str)
        buffers, tensor_offsets = [self._buffer(b, None)], []
        for shape, dtype, data in self.tensors:
            buf_index = 0
            if data is not None:
                buffers.append(self._buffer(b, data))
                buf_index = len(buffers) - 1
            shape_vec = b.CreateNumpyVector(np.asarray(shape, np.int32))
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape_vec)
            tflite.TensorAddType(b, dtype)
            tflite.TensorAddBuffer(b, buf_index)
            tensor_offsets.append(tflite.TensorEnd(b))
        op_offsets = [self._operator(b, codes, *op) for op in self.ops]
        code_offsets = []
        for code in codes:
            custom = b.CreateString(code) if isinstance(code, str) else None
            tflite.OperatorCodeStart(b)
            builtin = 32 if isinstance(code, str) else code
            tflite.OperatorCodeAddBuiltinCode(b, builtin)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
            tflite.OperatorCodeAddVersion(b, 1)
            if custom is not None:
                tflite.OperatorCodeAddCustomCode(b, custom)
            code_offsets.append(tflite.OperatorCodeEnd(b))
        tensors_vec, ops_vec = self._table_vector(b, tensor_offsets), self._table_vector(b, op_offsets)
        in_vec, out_vec = b.CreateNumpyVector(np.asarray(inputs, np.int32)), b.CreateNumpyVector(np.asarray(outputs, np.int32))
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, in_vec)
        tflite.SubGraphAddOutputs(b, out_vec)
        tflite.SubGraphAddOperators(b, ops_vec)
        subgraph = tflite.SubGraphEnd(b)
        subgraphs_vec, codes_vec = self._table_vector(b, [subgraph]), self._table_vector(b, code_offsets)
        buffers_vec = self._table_vector(b, buffers)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_vec)
        tflite.ModelAddSubgraphs(b, subgraphs_vec)
        tflite.ModelAddBuffers(b, buffers_vec)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _table_vector(b, offsets):
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    @staticmethod
    def _buffer(b, data):
        vec = None
        if data is not None:
            b.StartVector(1, len(data), 16)
            b.head = b.head - len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector()
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        return tflite.BufferEnd(b)

    @staticmethod
    def _operator(b, codes, code, inputs, outputs, options, fields, custom_options):
        from tflite.BuiltinOptions import BuiltinOptions

        opts = None
        if options:
            getattr(tflite, f"{options}Start")(b)
            for key, value in fields.items():
                getattr(tflite, f"{options}Add{key}")(b, value)
            opts = getattr(tflite, f"{options}End")(b)
        custom_vec = b.CreateNumpyVector(np.frombuffer(custom_options, np.uint8)) if custom_options else None
        in_vec, out_vec = b.CreateNumpyVector(np.asarray(inputs, np.int32)), b.CreateNumpyVector(np.asarray(outputs, np.int32))
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(code))
        tflite.OperatorAddInputs(b, in_vec)
        tflite.OperatorAddOutputs(b, out_vec)
        if opts is not None:
            tflite.OperatorAddBuiltinOptionsType(b, getattr(BuiltinOptions, options))
            tflite.OperatorAddBuiltinOptions(b, opts)
        if custom_vec is not None:
            tflite.OperatorAddCustomOptions(b, custom_vec)
        return tflite.OperatorEnd(b)


# Builtin operator codes (tflite schema).
ADD, AVERAGE_POOL_2D, CONCATENATION, CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE = 0, 1, 2, 3, 4, 6
LOGISTIC, MAX_POOL_2D, MUL, RELU, RELU6, RESIZE_BILINEAR, TANH, PAD, MEAN, SUB = 14, 17, 18, 19, 21, 23, 28, 34, 40, 41
TRANSPOSE_CONV, RESIZE_NEAREST_NEIGHBOR, HARD_SWISH, SOFTMAX, FLOOR = 67, 97, 117, 25, 8

RNG = np.random.default_rng(0)


def _rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32) * 0.5


def _litert_and_ours(tmp_path, model: TinyModel, inputs, outputs, x: np.ndarray):
    """Run the built model in LiteRT and through our importer on the same NHWC input; both as NHWC."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    path = tmp_path / "m.tflite"
    path.write_bytes(model.build(inputs, outputs))
    interp = litert.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    ref = interp.get_tensor(interp.get_output_details()[0]["index"])
    graph, weights = graph_from_tflite(read_tflite(path))
    module = TfliteGraph(graph).eval()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    with torch.no_grad():
        ours = module(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    return ref, ours


def _conv_model(kind, in_shape, out_ch, k, stride, padding, act=0, dilation=1, fp16=False):
    m = TinyModel()
    n, h, w, c = in_shape
    x = m.tensor(in_shape)
    if kind == "conv":
        wt = _rand(out_ch, k, k, c)
        code, options = CONV_2D, "Conv2DOptions"
    else:
        wt = _rand(1, k, k, out_ch)
        code, options = DEPTHWISE_CONV_2D, "DepthwiseConv2DOptions"
    bias = _rand(out_ch)
    if fp16:  # float16 weights behind DEQUANTIZE, as MediaPipe ships them
        w16, b16 = m.const(wt, F16), m.const(bias, F16)
        wt_t, bias_t = m.tensor(wt.shape), m.tensor(bias.shape)
        m.op(DEQUANTIZE, [w16], [wt_t])
        m.op(DEQUANTIZE, [b16], [bias_t])
    else:
        wt_t, bias_t = m.const(wt), m.const(bias)
    eff = (k - 1) * dilation + 1
    oh = -(-h // stride) if padding == SAME else (h - eff) // stride + 1
    ow = -(-w // stride) if padding == SAME else (w - eff) // stride + 1
    y = m.tensor([n, oh, ow, out_ch])
    fields = {"Padding": padding, "StrideH": stride, "StrideW": stride, "FusedActivationFunction": act,
                  "DilationHFactor": dilation, "DilationWFactor": dilation}
    if kind == "depthwise":
        fields["DepthMultiplier"] = out_ch // c
    m.op(code, [x, wt_t, bias_t], [y], options, **fields)
    return m, [x], [y]


@pytest.mark.parametrize("kind, in_shape, out_ch, k, stride, padding, act, dilation", [
    ("conv", (1, 10, 9, 3), 4, 3, 2, SAME, 0, 1),       # even/odd sizes: TF pads 0/1 and 1/1
    ("conv", (1, 11, 8, 3), 5, 4, 1, SAME, 3, 1),       # even kernel: extra pixel after, fused RELU6
    ("conv", (1, 9, 9, 2), 3, 5, 3, SAME, 1, 1),        # stride 3
    ("conv", (1, 12, 12, 2), 3, 3, 1, SAME, 0, 2),      # dilation 2
    ("conv", (1, 9, 10, 3), 4, 3, 2, VALID, 2, 1),      # VALID, fused RELU_N1_TO_1
    ("depthwise", (1, 10, 9, 4), 4, 3, 2, SAME, 0, 1),
    ("depthwise", (1, 8, 7, 3), 6, 5, 1, SAME, 1, 1),   # depth multiplier 2
])
def test_conv_matches_litert(tmp_path, kind, in_shape, out_ch, k, stride, padding, act, dilation):
    m, ins, outs = _conv_model(kind, in_shape, out_ch, k, stride, padding, act, dilation)
    x = _rand(*in_shape)
    ref, ours = _litert_and_ours(tmp_path, m, ins, outs, x)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-5, rtol=1e-4)


def test_float16_weights_are_dequantized(tmp_path):
    m, ins, outs = _conv_model("conv", (1, 8, 8, 3), 4, 3, 1, SAME, fp16=True)
    model = read_tflite(_write(tmp_path, m, ins, outs))
    assert "DEQUANTIZE" not in model.op_counts()  # folded into float32 constants
    ref, ours = _litert_and_ours(tmp_path, m, ins, outs, _rand(1, 8, 8, 3))
    np.testing.assert_allclose(ours, ref, atol=2e-5, rtol=1e-4)


def _write(tmp_path, m, ins, outs):
    path = tmp_path / "w.tflite"
    path.write_bytes(m.build(ins, outs))
    return path


def _transpose_conv_model(in_hw, out_hw, k, stride, padding, custom=False, weights=None):
    m = TinyModel()
    x = m.tensor([1, *in_hw, 3])
    wt, bias = weights if weights is not None else (_rand(2, k, k, 3), _rand(2))
    y = m.tensor([1, *out_hw, 2])
    if custom:  # MediaPipe's Convolution2DTransposeBias: padding code 1 = SAME, 2 = VALID
        raw = np.asarray([1 if padding == SAME else 2, stride, stride], np.int32).tobytes()
        m.op("Convolution2DTransposeBias", [x, m.const(wt), m.const(bias)], [y], custom_options=raw)
    else:
        shape = m.const(np.asarray([1, *out_hw, 2]), I32)
        m.op(TRANSPOSE_CONV, [shape, m.const(wt), x, m.const(bias)], [y], "TransposeConvOptions",
             Padding=padding, StrideH=stride, StrideW=stride)
    return m, [x], [y]


@pytest.mark.parametrize("in_hw, out_hw, k, stride, padding", [
    ((5, 4), (10, 8), 3, 2, SAME),   # SAME crops the odd extra pixel: TF keeps the top/left one
    ((4, 4), (8, 8), 2, 2, SAME),    # the MediaPipe head's shape (2x2, stride 2)
    ((4, 3), (9, 7), 3, 2, VALID),
])
def test_transpose_conv_matches_litert(tmp_path, in_hw, out_hw, k, stride, padding):
    m, ins, outs = _transpose_conv_model(in_hw, out_hw, k, stride, padding)
    ref, ours = _litert_and_ours(tmp_path, m, ins, outs, _rand(1, *in_hw, 3))
    np.testing.assert_allclose(ours, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("padding", [SAME, VALID])
def test_mediapipe_transpose_conv_bias_equals_builtin_transpose_conv(tmp_path, padding):
    # LiteRT has no kernel for MediaPipe's custom op; its semantics are TRANSPOSE_CONV + bias, and the
    # builtin is checked against LiteRT above. Same weights through both import paths must agree.
    out_hw = (10, 8) if padding == SAME else (11, 9)
    filters = (_rand(2, 3, 3, 3), _rand(2))
    results = []
    for custom in (False, True):
        m, ins, outs = _transpose_conv_model((5, 4), out_hw, 3, 2, padding, custom=custom, weights=filters)
        graph, weights = graph_from_tflite(read_tflite(_write(tmp_path, m, ins, outs)))
        module = TfliteGraph(graph).eval()
        module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        results.append(module(torch.ones(1, 3, 5, 4)).detach().numpy())
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("code, options, fields, k, stride, padding", [
    (AVERAGE_POOL_2D, "Pool2DOptions", {}, 2, 2, SAME),   # padded cells excluded from the average
    (AVERAGE_POOL_2D, "Pool2DOptions", {}, 3, 2, SAME),
    (AVERAGE_POOL_2D, "Pool2DOptions", {}, 3, 2, VALID),
    (MAX_POOL_2D, "Pool2DOptions", {}, 3, 1, SAME),
    (MAX_POOL_2D, "Pool2DOptions", {"FusedActivationFunction": 1}, 2, 2, SAME),
])
def test_pooling_matches_litert(tmp_path, code, options, fields, k, stride, padding):
    m = TinyModel()
    h, w = 9, 8
    x = m.tensor([1, h, w, 3])
    oh = -(-h // stride) if padding == SAME else (h - k) // stride + 1
    ow = -(-w // stride) if padding == SAME else (w - k) // stride + 1
    y = m.tensor([1, oh, ow, 3])
    m.op(code, [x], [y], options, Padding=padding, StrideH=stride, StrideW=stride, FilterHeight=k,
         FilterWidth=k, **fields)
    ref, ours = _litert_and_ours(tmp_path, m, [x], [y], _rand(1, h, w, 3))
    np.testing.assert_allclose(ours, ref, atol=2e-6)


@pytest.mark.parametrize("code, align, half, in_hw, out_hw", [
    (RESIZE_BILINEAR, False, True, (5, 4), (10, 8)),     # the selfie models' mode
    (RESIZE_BILINEAR, False, True, (4, 6), (7, 5)),      # non-integer scale, shrink
    (RESIZE_BILINEAR, True, False, (5, 4), (9, 7)),
    (RESIZE_BILINEAR, False, False, (5, 4), (8, 11)),    # legacy TF: asymmetric coordinates
    (RESIZE_NEAREST_NEIGHBOR, False, False, (5, 4), (8, 11)),
    (RESIZE_NEAREST_NEIGHBOR, False, True, (5, 4), (8, 11)),
    (RESIZE_NEAREST_NEIGHBOR, True, False, (5, 4), (8, 11)),
])
def test_resize_flags_match_litert(tmp_path, code, align, half, in_hw, out_hw):
    m = TinyModel()
    x = m.tensor([1, *in_hw, 2])
    size = m.const(np.asarray(out_hw), I32)
    y = m.tensor([1, *out_hw, 2])
    options = "ResizeBilinearOptions" if code == RESIZE_BILINEAR else "ResizeNearestNeighborOptions"
    m.op(code, [x, size], [y], options, AlignCorners=align, HalfPixelCenters=half)
    ref, ours = _litert_and_ours(tmp_path, m, [x], [y], _rand(1, *in_hw, 2))
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_squeeze_excitation_chain_matches_litert(tmp_path):
    # MEAN -> conv 1x1 -> LOGISTIC -> MUL (broadcast) -> ADD const -> HARD_SWISH -> SUB -> CONCAT -> PAD
    m = TinyModel()
    x = m.tensor([1, 6, 5, 4])
    pooled = m.op(MEAN, [x, m.const(np.asarray([1, 2]), I32)], [m.tensor([1, 1, 1, 4])], "ReducerOptions",
                  KeepDims=True)
    fc = m.tensor([1, 1, 1, 4])
    m.op(CONV_2D, [pooled, m.const(_rand(4, 1, 1, 4)), m.const(_rand(4))], [fc], "Conv2DOptions",
         Padding=VALID, StrideH=1, StrideW=1, DilationHFactor=1, DilationWFactor=1)
    gate = m.op(LOGISTIC, [fc], [m.tensor([1, 1, 1, 4])])
    scaled = m.op(MUL, [x, gate], [m.tensor([1, 6, 5, 4])], "MulOptions")
    shifted = m.op(ADD, [m.const(_rand(4)), scaled], [m.tensor([1, 6, 5, 4])], "AddOptions",
                   FusedActivationFunction=1)
    hs = m.op(HARD_SWISH, [shifted], [m.tensor([1, 6, 5, 4])])
    diff = m.op(SUB, [hs, x], [m.tensor([1, 6, 5, 4])], "SubOptions")
    cat = m.op(CONCATENATION, [diff, x], [m.tensor([1, 6, 5, 8])], "ConcatenationOptions", Axis=-1)
    pads = m.const(np.asarray([[0, 0], [1, 2], [0, 1], [0, 0]]), I32)
    out = m.op(PAD, [cat, pads], [m.tensor([1, 9, 6, 8])])
    ref, ours = _litert_and_ours(tmp_path, m, [x], [out], _rand(1, 6, 5, 4) * 4)
    np.testing.assert_allclose(ours, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_softmax_over_channels_matches_litert(tmp_path, beta):
    m = TinyModel()
    x = m.tensor([1, 5, 4, 6])
    y = m.op(SOFTMAX, [x], [m.tensor([1, 5, 4, 6])], "SoftmaxOptions", Beta=beta)
    ref, ours = _litert_and_ours(tmp_path, m, [x], [y], _rand(1, 5, 4, 6) * 4)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_unsupported_operator_names_operator_and_index(tmp_path):
    m = TinyModel()
    x = m.tensor([1, 4, 4, 3])
    r = m.op(RELU, [x], [m.tensor([1, 4, 4, 3])])
    y = m.op(FLOOR, [r], [m.tensor([1, 4, 4, 3])])
    with pytest.raises(UnsupportedOperatorError, match=r"operator FLOOR at index 1"):
        graph_from_tflite(read_tflite(_write(tmp_path, m, [x], [y])))


def test_fused_tanh_is_rejected_not_guessed(tmp_path):
    # LiteRT's conv kernels ignore a fused TANH; the importer refuses it instead of picking a meaning.
    m, ins, outs = _conv_model("conv", (1, 6, 6, 3), 4, 3, 1, SAME, act=4)
    with pytest.raises(UnsupportedOperatorError, match=r"CONV_2D at index 0.*fused activation code 4"):
        graph_from_tflite(read_tflite(_write(tmp_path, m, ins, outs)))


def test_not_a_tflite_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError, match="not a TFLite flatbuffer"):
        read_tflite(path)


# --- layout and padding rules against independent references ----------------------------------------
@pytest.mark.parametrize("in_size, kernel, stride, dilation, expected", [
    (256, 3, 2, 1, (0, 1)),   # even input, stride 2: TF pads only at the bottom/right
    (255, 3, 2, 1, (1, 1)),
    (10, 4, 1, 1, (1, 2)),    # even kernel: the odd pixel goes after
    (7, 1, 2, 1, (0, 0)),
    (8, 3, 1, 2, (2, 2)),     # dilation 2: effective kernel 5
    (5, 5, 3, 1, (1, 2)),     # out = 2: (2 - 1) * 3 + 5 - 5 = 3 -> 1 before, 2 after
])
def test_same_padding_is_tensorflows(in_size, kernel, stride, dilation, expected):
    assert same_padding(in_size, kernel, stride, dilation) == expected


def _nhwc_conv_reference(x, w, stride, pads, groups=1):
    """Direct NHWC convolution with TF filters (O, kh, kw, I/groups): the definition, in loops over outputs."""
    top, bottom, left, right = pads
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    n, h, wd, _c = x.shape
    o, kh, kw, ig = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, o), np.float64)
    per_group = o // groups
    for oc in range(o):
        g = oc // per_group
        for i in range(oh):
            for j in range(ow):
                patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, g * ig:(g + 1) * ig]
                out[:, i, j, oc] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return out


def test_conv_weight_layout_ohwi_to_oihw():
    x, w = _rand(1, 7, 6, 3), _rand(4, 3, 3, 3)
    pads = (*same_padding(7, 3, 2), *same_padding(6, 3, 2))
    ref = _nhwc_conv_reference(x, w, 2, pads)
    xt = torch.nn.functional.pad(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), (pads[2], pads[3], pads[0], pads[1]))
    ours = torch.nn.functional.conv2d(xt, torch.from_numpy(conv_weight_to_torch(w)), stride=2)
    np.testing.assert_allclose(ours.numpy().transpose(0, 2, 3, 1), ref, atol=1e-5)


def test_depthwise_weight_layout_with_multiplier():
    c, mult = 3, 2
    x, w = _rand(1, 6, 6, c), _rand(1, 3, 3, c * mult)
    # TF depthwise: output channel c*mult + m reads input channel c -> grouped conv reference with groups=c
    grouped = np.stack([w[0, :, :, oc][:, :, None] for oc in range(c * mult)])  # (C*M, kh, kw, 1)
    ref = _nhwc_conv_reference(x, grouped, 1, (1, 1, 1, 1), groups=c)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    ours = torch.nn.functional.conv2d(xt, torch.from_numpy(depthwise_weight_to_torch(w)), padding=1, groups=c)
    np.testing.assert_allclose(ours.numpy().transpose(0, 2, 3, 1), ref, atol=1e-5)


def _small_segmenter(tmp_path):
    """conv(stride 2) -> RELU6 -> resize x2 (half-pixel) -> conv 1x1 -> LOGISTIC: a one-channel mask model."""
    m = TinyModel()
    x = m.tensor([1, 16, 12, 3])
    h = m.tensor([1, 8, 6, 4])
    m.op(CONV_2D, [x, m.const(_rand(4, 3, 3, 3)), m.const(_rand(4))], [h], "Conv2DOptions", Padding=SAME,
         StrideH=2, StrideW=2, DilationHFactor=1, DilationWFactor=1, FusedActivationFunction=3)
    up = m.op(RESIZE_BILINEAR, [h, m.const(np.asarray([16, 12]), I32)], [m.tensor([1, 16, 12, 4])],
              "ResizeBilinearOptions", HalfPixelCenters=True)
    logits = m.op(CONV_2D, [up, m.const(_rand(1, 1, 1, 4)), m.const(_rand(1))], [m.tensor([1, 16, 12, 1])],
                  "Conv2DOptions", Padding=VALID, StrideH=1, StrideW=1, DilationHFactor=1, DilationWFactor=1)
    y = m.op(LOGISTIC, [logits], [m.tensor([1, 16, 12, 1])])
    return m, [x], [y]


def test_import_tflite_command_writes_checkpoint_and_onnx_that_match_litert(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edgeseg.artifact import Artifact
    from edgeseg.cli import main
    from edgeseg.models import load_checkpoint

    m, ins, outs = _small_segmenter(tmp_path)
    x = _rand(1, 16, 12, 3) + 0.5
    ref, _ = _litert_and_ours(tmp_path, m, ins, outs, x)
    src = tmp_path / "m.tflite"
    assert main(["import-tflite", str(src), "-o", str(tmp_path / "out"), "--classes", "background,person"]) == 0
    model, artifact = load_checkpoint(tmp_path / "out" / "m.safetensors")
    assert artifact.model == "tflite_graph" and artifact.output_kind == "probs"
    assert artifact.classes == ["background", "person"] and artifact.preprocess.color == "rgb"
    assert tuple(artifact.preprocess.size) == (16, 12) and artifact.preprocess.std == [1.0, 1.0, 1.0]
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(nchw)).numpy().transpose(0, 2, 3, 1), ref, atol=1e-5)
    onnx_path = tmp_path / "out" / "m.onnx"
    assert Artifact.load(onnx_path).output_kind == "probs"
    assert Artifact.load(onnx_path).inputs[0].shape == ["batch", 3, 16, 12]  # the build stage's exporter
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: nchw})[0]
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), ref, atol=1e-5)


def test_imported_graph_is_trainable(tmp_path):
    m, ins, outs = _small_segmenter(tmp_path)
    graph, weights = graph_from_tflite(read_tflite(_write(tmp_path, m, ins, outs)))
    module = TfliteGraph(graph)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    params = [p for p in module.parameters() if p.requires_grad]
    assert len(params) == 4  # two convs: weight + bias each
    target = torch.zeros(1, 1, 16, 12)
    loss = torch.nn.functional.binary_cross_entropy(module(torch.rand(1, 3, 16, 12)), target)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in params)


def test_plain_onnx_export_fallback_matches_torch(tmp_path):
    # import_tflite's default exporter (the CLI passes edgeseg.export's): plain dynamo export, static batch 1
    ort = pytest.importorskip("onnxruntime")
    from edgeseg.artifact import Artifact
    from edgeseg.tflite.importer import artifact_for_graph, onnx_from_module

    m, ins, outs = _small_segmenter(tmp_path)
    graph, weights = graph_from_tflite(read_tflite(_write(tmp_path, m, ins, outs)))
    module = TfliteGraph(graph).eval()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    artifact = artifact_for_graph(tmp_path / "m.safetensors", graph, classes=["background", "person"])
    path = onnx_from_module(module, artifact, tmp_path / "plain.onnx")
    sidecar = Artifact.load(path)
    assert sidecar.inputs[0].shape == [1, 3, 16, 12] and sidecar.output_kind == "probs"
    x = _rand(1, 3, 16, 12)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {sidecar.inputs[0].name: x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, module(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_library_import_takes_its_exporter_from_the_caller(tmp_path):
    """The library never imports edgeseg.export: without ``exporter`` the ONNX is the plain batch-1 export."""
    from edgeseg.artifact import Artifact
    from edgeseg.tflite.importer import import_tflite

    m, ins, outs = _small_segmenter(tmp_path)
    src = _write(tmp_path, m, ins, outs)
    plain = import_tflite(src, tmp_path / "plain", classes=["background", "person"])["onnx"]
    assert Artifact.load(plain).inputs[0].shape == [1, 3, 16, 12]
    calls = []

    def exporter(model, artifact, onnx_path):
        calls.append((artifact.model, onnx_path.name))
        return onnx_path

    paths = import_tflite(src, tmp_path / "given", name="g", classes=["background", "person"], exporter=exporter)
    assert calls == [("tflite_graph", "g.onnx")] and paths["onnx"] == tmp_path / "given" / "g.onnx"
