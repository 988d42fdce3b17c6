"""Selfie background effects on a camera or a video: blur, replace with an image, or a solid colour.

Uses MediaPipe's selfie segmenter imported into edgeseg (run `edgeseg fetch-selfie` once), ONNX Runtime
by default, through the threaded `edgeseg.stream` loop. --smooth averages the mask over frames.

Examples:
  edgeseg selfie --source 0 --blur 21 --sink window
  edgeseg selfie --source /usr/share/doc/opencv-doc/examples/data/Megamind.avi --blur 31 --sink out.mp4
  edgeseg selfie --source clip.mp4 --replace beach.jpg --feather 5 --smooth 0.5 --sink out.mp4
  edgeseg selfie --source clip.mp4 --color 0,255,0 --variant landscape --sink frames/
"""

from __future__ import annotations

HELP = "selfie background blur / replacement on a video or camera"


def add_arguments(parser) -> None:
    from .run import add_mask_filter_options, add_preset_option

    parser.add_argument("--source", required=True,
                        help="camera index (0), /dev/videoN, a URL, a video file or a folder of images (a single "
                             "image is refused: put it in a folder)")
    effect = parser.add_mutually_exclusive_group()
    effect.add_argument("--blur", type=int, default=21, help="background blur kernel, odd pixels (default 21)")
    effect.add_argument("--replace", metavar="IMG", help="replace the background with this image")
    effect.add_argument("--color", metavar="B,G,R", help="replace the background with this colour, e.g. 0,255,0")
    parser.add_argument("--feather", type=int, default=3, help="mask edge softening radius in pixels (default 3)")
    parser.add_argument("--smooth", type=float, default=None,
                        help="temporal EMA of the mask in [0, 1), e.g. 0.5; with --stabilize: its weight of the past")
    add_mask_filter_options(parser, stabilize_default="motion")
    parser.add_argument("--sink", default="window", help="out.mp4, a folder, window or null (default window)")
    parser.add_argument("--variant", default="general", choices=["general", "landscape"],
                        help="general (256x256) or landscape (144x256) model")
    parser.add_argument("--model", help="another model path instead of the cached selfie model")
    parser.add_argument("--backend", default="auto", help="runner backend (auto, onnxruntime, torch, ...)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--summary", metavar="JSON", help="write the run's summary (latency, frames, errors) here")
    add_preset_option(parser)


def run(args) -> int:
    from ..apps.selfie import BackgroundEffect, selfie_model_path
    from ..outputs import write_json
    from ..video import format_table, stream
    from .run import check_outputs, sink_options_from, temporal_options

    check_outputs(args)
    model = args.model or selfie_model_path(args.variant)
    effect = BackgroundEffect(blur=args.blur, replace=args.replace, color=args.color, feather=args.feather)
    smooth, stabilize = temporal_options(args.smooth, args.stabilize, args.stabilize_default)
    with stream(args.source, model, sink=args.sink, render=effect, smooth=smooth, backend=args.backend,
                threads=args.threads, max_frames=args.max_frames, status=None, sink_options=sink_options_from(args),
                stabilize=stabilize, refine=args.refine) as frames:
        for _ in frames:
            pass
        summary = frames.summary()
    if args.summary:
        write_json(args.summary, summary)
    print(format_table(summary))
    return 0
