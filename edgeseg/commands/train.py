"""Train a segmentation model on a folder of images and a folder of masks, or on one folder per class.

--layout pairs (default): images and masks are paired by name (--mask-pattern, a glob with {stem} =
image name without suffix; several matching masks are OR-ed). The split into train/validation is by group (--group-regex, e.g. a
patient prefix) so that no group leaks into validation. The best checkpoint by validation mean IoU is
written to --out (safetensors + JSON sidecar), the last epoch to <out>.last.safetensors for --resume.

--layout class-folders: --data ROOT holds one folder per class (ROOT/benign, ROOT/malignant, ...), each
with images/ + masks/ sub-folders or images and masks side by side. An image X.png is labelled by its
mask files X_mask.png, X_mask_1.png, ... (--mask-suffix _mask): every non-zero pixel of any of them
takes the folder's class. Folders in --background (default: normal) are background-only images. Class
names come from the folders (background first, then sorted), are stored in the sidecar and shown by
eval (table, grid legend); --classes NAME... sets their order. Validation names are <folder>/<file>.

Class imbalance (e.g. lesions are a few % of the pixels): --class-weights auto weighs cross-entropy by
1/sqrt(pixel frequency) of each class (normalised to a pixel-weighted mean of 1), --class-weights
0.5 2 4 sets them; the soft Dice term (--dice-weight, on by default) averages each foreground class's
Dice, so a small class counts as much as a large one. Measured on BUSI (fastseg, 128x128, 12 epochs,
seed 0, Dice term on, 134 validation images): --class-weights auto raised mIoU 0.544 -> 0.556, benign
IoU 0.244 -> 0.288 (malignant 0.440 -> 0.440), mean class accuracy 0.614 -> 0.679 and lesion Dice
0.592 -> 0.604, at the cost of pixel accuracy 0.945 -> 0.937 (more lesion false positives); one seed.

Examples:
  # the shipped HC18 fetal-head model (grayscale, split by the 3-digit patient prefix; ~36 min on 2 cores)
  edgeseg train --images ../shared/data/hc18/images --masks ../shared/data/hc18/masks \\
      --classes background head --color gray --size 256 256 --group-regex '^(\\d{3})_' \\
      --epochs 30 --max-minutes 45 --threads 1 --attribution "HC18 ... CC BY 4.0" \\
      --out runs/hc18_fastseg.safetensors

  # on a CPU shared with other jobs, --threads 1 is far faster than 2 (no spinning thread barriers)

  # colour images with class-index PNG masks, 4 classes, pixels 255 ignored
  edgeseg train --images data/img --masks data/ann --mask-mode index --ignore-index 255 \\
      --classes bg road car person --color rgb --model deeplabv3 --out runs/street.safetensors

  # BUSI breast ultrasound: benign/ malignant/ normal/, lesion masks "X_mask.png" (+ "_mask_1" ...)
  edgeseg train --layout class-folders --data ../shared/data/busi --mask-suffix _mask --background normal \
      --color gray --size 256 256 --class-weights auto --model deeplabv3 --out runs/busi.safetensors

  # continue an interrupted run (same arguments plus --resume)
  edgeseg train ... --resume runs/hc18_fastseg.last.safetensors
"""

from __future__ import annotations

import json
import shlex
import sys

HELP = "train a model on a folder of images and masks (best checkpoint by val mIoU)"


