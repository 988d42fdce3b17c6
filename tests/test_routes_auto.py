"""``--route auto``: decomposed where TensorRT-RTX is the TensorRT library here, else native; and FCIS through it
(the full FCIS/Mask R-CNN graph cannot build on TensorRT-RTX: RoiAlign, then NonZero and NMS; the split can)."""

from __future__ import annotations

import types

import pytest

from edgeseg.errors import InputError, MissingDependencyError
from edgeseg.ops.routes import resolve_route


def test_explicit_routes_pass_through_and_unknown_ones_name_the_choices():
    assert resolve_route("decomposed") == ("decomposed", "--route decomposed")
    with pytest.raises(InputError, match="route: got 'fast', expected one of auto, native, decomposed, plugin"):
        resolve_route("fast")


def test_auto_picks_decomposed_with_the_real_tensorrt_rtx_here():
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("the standard tensorrt module is installed: auto picks it (native)")
    pytest.importorskip("tensorrt_rtx")
    route, why = resolve_route("auto")
    assert route == "decomposed" and why.startswith("auto: TensorRT-RTX 1.") and "NonMaxSuppression" in why


def test_auto_is_native_with_the_standard_library_or_none(monkeypatch):
    """Stand-ins for load_flavour: which library loads is what auto decides on (the real RTX case is above)."""
    import edgeseg.runtime.tensorrt_env as env

    monkeypatch.setattr(env, "load_flavour", lambda name="auto": types.SimpleNamespace(name="tensorrt", version="10.3.0"))
    assert resolve_route("auto") == ("native", "auto: TensorRT 10.3.0 loads here (native RoiAlign, DeformConv from 10.1)")

    def missing(name="auto"):
        raise MissingDependencyError("no TensorRT library imports here")

    monkeypatch.setattr(env, "load_flavour", missing)
    route, why = resolve_route("auto")
    assert route == "native" and "no TensorRT library loads here" in why


@pytest.mark.slow
def test_fcis_auto_route_is_the_split_matching_pytorch_on_hc18_and_building_on_tensorrt_rtx(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import onnx
    from _routes import assert_split_matches_pytorch

    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.export.onnx_export import to_onnx
    from edgeseg.models import create_model

    if resolve_route("auto")[0] != "decomposed":
        pytest.skip("auto resolves to native on this machine (no TensorRT-RTX, or the standard tensorrt loads)")
    torch.manual_seed(0)
    model = create_model("fcis", num_classes=2, in_channels=1, width=0.5, channels=16, k=3,
                         score_threshold=0.0).eval()  # random weights: keep low-scoring detections to compare
    artifact = Artifact(path=tmp_path / "f.safetensors", model="fcis", model_kwargs=dict(model.model_kwargs),
                        classes=["background", "head"],
                        preprocess=Preprocess(size=(64, 64), color="gray", mean=[0.5], std=[0.25]))
    art = to_onnx(model, artifact, tmp_path / "f.onnx", route="auto")
    assert art.extra["export"]["route"] == "decomposed" and "TensorRT-RTX" in art.extra["export"]["route_auto"]
    assert not {n.op_type for n in onnx.load(str(art.path)).graph.node} & {"RoiAlign", "NonZero", "NonMaxSuppression"}
    assert_split_matches_pytorch(art, model, tmp_path, (64, 64))
