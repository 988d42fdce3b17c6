"""Segment a camera, a stream or a video file in real time and write the result.

Capture, inference and rendering run in three threads. A live source (camera, rtsp://, or --realtime) keeps
only the newest frame when the model is slower than the camera and counts the dropped frames; a file is
processed frame by frame, in order. Ctrl-C stops cleanly: the output video stays playable and the summary
is still printed and written.

Sources (--source): 0 (webcam), /dev/video0 (V4L2), csi://0 (Jetson CSI camera), rtsp://host/stream,
http(s)://..., clip.mp4, a folder of images (sorted; --fps sets the rate), cine.dcm (DICOM cine).
Sinks (--sink): out.mp4 (H.264) / out.avi (MJPG), a folder (frames/), window, null.
Models (--model): an .onnx / .safetensors / .engine file with its .json sidecar, or "selfie" for the
cached MediaPipe selfie model (`edgeseg fetch-selfie` once).

Examples:
  edgeseg run --model edgeseg/assets/hc18_fastseg.onnx --source cine.dcm --sink out.mp4
  edgeseg run --model selfie --source 0 --sink window --effect blur --smooth 0.5
  edgeseg run --model selfie --source clip.mp4 --stabilize motion --refine guided --quality --summary q.json
  edgeseg run --model model.onnx --source rtsp://cam.local/live --sink null --summary latency.json
  edgeseg run --model model.onnx --source clip.mp4 --realtime --sink out.mp4   # as if it were a camera
  edgeseg run --model model.onnx --source frames/ --fps 10 --sink overlays/ --crf

The latency table lists per stage p50/p99 in ms: capture (read + decode), pre, infer, post, crf, render
(draw + encode) and end_to_end (capture timestamp to render done, queueing included).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ._bare_onnx import add_bare_onnx_options, model_with_assumptions

HELP = "segment a camera, stream or video in real time (overlay or background blur)"
EFFECTS = ("overlay", "blur", "hc")


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help='model file with its sidecar, or "selfie"')
    parser.add_argument("--source", required=True, help="camera index, /dev/videoN, csi://N, URL, file, folder, .dcm")
    add_stream_options(parser, default_sink="window")
    add_bare_onnx_options(parser)


def add_stream_options(parser, default_sink: str, effect_default: str = "overlay",
                       stabilize_default: str | None = None) -> None:
    """Options shared by `edgeseg run` and `edgeseg demo` (``effect_default``: the text for --effect's default;
    ``stabilize_default``: the --stabilize used when neither it nor --smooth is given)."""
    parser.add_argument("--sink", default=default_sink,
                        help=f"out.mp4, out.avi, a folder, window or null (default {default_sink})")
    parser.add_argument("--backend", default="auto",
                        help="runner backend: auto, onnxruntime, torch, tensorrt, triton (with --url)")
    parser.add_argument("--url", default=None,
                        help="Triton server for --backend triton: host:port (HTTP) or grpc://host:port")
    parser.add_argument("--threads", type=int, default=None, help="inference CPU threads (default: backend's)")
    parser.add_argument("--crf", action="store_true", help="refine masks with the dense CRF (slower)")
    parser.add_argument("--smooth", type=float, default=None, metavar="A",
                        help="temporal EMA of probabilities, A in [0, 1), e.g. 0.5 (= --stabilize ema); with "
                             "--stabilize: that filter's weight of the past")
    add_mask_filter_options(parser, stabilize_default)
    parser.add_argument("--effect", choices=EFFECTS, default=None,
                        help="overlay: class colours; blur: blur the background (class 0); hc: fetal head "
                             f"ellipse and a stable head circumference (needs --pixel-size) (default: {effect_default})")
    parser.add_argument("--blur", type=int, default=21, help="background blur kernel for --effect blur (odd)")
    parser.add_argument("--pixel-size", type=float, default=None, help="mm per pixel of the frames, for --effect hc")
    parser.add_argument("--hc-window", type=int, default=15,
                        help="--effect hc: frames in the running median of one head's HC (default 15)")
    add_preset_option(parser)
    parser.add_argument("--loop", action="store_true", help="restart a file at its end (stop with Ctrl-C)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of a folder, or override the source's")
    parser.add_argument("--realtime", action="store_true",
                        help="pace a file at its frame rate like a camera (drops frames when the model lags)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--summary", metavar="JSON", help="write the run's summary (latency, frames, errors) here")
    parser.add_argument("--quality", action="store_true",
                        help="measure flicker, temporal consistency and lag of the masks (edgeseg.metrics."
                             "TemporalMetrics; its optical flow costs a few ms per frame) into the summary")
    parser.add_argument("--quiet", action="store_true", help="no live status line and no table")


def add_mask_filter_options(parser, stabilize_default: str | None = None) -> None:
    """``--stabilize`` and ``--refine`` (render-stage MaskFilter). ``stabilize_default`` applies when neither
    --stabilize nor --smooth is given (demo/selfie: motion, as benchmarks/video_quality.py showed it wins)."""
    when = (f"default {stabilize_default}, or the EMA when --smooth is given" if stabilize_default
            else "default: none, or the EMA when --smooth is given")
    parser.add_argument("--stabilize", choices=("none", "ema", "motion"), default=None,
                        help="temporal filter of the mask: ema (= --smooth, ghosts behind movement) or motion "
                             f"(averages only where the frame is still: less flicker, no ghost) ({when})")
    parser.add_argument("--refine", choices=("none", "guided"), default=None,
                        help="upsample the mask to the frame with the fast guided filter (edges follow the frame; "
                             "default none: bilinear)")
    parser.set_defaults(stabilize_default=stabilize_default)


def temporal_options(smooth: float | None, stabilize: str | None, default: str | None = None):
    """``--smooth``/``--stabilize`` -> (Segmenter smooth, stream stabilize). ``--smooth A`` alone keeps today's
    Segmenter EMA; with ``--stabilize ema|motion`` A becomes that filter's weight of the past; ``default`` is
    the stabiliser when neither is given."""
    if stabilize is None and smooth is None:
        stabilize = default
    if stabilize is None:
        return smooth, None
    if stabilize == "none":
        if smooth is not None:
            raise InputError(f"--smooth: got {smooth!r} with --stabilize none, expected no temporal filter "
                             "(drop --smooth, or use --stabilize ema/motion)")
        return None, None
    from ..stabilize import Stabilizer

    if smooth is not None and not 0.0 <= smooth < 1.0:
        raise InputError(f"--smooth: got {smooth!r}, expected a number in [0, 1)")
    return None, Stabilizer(stabilize, alpha=smooth)


def resolve_model(model: str):
    """``"selfie"`` -> the cached, hash-checked selfie model path; a path as a Path (edgeseg.artifact.resolve_model,
    the resolver Python's ``edgeseg.stream(src, "selfie")`` uses too)."""
    from ..artifact import resolve_model as resolve

    return resolve(model)


def add_preset_option(parser) -> None:
    """``--preset``: the libx264 speed preset for H.264 sinks (read back with :func:`sink_options_from`)."""
    from ..video.sinks import X264_PRESETS

    parser.add_argument("--preset", choices=X264_PRESETS, default=None,
                        help="H.264 encoder speed for .mp4/.mkv/.mov sinks (default veryfast). On a small CPU the "
                             "encoder can cost more than the model: ultrafast uses ~2.3x less CPU, files ~3x larger")


def sink_options_from(args) -> dict:
    """``--preset`` -> ``{"preset": ...}`` for the sink; refused (InputError) for sinks that are not H.264 files."""
    preset = getattr(args, "preset", None)
    if preset is None:
        return {}
    from ..video.sinks import VIDEO_SUFFIXES

    if not str(args.sink).lower().endswith(VIDEO_SUFFIXES) or str(args.sink).lower().endswith(".avi"):
        raise InputError(f"--preset: got {preset!r} for sink {args.sink!r}, expected an H.264 video sink "
                         "(.mp4, .m4v, .mov or .mkv)")
    return {"preset": preset}


def check_outputs(args) -> None:
    """--sink (a video file or a folder) and --summary must be writable before the stream starts."""
    from ..outputs import ensure_writable
    from ..video.sinks import NULL_URIS, VIDEO_SUFFIXES, WINDOW_URIS

    sink = str(args.sink).strip()
    if sink.lower().startswith("file://"):
        sink = sink[len("file://"):]
    if sink.lower() not in NULL_URIS + WINDOW_URIS and "://" not in sink:
        ensure_writable(Path(sink).expanduser(), "--sink", folder=not sink.lower().endswith(VIDEO_SUFFIXES))
    if getattr(args, "summary", None):
        ensure_writable(args.summary, "--summary")


def make_render(effect: str | None, blur: int, pixel_size: float | None = None, hc_window: int = 15):
    if effect == "hc":
        if pixel_size is None:
            raise InputError("--pixel-size: not given, expected the frames' pixel size in mm for --effect hc")
        from ..apps.ultrasound_video import UltrasoundOverlay

        return UltrasoundOverlay(pixel_size, window=hc_window)
    if effect == "blur":
        from ..apps.selfie import BackgroundEffect

        return BackgroundEffect(blur=blur)
    return None  # the segmenter's overlay


def execute(args, source, model, effect: str | None, describe: dict | None = None) -> int:
    """Run one stream from parsed options; print the table, write the summary; 130 after Ctrl-C."""
    import signal

    from ..outputs import write_json
    from ..video import format_table, stream

    check_outputs(args)
    render = make_render(effect, args.blur, getattr(args, "pixel_size", None), getattr(args, "hc_window", 15))
    backend, threads, crf = args.backend, args.threads, args.crf or None
    smooth, stabilize = temporal_options(args.smooth, getattr(args, "stabilize", None),
                                         getattr(args, "stabilize_default", None))
    model_label = str(getattr(model, "path", model))  # a path, or an Artifact built from --mean/--std/...
    if getattr(args, "url", None):  # a remote runner: build the Segmenter here with the server's address
        from ..pipeline import Segmenter

        model = Segmenter(model, backend=backend, url=args.url, crf=crf, smooth=smooth)
        backend, threads, crf, smooth = "auto", None, None, None
    previous = _sigterm_as_interrupt(signal)
    interrupted = False
    run = stream(source, model, sink=args.sink, render=render, smooth=smooth, crf=crf,
                 backend=backend, threads=threads, loop=args.loop, fps=args.fps, realtime=args.realtime,
                 max_frames=args.max_frames, status=False if args.quiet else None,
                 sink_options=sink_options_from(args), stabilize=stabilize, refine=getattr(args, "refine", None))
    quality = None
    if getattr(args, "quality", False):
        from ..metrics import TemporalMetrics

        quality = TemporalMetrics()
    try:
        with run:
            for result in run:
                if quality is not None:
                    quality.update(result.frame, result.labels)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        summary = run.summary()
        summary.update(describe or {})
        summary["model"] = model_label
        summary["backend"] = getattr(getattr(run.segmenter, "runner", None), "backend", None)
        if callable(getattr(render, "summary", None)):  # --effect hc: the head-circumference readout
            summary["hc"] = render.summary()
        if quality is not None:
            summary["video_quality"] = quality.summary()
        if args.summary:
            write_json(args.summary, summary)
        if not args.quiet:
            print(format_table(summary))
            if summary["sink"]["frames_written"]:
                print(f"wrote {summary['sink']['frames_written']} frames to {summary['sink']['uri']}")
            for event in summary["events"]:
                print(f"note: {event}")
            if quality is not None:
                q = summary["video_quality"]
                print(f"video quality: flicker {q['flicker']}, temporal consistency {q['temporal_consistency']}, "
                      f"lag IoU {q['lag_iou']} over {q['frames']} frames")
    if interrupted:
        print("interrupted: stopped cleanly", flush=True)
        return 130
    return 0


def _sigterm_as_interrupt(signal):
    """`kill PID` stops like Ctrl-C (clean shutdown, playable file). Returns the previous handler, or None."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def run(args) -> int:
    return execute(args, args.source, model_with_assumptions(args, resolve_model(args.model)), args.effect)