def add_arguments(parser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--layout", default="pairs", choices=("pairs", "class-folders"),
                      help="pairs: --images + --masks paired by --mask-pattern; class-folders: --data with one "
                           "folder per class (default: pairs)")
    data.add_argument("--data", default=None, metavar="ROOT", help="class-folders: the folder of class folders")
    data.add_argument("--images", default=None, help="pairs: folder of images")
    data.add_argument("--masks", default=None, help="pairs: folder of masks")
    data.add_argument("--mask-suffix", default="_mask",
                      help="class-folders: X.png's masks are X<suffix>.png, X<suffix>_1.png, ... OR-ed (default: _mask)")
    data.add_argument("--background", nargs="+", default=["normal"], metavar="FOLDER",
                      help="class-folders: folders of background-only images, masks optional (default: normal)")
    data.add_argument("--image-glob", default="*", help="which files in --images are images (default: all)")
    data.add_argument("--mask-pattern", default="{stem}.png",
                      help="glob of an image's mask file(s) in --masks, {stem}/{name} filled in (default: {stem}.png)")
    data.add_argument("--mask-mode", default="binary", choices=("binary", "index", "palette"),
                      help="binary: channel 0 > 0 is class 1; index: values are classes; palette: palette PNG")
    data.add_argument("--ignore-index", type=int, default=None, help="mask value excluded from loss and metrics")
    data.add_argument("--classes", nargs="+", default=None,
                      help="class names, background first (default: background foreground; class-folders: "
                           "background + the folder names)")
    data.add_argument("--color", default="gray", choices=("gray", "rgb", "bgr"), help="model input colour (default gray)")
    data.add_argument("--size", nargs=2, type=int, default=(256, 256), metavar=("H", "W"),
                      help="training size, multiples of 32 (pspnet: 64) (default: 256 256)")
    data.add_argument("--group-regex", default=None,
                      help="regex whose first group is the split key (e.g. '^(\\d{3})_'); default: each file")
    data.add_argument("--val-fraction", type=float, default=0.2, help="fraction of groups for validation")
    data.add_argument("--val-files", default=None, metavar="FILE",
                      help="text file of validation image names, one a line (e.g. a split stratified by head "
                           "size); replaces --val-fraction, groups still may not straddle it")
    data.add_argument("--limit", type=int, default=None, help="use only the first N pairs (quick trials)")
    data.add_argument("--no-augment", action="store_true", help="disable flip/scale/rotation/brightness augmentation")
    data.add_argument("--aug-scale", nargs=2, type=float, default=None, metavar=("LO", "HI"),
                      help="zoom range of the augmentation (default 0.85 1.2; < 1 zooms out)")
    model = parser.add_argument_group("model and optimisation")
    model.add_argument("--model", default="fastseg", help="zoo model name (edgeseg.models.list_models())")
    model.add_argument("--model-kwargs", default="{}", help="JSON options for the model, e.g. '{\"width\": 1.0}'")
    model.add_argument("--epochs", type=int, default=30, help="passes over the training images")
    model.add_argument("--batch-size", type=int, default=8, help="images per optimisation step")
    model.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (cosine decay)")
    model.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    model.add_argument("--dice-weight", type=float, default=1.0,
                       help="weight of the soft Dice term (mean of the foreground classes' Dice) added to CE")
    model.add_argument("--class-weights", nargs="+", default=None, metavar="W",
                       help="cross-entropy class weights: 'auto' (1/sqrt of pixel frequency) or one number per class")
    model.add_argument("--ema", type=float, default=None, metavar="DECAY",
                       help="validate and save an exponential moving average of the weights, updated every step "
                            "with this decay (e.g. 0.998: an average over the last ~500 steps); default: the raw weights")
    model.add_argument("--seed", type=int, default=0,
                       help="seed of the split, the initial weights, augmentation and batch order")
    model.add_argument("--max-minutes", type=float, default=None,
                       help="wall-clock budget: if epochs would overrun it, the LR schedule is compressed and "
                            "training stops within it (the sidecar records that it did)")
    model.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: cores, at most 8)")
    run_ = parser.add_argument_group("output")
    run_.add_argument("--out", default="runs/model.safetensors", help="best checkpoint path (*.safetensors)")
    run_.add_argument("--resume", default=None, help="a *.last.safetensors checkpoint to continue from")
    run_.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tune; its normalisation)")
    run_.add_argument("--attribution", default=None, help="data licence/attribution text stored in the sidecar")
    run_.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..errors import InputError
    from ..train import TrainConfig, default_threads, train

    try:
        model_kwargs = json.loads(args.model_kwargs)
    except json.JSONDecodeError as exc:
        raise InputError(f"--model-kwargs: got {args.model_kwargs!r}, expected a JSON object ({exc})") from exc
    if not args.out.endswith(".safetensors"):
        raise InputError(f"--out: got {args.out!r}, expected a path ending in .safetensors")
    images, masks = args.images, args.masks
    if args.layout == "class-folders":
        if not args.data or args.images or args.masks:
            raise InputError("--data: --layout class-folders takes --data ROOT (one folder per class), not --images/--masks")
        images = args.data
    elif args.data or not (args.images and args.masks):
        raise InputError("--images/--masks: --layout pairs needs both (--data is for --layout class-folders)")
    weights = args.class_weights
    if weights and weights != ["auto"]:
        try:
            weights = [float(w) for w in weights]
        except ValueError as exc:
            raise InputError(f"--class-weights: got {args.class_weights}, expected 'auto' or numbers ({exc})") from exc
    elif weights:
        weights = "auto"
    val_files = None
    if args.val_files:
        from ..data.folder import read_file_list

        try:
            val_files = read_file_list(args.val_files)
        except OSError as exc:
            raise InputError(f"--val-files: cannot read {args.val_files!r} ({exc}); expected a text file of names") from exc
    cfg = TrainConfig(
        images=images, masks=masks, out=args.out, layout=args.layout, mask_suffix=args.mask_suffix,
        background=list(args.background), class_weights=weights, model=args.model, model_kwargs=model_kwargs,
        classes=args.classes, mask_mode=args.mask_mode, mask_pattern=args.mask_pattern, image_glob=args.image_glob,
        ignore_index=args.ignore_index, color=args.color, size=tuple(args.size), group_regex=args.group_regex,
        val_fraction=args.val_fraction, val_files=val_files, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, dice_weight=args.dice_weight, ema=args.ema, augment=not args.no_augment,
        aug_scale=tuple(args.aug_scale) if args.aug_scale else None, init=args.init,
        threads=args.threads or default_threads(), limit=args.limit, max_minutes=args.max_minutes, resume=args.resume,
        attribution=args.attribution, progress=not args.quiet,
        command="edgeseg " + shlex.join(sys.argv[1:]),
    )
    result = train(cfg)
    print(f"best val mIoU {result.best_miou:.4f} at epoch {result.best_epoch + 1}: {result.best_path}")
    print(f"last checkpoint: {result.last_path}  ({result.seconds / 60:.1f} min)")
    return 0
