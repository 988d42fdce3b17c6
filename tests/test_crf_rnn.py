"""CRF-as-RNN: the windowed dense CRF as a trainable layer, exported as an edgeseg.DenseCRF ONNX node."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeseg.errors import InputError
from edgeseg.ops.crf import dense_crf
from edgeseg.ops.crf_rnn import CRFasRNN, mean_field_windowed_torch
from edgeseg.ops.onnx_translations import translation_table


def make_case(classes=3, size=(9, 11), channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, classes, *size, generator=g) * 1.5
    image = torch.randint(0, 256, (1, channels, *size), generator=g).float()
    return logits, image


def trained_looking_crf(classes=3, channels=3, window=5):
    crf = CRFasRNN(classes, channels=channels, window=window, iterations=4)
    with torch.no_grad():  # non-default, asymmetric values: the comparison checks every parameter's role
        crf.kernel_weights[:] = torch.tensor([2.0, 7.0])
        crf.compatibility[0, 1] = 2.0
        crf.compatibility[2, 0] = 0.5
    return crf


def numpy_dense_crf(crf, logits, image):
    hwc = image[0].permute(1, 2, 0).numpy().astype(np.uint8)
    return dense_crf(-logits[0].numpy(), hwc, unary="energy", **crf.dense_crf_params())


@pytest.mark.parametrize("channels, window", [(3, 5), (1, 3)])
def test_layer_is_the_windowed_dense_crf(channels, window):
    crf = trained_looking_crf(channels=channels, window=window)
    logits, image = make_case(channels=channels)
    got = crf(logits, image).exp()[0].detach().numpy()
    expected = numpy_dense_crf(crf, logits, image)
    np.testing.assert_allclose(got, expected, atol=5e-5)  # float32, different summation order
    assert np.abs(expected - torch.softmax(logits, 1)[0].numpy()).max() > 0.05  # the CRF did something


def test_gradients_are_correct_on_a_tiny_input():
    logits, image = make_case(classes=2, size=(3, 4), seed=1)
    logits = logits.double().requires_grad_()
    weights = torch.tensor([1.5, 4.0], dtype=torch.float64, requires_grad=True)
    compat = (1 - torch.eye(2, dtype=torch.float64)).requires_grad_()

    def layer(z, w, mu):
        return mean_field_windowed_torch(z, image.double(), w, mu, 2, 3, (3.0, 3.0), (20.0, 20.0), (13.0,) * 3)

    assert torch.autograd.gradcheck(layer, (logits, weights, compat), eps=1e-6, atol=1e-5)


def test_training_the_crf_parameters_lowers_the_loss():
    torch.manual_seed(0)
    size = (16, 16)
    truth = torch.zeros(1, *size, dtype=torch.long)
    truth[:, :, 8:] = 1
    image = (truth.float() * 180 + 30).unsqueeze(1).repeat(1, 3, 1, 1)
    logits = 1.0 * torch.nn.functional.one_hot(truth, 2).permute(0, 3, 1, 2).float() + torch.randn(1, 2, *size)
    crf = CRFasRNN(2, channels=3, window=5, iterations=3, compat_gaussian=0.5, compat_bilateral=0.5)
    optimizer = torch.optim.Adam(crf.parameters(), lr=0.1)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.nll_loss(crf(logits, image), truth)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert crf.kernel_weights.detach()[1] > 0.5  # it learned to trust the (clean) image more


def test_export_emits_the_dense_crf_node_with_the_learned_parameters():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    crf = trained_looking_crf().eval()
    logits, image = make_case()
    program = torch.onnx.export(crf, (logits, image), dynamo=True, custom_translation_table=translation_table())
    model = program.model_proto
    onnx.checker.check_model(model, full_check=True)  # passes only with the registered edgeseg.DenseCRF schema
    assert [n.op_type for n in model.graph.node] == ["Softmax", "Transpose", "DenseCRF", "Log"]
    node = model.graph.node[2]
    assert node.domain == "edgeseg"
    attrs = {a.name: a.s.decode() for a in node.attribute}
    assert attrs["plugin_namespace"] == "edgeseg"
    params = json.loads(attrs["params"])
    assert params == json.loads(json.dumps(crf.dense_crf_params()))
    # What a runtime does with the node (dense_crf on its inputs, log after) equals the layer.
    probs = torch.softmax(logits, 1)[0].numpy()
    node_out = np.log(dense_crf(probs, image[0].permute(1, 2, 0).numpy().astype(np.uint8), **params))
    np.testing.assert_allclose(node_out, crf(logits, image)[0].detach().numpy(), atol=1e-4)


def test_export_without_frozen_parameters_says_what_to_do():
    pytest.importorskip("onnxscript")
    crf = trained_looking_crf()  # still in training mode: nothing frozen
    with pytest.raises(torch.onnx.OnnxExporterError) as raised:  # torch.export wraps the layer's own error
        torch.onnx.export(crf, make_case(), dynamo=True, custom_translation_table=translation_table())
    assert isinstance(raised.value.__cause__, InputError) and "call model.eval()" in str(raised.value.__cause__)


def test_load_state_dict_refreezes_export_parameters():
    source = trained_looking_crf().eval()
    target = CRFasRNN(3, channels=3, window=5, iterations=4).eval()
    target.load_state_dict(source.state_dict())
    assert json.loads(target._frozen_params) == source.dense_crf_params()


def test_bad_shapes_are_named():
    crf = CRFasRNN(2, channels=3)
    with pytest.raises(InputError, match="logits"):
        crf(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(InputError, match="image"):
        crf(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(InputError, match="window"):
        CRFasRNN(2, window=4)


def test_deeplabv3_crf_is_in_the_zoo():
    from edgeseg.models import create_model, list_models

    assert "deeplabv3_crf" in list_models()
    model = create_model("deeplabv3_crf", num_classes=2, in_channels=1)
    out = model(torch.randn(1, 1, 64, 64))
    assert out.shape == (1, 2, 64, 64)
    assert torch.allclose(out.exp().sum(1), torch.ones(1, 64, 64), atol=1e-5)
