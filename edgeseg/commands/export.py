"""Export a PyTorch checkpoint to ONNX (dynamo exporter, onnxslim, onnx.checker) with its JSON sidecar.

The sidecar keeps the checkpoint's preprocessing, classes and output kind and adds the ONNX input and
output names/shapes, the opset and the library versions. Batch, height and width stay dynamic when the
model allows (a warning says why when it does not and the export falls back to static).

Examples:
  edgeseg export edgeseg/assets/hc18_fastseg.safetensors -o out/
  edgeseg export runs/hc18_fastseg.safetensors -o out/hc18.onnx --opset 20 --static
  edgeseg export model.safetensors -o out/ --no-simplify && edgeseg check out/model.onnx
  edgeseg export model.safetensors -o out/ --triton repo/   # also a Triton model repository (config.pbtxt)
  edgeseg export dcn.safetensors -o out/ --route decomposed  # standard ops only: TensorRT-RTX, TensorRT 8.x

Routes (the ONNX form of DeformConv, RoIAlign and the CRF; recorded in the sidecar as extra.export.route):
  native      ONNX DeformConv / RoiAlign, the edgeseg.DenseCRF node (TensorRT 10.1+, ONNX Runtime)
  decomposed  GridSample-based DeformConv / RoIAlign; the graph stops before a CRF, which runs after the
              engine (TensorRT-RTX, TensorRT 8.x on JetPack 5 / 6.0)
  plugin      edgeseg's TensorRT plugin nodes (TensorRT 10.6+ with `edgeseg build --plugins edgeseg`)
  auto        decomposed where the TensorRT library here is TensorRT-RTX, else native (the sidecar says why)
"""

from __future__ import annotations

from pathlib import Path

HELP = "export a .safetensors checkpoint to ONNX (+ sidecar)"


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", type=Path, help="PyTorch checkpoint (.safetensors with its .json sidecar)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output folder or .onnx file (default: next to the checkpoint)")
    parser.add_argument("--opset", type=int, default=19, help="ONNX opset (default 19; 19+ for DeformConv)")
    parser.add_argument("--static", action="store_true", help="fix batch 1 and the sidecar's input size")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxslim graph simplification")
    parser.add_argument("--route", choices=("native", "decomposed", "plugin", "auto"), default="native",
                        help="ONNX form of DeformConv/RoIAlign/CRF (default native; decomposed for TensorRT-RTX; "
                             "auto: decomposed where TensorRT-RTX is the TensorRT library here)")
    parser.add_argument("--triton", type=Path, metavar="REPO", default=None,
                        help="also write a Triton model repository (config.pbtxt + versioned model) into REPO")


def run(args) -> int:
    import warnings

    from ..export.onnx_export import ExportWarning, onnx_from_checkpoint

    out = args.output
    if out is not None and out.suffix.lower() != ".onnx":
        out = out / args.checkpoint.with_suffix(".onnx").name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        artifact = onnx_from_checkpoint(args.checkpoint, out, opset=args.opset, dynamic=not args.static,
                                        simplify=not args.no_simplify, route=args.route)
    for warning in caught:
        if issubclass(warning.category, ExportWarning):
            print(f"warning: {warning.message}")
    spec_in, spec_out = artifact.inputs[0], artifact.outputs[0]
    size_mb = artifact.path.stat().st_size / 1e6
    print(f"wrote {artifact.path} ({size_mb:.2f} MB, opset {artifact.opset}) and {artifact.sidecar_path.name}")
    route = artifact.extra.get("export", {}).get("route", args.route)
    print(f"  {spec_in.name}: {spec_in.shape} {spec_in.dtype} -> {spec_out.name}: {spec_out.shape} (route {route})")
    if args.route == "auto":
        print(f"  route {route}: {artifact.extra['export'].get('route_auto', '')}")
    after = artifact.extra.get("export", {}).get("after_engine")
    if after:
        runner = {"dense_crf": "edgeseg.ops.crf_rnn.run_after_engine",
                  "maskrcnn_post": f"{after.get('onnx')} in ONNX Runtime: edgeseg.models.maskrcnn.export.run_after_engine"}
        print(f"  after the engine: {after['stage']} ({runner.get(after['stage'], 'see the sidecar')})")
    print(f"  check it: edgeseg check {artifact.path}")
    if args.triton:
        from ..triton.repository import write_repository

        config = write_repository(artifact, args.triton, overwrite=True)
        print(f"  triton: {config.parent}/ (serve with: tritonserver --model-repository {args.triton})")
    return 0
