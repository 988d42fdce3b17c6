"""DeconvNet's unpooling through standard ops: exact switches (ties included), ONNX parity, a TensorRT-RTX build."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from _routes import build_rtx, hc18_frames  # noqa: E402

from edgeseg.artifact import Artifact, Preprocess  # noqa: E402
from edgeseg.models.deconvnet import max_pool_with_indices, max_unpool, switch_unpool  # noqa: E402

GRAY = {"color": "gray", "mean": [0.5], "std": [0.25]}


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 9, 7), (1, 1, 3, 2)])
def test_switch_unpool_equals_index_unpooling_with_ties_and_odd_sizes(shape):
    g = torch.Generator().manual_seed(0)
    before = torch.randint(0, 3, shape, generator=g).float()  # three values: most windows hold ties
    before[0, 0, :2, :2] = 1.0  # one all-equal window: the value goes to its top-left
    pooled, indices = max_pool_with_indices(before)
    x = torch.randn(pooled.shape, generator=g)
    assert torch.equal(switch_unpool(x, before, pooled), max_unpool(x, indices, before))


class UnpoolNet(torch.nn.Module):
    """conv -> 2x2 pool -> conv -> unpool at the switches -> conv: DeconvNet's pattern at one level."""

    def __init__(self):
        super().__init__()
        self.down = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.mid = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.out = torch.nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        before = torch.relu(self.down(x))
        if torch.compiler.is_exporting():
            pooled = torch.nn.functional.max_pool2d(before, 2, 2)
            up = switch_unpool(self.mid(pooled), before, pooled)
        else:  # the PyTorch reference: indices from max_pool2d
            pooled, indices = max_pool_with_indices(before)
            up = max_unpool(self.mid(pooled), indices, before)
        return self.out(up)


def test_unpooling_exports_without_indices_matches_pytorch_on_hc18_and_builds_on_tensorrt_rtx(tmp_path):
    import onnx
    import onnxruntime as ort

    from edgeseg.export.onnx_export import to_onnx

    torch.manual_seed(0)
    model = UnpoolNet().eval()
    artifact = Artifact(path=tmp_path / "u.safetensors", classes=["a", "b"], preprocess=Preprocess(size=(32, 32), **GRAY))
    art = to_onnx(model, artifact, tmp_path / "u.onnx")
    graph = onnx.load(str(art.path)).graph
    assert all(len(n.output) == 1 for n in graph.node if n.op_type == "MaxPool")
    assert not {n.op_type for n in graph.node} & {"ScatterElements", "ScatterND", "MaxUnpool"}
    x = hc18_frames(2, (48, 63))  # an odd width: the last column is never a switch
    got = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-4
    seconds, size = build_rtx(art.path, {"input": ((1, 1, 8, 8), (2, 1, 48, 63), (4, 1, 128, 128))})
    assert size > 0


@pytest.mark.slow
def test_deconvnet_matches_pytorch_on_hc18_and_builds_on_tensorrt_rtx(tmp_path, hc18_dir):
    from edgeseg.export.check import parity_report
    from edgeseg.export.onnx_export import to_onnx
    from edgeseg.models import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("deconvnet", num_classes=2, in_channels=1, width=8).eval()
    ckpt = tmp_path / "deconvnet.safetensors"
    save_checkpoint(model, ckpt, Artifact(path=ckpt, classes=["background", "head"],
                                          preprocess=Preprocess(size=(64, 64), **GRAY)))
    art = to_onnx(model, Artifact.load(ckpt), tmp_path / "deconvnet.onnx", dynamic=False)  # one export: < 60 s
    report = parity_report(art.path, images=hc18_dir / "images", limit=4)
    assert report.max_abs <= 1e-4, report.text()
    seconds, size = build_rtx(art.path)  # static 1x1x64x64
    assert size > 0


def _window_switches(before: np.ndarray):
    """First-maximum position (0..3, row-major) of every 2x2/2 window of (N, C, H, W) and the windows (..., 4)."""
    n, c, height, width = before.shape
    h, w = height // 2, width // 2
    win = before[:, :, : 2 * h, : 2 * w].reshape(n, c, h, 2, w, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w, 4)
    return win.argmax(-1), win


@pytest.mark.slow
def test_deconvnet_onnx_differs_from_pytorch_only_where_a_switch_is_a_near_tie(tmp_path):
    """Issue 22 item 4, measured: ONNX Runtime (MLAS) and PyTorch (oneDNN) compute the encoder features in
    different summation orders, so they agree to ~1e-6, not bitwise; a 2x2 window whose two largest values are
    closer than that can switch elsewhere, moving one decoder value (up to 3e-3 at 256x256 on HC18 frames). Any
    switch rule is a discontinuous function of those values, so no rule removes this. What holds: PyTorch run
    with the switches ONNX Runtime chose matches it within 1e-4, and each switch that differs is a near-tie."""
    import onnx
    import onnxruntime as ort
    import torch.nn.functional as F

    from edgeseg.export.onnx_export import to_onnx
    from edgeseg.models import create_model
    from edgeseg.models.deconvnet import max_unpool

    torch.manual_seed(0)
    model = create_model("deconvnet", num_classes=2, in_channels=1, width=16).eval()
    artifact = Artifact(path=tmp_path / "d.safetensors", classes=["background", "head"],
                        preprocess=Preprocess(size=(160, 160), **GRAY))
    art = to_onnx(model, artifact, tmp_path / "d.onnx", dynamic=False)
    proto = onnx.load(str(art.path))
    producer = {out: n.op_type for n in proto.graph.node for out in n.output}
    befores = [n.input[0] for n in proto.graph.node if n.op_type == "MaxPool" and producer[n.input[0]] == "Relu"]
    assert len(befores) == 5  # the encoder's pools; switch_unpool's own MaxPool reads a Mul (rank * equal)
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in befores)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    differ = windows = 0
    for x in hc18_frames(4, (160, 160)):
        got, *ort_befores = session.run(None, {"input": x[None]})
        with torch.no_grad():  # the model's forward, with ONNX Runtime's switches in place of its own
            t, levels = torch.from_numpy(x[None]), []
            for block, ort_before in zip(model.down, ort_befores):
                before = block(t)
                t = F.max_pool2d(before, 2, 2)
                levels.append((before, ort_before))
            for block, (before, ort_before) in zip(model.up, reversed(levels)):
                k, _ = _window_switches(ort_before)
                h, w = k.shape[-2:]
                rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
                flat = (2 * rows + k // 2) * before.shape[-1] + 2 * cols + k % 2
                t = block(max_unpool(t, torch.from_numpy(flat.astype(np.int64)), before))
            forced = model.classifier(t).numpy()
        assert np.abs(got - forced).max() <= 1e-4  # measured 4e-8: the switches are the whole difference
        for before, ort_before in levels:
            mine, win = _window_switches(before.numpy())
            theirs, _ = _window_switches(ort_before)
            noise = float(np.abs(before.numpy() - ort_before).max())
            flipped = mine != theirs
            top2 = np.sort(win[flipped], -1)[:, -2:]
            assert np.all(top2[:, 1] - top2[:, 0] <= 2 * noise), "a switch differs by more than the rounding"
            differ, windows = differ + int(flipped.sum()), windows + flipped.size
    assert differ <= 1e-3 * windows, (differ, windows)
