"""The main job in one command, with no camera and no GPU: a real video in, a segmented video out, and the
latency of every stage.

By default: Debian opencv-doc's Megamind.avi (270 frames of close-up faces) through MediaPipe's selfie
segmenter on ONNX Runtime (CPU), background blurred, written to demo.mp4 (H.264).

Needs, once:
  edgeseg fetch-selfie                   # the selfie model, through pip (Apache-2.0)
  sudo apt-get install opencv-doc        # the sample video (setup.sh installs it)

Without the selfie model, the demo says so and runs the shipped HC18 ultrasound model
(edgeseg/assets/hc18_fastseg.onnx) on pydicom-data's 120-frame echocardiography cine instead.

Examples:
  edgeseg demo                                   # writes demo.mp4, prints the latency table
  edgeseg demo --sink window --smooth 0.5        # watch it (needs a display and opencv-python)
  edgeseg demo --ultrasound --sink echo.mp4      # the HC18 model on the echo cine
  edgeseg demo --realtime --summary demo.json    # play at 24 fps like a camera; drops frames if too slow
"""

from __future__ import annotations

from pathlib import Path

from .run import add_stream_options, execute

HELP = "run the built-in demo: sample video -> selfie blur (ONNX Runtime CPU) -> demo.mp4 + latency table"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
MEGAMIND = OPENCV_DATA / "Megamind.avi"
ECHO_CINE = "color3d_jpeg_baseline.dcm"


def add_arguments(parser) -> None:
    parser.add_argument("--ultrasound", action="store_true",
                        help="run the HC18 ultrasound model on the echo cine instead of the selfie demo")
    parser.add_argument("--video", default=str(MEGAMIND), help=f"selfie demo input (default {MEGAMIND})")
    add_stream_options(parser, default_sink="demo.mp4", effect_default="blur; overlay with --ultrasound",
                       stabilize_default="motion")


def hc18_model() -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / "hc18_fastseg.onnx"


def echo_cine() -> str | None:
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        return None
    return get_testdata_file(ECHO_CINE)


def selfie_problem(video: str) -> str | None:
    """Why the selfie demo cannot run here (with the command that fixes it), or None."""
    from ..apps.selfie import selfie_model_path
    from ..errors import ArtifactError

    try:
        selfie_model_path()
    except ArtifactError:
        return "the selfie model is not fetched yet; run `edgeseg fetch-selfie` once"
    if not Path(video).exists():
        return f"the sample video {video} is missing; run `sudo apt-get install opencv-doc`"
    return None


def ultrasound_problem() -> str | None:
    if not hc18_model().exists():
        return f"the HC18 model {hc18_model()} is missing from this install"
    if echo_cine() is None:
        return f"pydicom-data's {ECHO_CINE} is missing; run `pip install pydicom-data`"
    return None


def run(args) -> int:
    from ..errors import ArtifactError

    if not args.ultrasound:
        problem = selfie_problem(args.video)
        if problem is None:
            from ..apps.selfie import selfie_model_path

            print(f"edgeseg demo: {Path(args.video).name} -> selfie segmenter (background blur) on "
                  f"{args.backend if args.backend != 'auto' else 'ONNX Runtime CPU'} -> {args.sink}", flush=True)
            return execute(args, args.video, selfie_model_path(), args.effect or "blur",
                           {"demo": "selfie"})
        fallback = ultrasound_problem()
        if fallback is not None:
            raise ArtifactError(f"the demo cannot run: {problem}; and the ultrasound fallback cannot either: "
                                f"{fallback}")
        print(f"edgeseg demo: {problem}.\nedgeseg demo: running the shipped HC18 ultrasound model on the "
              f"echocardiography cine instead.", flush=True)
    else:
        problem = ultrasound_problem()
        if problem is not None:
            raise ArtifactError(f"the ultrasound demo cannot run: {problem}")
    print(f"edgeseg demo: {ECHO_CINE} (pydicom-data) -> HC18 fastseg (head overlay) -> {args.sink}", flush=True)
    return execute(args, echo_cine(), hc18_model(), args.effect or "overlay", {"demo": "ultrasound"})
