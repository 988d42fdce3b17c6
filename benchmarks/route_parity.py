"""Parity of the ``decomposed`` export route with PyTorch on real HC18 frames, for the four models that need it
on TensorRT-RTX (deeplabv3_dcn, deconvnet, deeplabv3_crf, maskrcnn). Default model configurations, random
weights (seed 0), gray input; ONNX Runtime runs the graph, the after-engine stage finishes it where the
route splits the model (the CRF; Mask R-CNN's post-processing graph). Prints one JSON line per model.

    python benchmarks/route_parity.py                           # all four at 256x256, 4 frames
    python benchmarks/route_parity.py --models deconvnet --size 160 224
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HC18 = REPO.parent / "shared" / "data" / "hc18" / "images"
MODELS = ("deeplabv3_dcn", "deconvnet", "deeplabv3_crf", "maskrcnn")


def frames(count: int, size: tuple[int, int]) -> np.ndarray:
    import cv2

    files = sorted(HC18.glob("*_HC.png"))[:count]
    images = [cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), size[::-1], interpolation=cv2.INTER_AREA)
              for f in files]
    return ((np.stack(images)[:, None].astype(np.float32) / 255.0) - 0.5) / 0.25


def one(name: str, size: tuple[int, int], count: int, folder: Path) -> dict:
    import onnxruntime as ort
    import torch

    from edgeseg.artifact import Artifact, Preprocess
    from edgeseg.export import to_onnx
    from edgeseg.models import create_model

    torch.manual_seed(0)
    kwargs = {"mean": [0.5], "std": [0.25]} if name == "deeplabv3_crf" else {}
    model = create_model(name, num_classes=2, in_channels=1, **kwargs).eval()
    artifact = Artifact(path=folder / f"{name}.safetensors", model=name,
                        model_kwargs={"num_classes": 2, "in_channels": 1, **kwargs}, classes=["background", "head"],
                        preprocess=Preprocess(size=size, color="gray", mean=[0.5], std=[0.25]))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = to_onnx(model, artifact, folder / f"{name}.onnx", route="decomposed")
    export_s = time.perf_counter() - start
    session = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    stage = art.extra["export"].get("after_engine")
    errors = []
    for x in frames(count, size):
        x = x[None]
        outputs = session.run(None, {"input": x})
        with torch.no_grad():
            if name == "maskrcnn":
                from edgeseg.models.maskrcnn.export import MaskRCNNDetections, run_after_engine

                want = [t.numpy() for t in MaskRCNNDetections(model)(torch.from_numpy(x))]
                got = run_after_engine(stage, *outputs, folder=folder)
                same = got[0].shape == want[0].shape
                errors.append(max(float(np.abs(g - w).max(initial=0.0)) for g, w in zip(got, want)) if same else None)
                continue
            want = model(torch.from_numpy(x)).numpy()
        got = outputs[0]
        if stage:
            from edgeseg.ops.crf_rnn import run_after_engine

            got = run_after_engine(stage, got, x)
        errors.append(float(np.abs(got - want).max()))
    return {"model": name, "size": list(size), "frames": count, "export_s": round(export_s, 1),
            "shapes": art.extra["export"].get("shapes"), "max_abs_per_frame": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--size", nargs=2, type=int, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            print(json.dumps(one(name, tuple(args.size), args.frames, Path(folder))), flush=True)


if __name__ == "__main__":
    main()
