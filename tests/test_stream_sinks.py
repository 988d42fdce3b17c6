"""Sinks: video files that decode back frame for frame, image folders, clear errors for windows and sizes."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.video import ImageFolderSink, NullSink, SinkError, VideoFileSink, open_sink, open_source
from edgeseg.video.testing import count_frames, frame_number, numbered_frame

cv2 = pytest.importorskip("cv2")


@pytest.mark.parametrize("name, codec", [("out.mp4", "h264"), ("out.mp4", "mp4v"), ("out.avi", "mjpg"),
                                         ("out.mkv", "h264")])
def test_video_file_decodes_back_frame_for_frame(tmp_path, name, codec):
    if codec == "h264":
        pytest.importorskip("av")
    path = tmp_path / name
    with open_sink(str(path), fps=25, size=(96, 64), codec=codec) as sink:
        assert isinstance(sink, VideoFileSink) and sink.codec == codec
        for i in range(30):
            sink.write(numbered_frame(i))
    with open_source(path) as source:
        numbers = [frame_number(image) for image, _ in source]
        assert source.size == (96, 64) and source.fps == pytest.approx(25)
    assert numbers == list(range(30))


def test_h264_keeps_colours(tmp_path):
    # Frames go to the encoder as I420 converted by OpenCV: a range or matrix mismatch with what decoders assume
    # (BT.601, limited range) would shift every colour by several levels.
    pytest.importorskip("av")
    y, x = np.mgrid[0:96, 0:128]
    frame = np.stack([2 * x, 2 * y + 30, 255 - 2 * x], axis=-1).clip(0, 255).astype(np.uint8)  # smooth BGR ramps
    path = tmp_path / "colours.mp4"
    with open_sink(path, fps=25) as sink:
        for _ in range(5):
            sink.write(frame)
    with open_source(path) as source:
        decoded = [image for image, _ in source]
    assert len(decoded) == 5
    error = decoded[-1].astype(np.float64) - frame
    assert np.abs(error.mean(axis=(0, 1))).max() < 3, f"colour bias {error.mean(axis=(0, 1))} per channel"
    psnr = 10 * np.log10(255 ** 2 / (error ** 2).mean())
    assert psnr > 35, f"PSNR {psnr:.1f} dB"


@pytest.mark.parametrize("options, field", [({"preset": "warp"}, "preset"), ({"crf": 60}, "crf"),
                                            ({"crf": "23"}, "crf")])
def test_bad_encoder_options_name_the_field(tmp_path, options, field):
    with pytest.raises(InputError, match=f"^{field}: got"):
        VideoFileSink(tmp_path / "a.mp4", fps=25, **options)


def test_default_codec_is_h264_for_mp4_when_pyav_exists(tmp_path):
    pytest.importorskip("av")
    assert open_sink(tmp_path / "a.mp4", fps=30).codec == "h264"
    assert open_sink(tmp_path / "a.avi", fps=30).codec == "mjpg"


def test_h264_pads_odd_sizes_and_says_so(tmp_path, caplog):
    pytest.importorskip("av")
    path = tmp_path / "odd.mp4"
    with caplog.at_level("WARNING", logger="edgeseg.video"), open_sink(path, fps=10) as sink:
        for i in range(4):
            sink.write(numbered_frame(i, (95, 63)))
    assert "padding 95x63 frames to 96x64" in caplog.text
    assert count_frames(path) == 4


def test_size_taken_from_first_frame_and_then_enforced(tmp_path):
    sink = open_sink(tmp_path / "frames", fps=10)
    assert isinstance(sink, ImageFolderSink)
    sink.write(numbered_frame(0, (96, 64)))
    with pytest.raises(InputError, match=r"size 64x48 .* expected 96x64"):
        sink.write(numbered_frame(1, (64, 48)))
    sink.close()
    files = sorted((tmp_path / "frames").iterdir())
    assert [f.name for f in files] == ["000000.png"]
    assert frame_number(cv2.imread(str(files[0]))) == 0


def test_gray_frames_are_written_as_three_equal_channels(tmp_path):
    gray = np.random.default_rng(6).integers(0, 256, (20, 30), dtype=np.uint8)
    sink = open_sink(tmp_path / "frames", fps=10)
    sink.write(gray)
    sink.close()
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "frames" / "000000.png")), np.stack([gray] * 3, axis=2))


def test_bad_frames_are_named(tmp_path):
    sink = NullSink("null")
    with pytest.raises(InputError, match="dtype float32 .* expected uint8"):
        sink.write(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"shape \(4, 4, 2\)"):
        sink.write(np.zeros((4, 4, 2), np.uint8))


def test_open_sink_choices_and_errors(tmp_path):
    assert isinstance(open_sink("null"), NullSink) and isinstance(open_sink(None), NullSink)
    with pytest.raises(InputError, match="suffix '.txt'"):
        open_sink(tmp_path / "out.txt")
    with pytest.raises(InputError, match="expected null, window"):
        open_sink("rtsp://host/stream")
    with pytest.raises(SinkError, match="sink folder does not exist"):
        open_sink(tmp_path / "missing" / "out.mp4")


def test_window_without_display_or_gui_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match=r"cannot open a window: .*(GUI|no display).*--sink out.mp4"):
        open_sink("window")


def test_fast_overlay_is_identical_to_the_segmenter_overlay():
    from edgeseg.postprocess import overlay
    from edgeseg.video.render import Overlay
    from edgeseg.video.testing import FakeSegmentation

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (48, 64)).astype(np.int32)
    small = np.zeros((48, 64), np.uint8)                        # one object: only its bounding box is drawn
    small[10:20, 30:41] = rng.integers(0, 3, (10, 11))
    colors = [(0, 0, 0), (56, 56, 255), (10, 200, 30)]
    for label_map in (labels, small, np.zeros_like(small)):
        for alpha in (0.0, 0.35, 0.5, 1.0):
            got = Overlay(colors, alpha)(frame, FakeSegmentation(label_map, None, {}))
            np.testing.assert_array_equal(got, overlay(frame, label_map, colors, alpha))
    gray = frame[:, :, 1].copy()
    np.testing.assert_array_equal(Overlay(colors)(gray, FakeSegmentation(small, None, {})), overlay(gray, small, colors))
    with pytest.raises(InputError, match="labels: values up to 3"):
        Overlay(colors)(frame, FakeSegmentation(labels + 1, None, {}))


def test_default_render_keeps_the_instance_drawing_of_an_instance_model():
    """The fast Overlay draws labels only: a Segmenter of an instance model keeps its own overlay (each instance,
    its box and score), as the loop rendered instance models before they ran through Segmenter itself."""
    from pathlib import Path

    from edgeseg.artifact import Artifact
    from edgeseg.pipeline import Segmenter
    from edgeseg.video.render import Overlay, default_render

    seg = object.__new__(Segmenter)  # the render choice reads the sidecar and the decoder only; no runner needed
    seg.artifact = Artifact(path=Path("model.onnx"), classes=["background", "head"])
    seg.instance_decoder = None
    assert isinstance(default_render(seg), Overlay)
    seg.instance_decoder = object()
    assert default_render(seg) == seg.overlay
