"""Train an instance model (--model maskrcnn, fcis or bottomup) on HC18-style data, each mask one instance.

--dataset hc18_composites tiles 2-4 real HC18 scans per canvas (each head an instance), drawn from --seed at
training time and never stored; its validation canvases use validation patients only. --dataset busi reads
BUSI lesions (one instance per mask file; research use only: never ship a model trained on it).

Training is bounded by --max-minutes (cosine schedule over the budget); the validation split is by patient
prefix (--group-regex), the same split `edgeseg train` uses. --init-encoder starts the MobileNetV3 encoder
from a checkpoint with the same encoder (the shipped HC18 fastseg model) and --freeze-encoder keeps it fixed:
on a CPU this is what makes a few hundred steps enough. At the end it prints and stores COCO mask AP and
box AP on the validation split (pycocotools), and with --onnx exports the model with NMS/TopK/RoiAlign inside.

Examples:
  edgeseg train-instances --data ../shared/data/hc18 --out runs/hc18_maskrcnn.safetensors --max-minutes 15 \\
      --init-encoder edgeseg/assets/hc18_fastseg.safetensors --freeze-encoder --onnx runs/hc18_maskrcnn.onnx
  edgeseg train-instances --model bottomup --dataset hc18_composites --data ../shared/data/hc18 \\
      --out runs/hc18c_bottomup.safetensors --max-minutes 30 --onnx runs/hc18c_bottomup.onnx
  edgeseg train-instances --data my_instances --out runs/m.safetensors --classes background cell --max-steps 50
"""

from __future__ import annotations

HELP = "train an instance model (maskrcnn, fcis, bottomup) on instance masks; report COCO mask/box AP; ONNX export"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder with images/ and masks/ (each mask one instance)")
    parser.add_argument("--out", required=True, help="checkpoint to write (*.safetensors, sidecar next to it)")
    parser.add_argument("--model", default="maskrcnn", choices=("maskrcnn", "fcis", "bottomup"),
                        help="instance model: Mask R-CNN, FCIS (position-sensitive inside/outside maps) or "
                             "bottom-up (pixel embeddings + seediness)")
    parser.add_argument("--dataset", default="hc18", choices=("hc18", "hc18_composites", "busi"),
                        help="how --data is read: HC18 scans, HC18 composites (2-4 scans per canvas) or BUSI")
    parser.add_argument("--val-composites", type=int, default=64, help="validation canvases of hc18_composites")
    parser.add_argument("--classes", nargs="+", default=["background", "head"], help="class names, background first")
    parser.add_argument("--size", type=int, default=256, help="square input size")
    parser.add_argument("--batch-size", type=int, default=4, help="images per training step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="training time budget")
    parser.add_argument("--max-steps", type=int, default=100000, help="stop after this many steps")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and augmentation")
    parser.add_argument("--group-regex", default=r"^(\d{3})_", help="files sharing this key stay on one split side")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="fraction of groups for validation")
    parser.add_argument("--init-encoder", default=None, help="checkpoint whose encoder.* weights start the encoder")
    parser.add_argument("--init-weights", default=None,
                        help="continue from this checkpoint of the same model (all weights, its normalisation)")
    parser.add_argument("--freeze-encoder", action="store_true", help="keep the encoder weights fixed")
    parser.add_argument("--onnx", default=None, help="also export the trained model to this .onnx path")


def run(args) -> int:
    from ..instances.train import InstanceTrainConfig, train_instances

    cfg = InstanceTrainConfig(data=args.data, out=args.out, size=args.size, batch_size=args.batch_size, lr=args.lr,
                              max_minutes=args.max_minutes, max_steps=args.max_steps, threads=args.threads,
                              seed=args.seed, group_regex=args.group_regex, val_fraction=args.val_fraction,
                              classes=list(args.classes), init_encoder=args.init_encoder,
                              freeze_encoder=args.freeze_encoder, model=args.model, dataset=args.dataset,
                              val_composites=args.val_composites, init_weights=args.init_weights)
    train_instances(cfg)
    if args.onnx:
        from ..models import load_checkpoint
        from ..instances.export import export_artifact
        model, artifact = load_checkpoint(args.out)
        print(f"exported {export_artifact(model, artifact, args.onnx)}")
    return 0
