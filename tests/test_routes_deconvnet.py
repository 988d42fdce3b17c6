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
