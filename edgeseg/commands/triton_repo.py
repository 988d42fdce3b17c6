"""Write a Triton Inference Server model repository for an exported model (ONNX or TensorRT engine).

The repository follows Triton's layout: REPO/<name>/config.pbtxt and REPO/<name>/<version>/model.onnx
(platform onnxruntime_onnx) or model.plan (platform tensorrt_plan), with the edgeseg sidecar copied
beside the model for clients. Input/output names, dims and dtypes come from the sidecar; a dynamic
batch axis becomes max_batch_size with the dynamic batcher; the config is checked by parsing it with
Triton's own ModelConfig protobuf (from tritonclient).

Examples:
  edgeseg triton-repo edgeseg/assets/hc18_fastseg.onnx repo/
  edgeseg triton-repo hc18_fastseg.engine repo/ --name hc18_trt --max-batch-size 4 --instances 2
  edgeseg triton-repo model.onnx repo/ --no-dynamic-batching --kind KIND_GPU --version 2
  tritonserver --model-repository repo/        # then: create_runner(..., backend="triton", url=...)
"""

from __future__ import annotations

HELP = "write a Triton model repository (config.pbtxt + versioned model) for an .onnx or .engine"
NAME = "triton-repo"


def add_arguments(parser) -> None:
    parser.add_argument("model", help=".onnx or .engine/.plan with its .json sidecar")
    parser.add_argument("repo", help="model repository folder (created)")
    parser.add_argument("--name", default=None, help="model name on the server (default: the file's stem)")
    parser.add_argument("--version", type=int, default=1, help="version folder (default 1)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="largest batch (default 8)")
    parser.add_argument("--no-dynamic-batching", action="store_true", help="omit the dynamic batcher")
    parser.add_argument("--preferred-batch-sizes", type=int, nargs="+", default=None,
                        help="dynamic batcher's preferred sizes (default: powers of two up to the max)")
    parser.add_argument("--max-queue-delay-us", type=int, default=100, help="batcher queue delay (default 100)")
    parser.add_argument("--kind", default=None, choices=["KIND_CPU", "KIND_GPU", "KIND_AUTO"],
                        help="instance kind (default: KIND_GPU for engines, KIND_CPU for ONNX)")
    parser.add_argument("--instances", type=int, default=1, help="instances per device (default 1)")
    parser.add_argument("--gpus", type=int, nargs="+", default=None, help="GPU ids for KIND_GPU")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version folder")


def run(args) -> int:
    from ..triton.repository import write_repository

    config_path = write_repository(
        args.model, args.repo, name=args.name, version=args.version, overwrite=args.overwrite,
        max_batch_size=args.max_batch_size, dynamic_batching=not args.no_dynamic_batching,
        preferred_batch_sizes=args.preferred_batch_sizes, max_queue_delay_us=args.max_queue_delay_us,
        instance_kind=args.kind, instance_count=args.instances, gpus=args.gpus)
    print(f"wrote {config_path} and {config_path.parent / str(args.version)}/")
    print(config_path.read_text(), end="")
    return 0
