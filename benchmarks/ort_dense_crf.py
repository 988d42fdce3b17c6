"""edgeseg:DenseCRF in ONNX Runtime (the C custom-op library, plugins/ort_dense_crf) vs the PyTorch CRF layer.

One call = the CRF alone on one frame: ONNX Runtime runs a graph of the single DenseCRF node (probs, image),
PyTorch runs ``CRFasRNN.forward`` (logits, image) under inference_mode. deeplabv3_crf's CRF settings
(2 classes, 1 gray channel, window 7, 5 iterations, default kernel widths/weights). Both on one thread
(the C kernel is single-threaded; torch.set_num_threads(1), ORT intra_op_num_threads=1), calls interleaved,
median and p90 after warm-up. Also checks the two agree (max abs probability difference).

Run:  .venv/bin/python benchmarks/ort_dense_crf.py                 (~1 min on 2 busy cores)
      .venv/bin/python benchmarks/ort_dense_crf.py --sizes 64 256 512 --runs 30
Writes benchmarks/results/ort_dense_crf.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def node_session(params: str, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edgeseg.plugins.ort_dense_crf import library_path

    node = helper.make_node("DenseCRF", ["probs", "image"], ["refined"], domain="edgeseg", params=params)
    graph = helper.make_graph(
        [node], "crf",
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2, "H", "W"]),
         helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, "H", "W", 1])],
        [helper.make_tensor_value_info("refined", TensorProto.FLOAT, [1, 2, "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("edgeseg", 1)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.register_custom_ops_library(str(library_path()))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ort_dense_crf.json"))
    args = parser.parse_args()

    import torch

    from edgeseg.ops.crf_rnn import CRFasRNN

    torch.set_num_threads(1)
    crf = CRFasRNN(2, channels=1).eval()
    session = node_session(crf.freeze_for_export(), threads=1)
    rows = []
    for size in args.sizes:
        yy, xx = np.mgrid[:size, :size]
        disc = np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2, 170.0, 70.0)
        rng = np.random.default_rng(0)
        pixels = np.clip(disc + rng.normal(0, 20, disc.shape), 0, 255).round().astype(np.float32)
        logits = np.stack([disc / 50 - 2.4, 2.4 - disc / 50])[None].astype(np.float32) + rng.normal(
            0, 1, (1, 2, size, size)).astype(np.float32)
        probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
        feed = {"probs": probs, "image": pixels[None, :, :, None]}
        t_logits, t_image = torch.from_numpy(logits), torch.from_numpy(pixels[None, None])
        times = {"onnxruntime": [], "pytorch": []}
        for i in range(args.runs + 2):
            start = time.perf_counter()
            got = session.run(None, feed)[0]
            mid = time.perf_counter()
            with torch.inference_mode():
                want = crf(t_logits, t_image).exp().numpy()
            end = time.perf_counter()
            if i >= 2:  # warm-up
                times["onnxruntime"].append(mid - start)
                times["pytorch"].append(end - mid)
        row = {"size": size, "max_abs_prob_diff": float(np.abs(got - want).max())}
        for name, values in times.items():
            row[f"{name}_median_ms"] = 1e3 * float(np.median(values))
            row[f"{name}_p90_ms"] = 1e3 * float(np.percentile(values, 90))
        row["speedup"] = row["pytorch_median_ms"] / row["onnxruntime_median_ms"]
        rows.append(row)
        print(f"{size}x{size}: ONNX Runtime {row['onnxruntime_median_ms']:.2f} ms, PyTorch "
              f"{row['pytorch_median_ms']:.2f} ms (x{row['speedup']:.1f}), max |dQ| {row['max_abs_prob_diff']:.1e}")
    import onnxruntime

    record = {"what": "edgeseg:DenseCRF, one call, 1 thread", "classes": 2, "channels": 1,
              "params": json.loads(crf.freeze_for_export()), "runs": args.runs, "rows": rows,
              "versions": {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
