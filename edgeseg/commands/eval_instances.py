"""Score an instance model (Mask R-CNN, FCIS or bottom-up; .safetensors or .onnx) by COCO mask AP and box AP.

Frames are run at their original resolution through InstanceSegmenter (preprocess from the sidecar, masks
pasted at frame size), so the numbers are what a user of the model gets. --split val uses the patient split
recorded at training time (same --group-regex / --val-fraction / --seed); --results writes the COCO results
JSON that pycocotools' loadRes reads.

Examples:
  edgeseg eval-instances runs/hc18_maskrcnn.onnx --data ../shared/data/hc18
  edgeseg eval-instances runs/hc18_maskrcnn.safetensors --data ../shared/data/hc18 --limit 40 --json ap.json
  edgeseg eval-instances runs/hc18c_bottomup.onnx --data ../shared/data/hc18 --dataset hc18_composites
  edgeseg eval-instances runs/hc18c_fcis.onnx --data ../shared/data/hc18 --dataset hc18_composites --overlap 0.5
"""

from __future__ import annotations

HELP = "COCO mask AP / box AP of an instance model on images + instance masks (pycocotools)"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="a maskrcnn / fcis / bottomup .safetensors checkpoint or its exported .onnx "
                                      "(sidecar next to it)")
    parser.add_argument("--data", required=True, help="folder with images/ and masks/ (each mask one instance)")
    parser.add_argument("--split", default="val", choices=("val", "all"),
                        help="val: the validation images of the training split (same --group-regex, "
                             "--val-fraction, --seed as train-instances); all: every image")
    parser.add_argument("--group-regex", default=r"^(\d{3})_",
                        help="files sharing this key (first group) stay on one split side")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="fraction of groups in the validation split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (use the training one)")
    parser.add_argument("--dataset", default="hc18", choices=("hc18", "hc18_composites", "busi"),
                        help="HC18 scans, HC18 composites (2-4 validation scans per canvas, seed --seed + 1) or BUSI")
    parser.add_argument("--composites", type=int, default=64, help="number of composite canvases (hc18_composites)")
    parser.add_argument("--canvas", type=int, default=512, help="composite canvas side in pixels (hc18_composites)")
    parser.add_argument("--overlap", type=float, default=0.0,
                        help="hc18_composites: head crops packed so neighbours overlap by this fraction (0: tiled)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--threads", type=int, default=1, help="inference CPU threads")
    parser.add_argument("--results", default=None, help="write the COCO results JSON here")
    parser.add_argument("--json", default=None, help="write the AP report here")


def run(args) -> int:
    import json

    from ..instances.evaluate import evaluate_model_on_folder

    report = evaluate_model_on_folder(args.model, args.data, split=args.split, group_regex=args.group_regex,
                                      val_fraction=args.val_fraction, seed=args.seed, limit=args.limit,
                                      threads=args.threads, results_json=args.results,
                                      dataset=args.dataset, composites=args.composites, canvas=args.canvas,
                                      overlap=args.overlap)
    for kind, name in (("segm", "mask"), ("bbox", "box")):
        ap = report[kind]
        print(f"{name:>4} AP {ap['AP']:.3f}  AP50 {ap['AP50']:.3f}  AP75 {ap['AP75']:.3f}")
    print(f"{report['images']} images, median latency {report['median_ms']:.1f} ms/frame ({args.model})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0
