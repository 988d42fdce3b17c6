"""The streaming loop: every frame of a file in order; drop-latest under a slow model on a live source with
bounded queues; clean shutdown (end, break, SIGINT, errors) with no thread left; a source failing mid-stream
ends with its error and a playable partial video."""

from __future__ import annotations

import inspect
import os
import signal
import threading
import time

import numpy as np
import pytest

import edgeseg
from edgeseg.errors import InputError
from edgeseg.video import FrameSource, SourceError, StreamError
from edgeseg.video.capture import VideoSource
from edgeseg.video.testing import FakeCamera, FakeSegmenter, count_frames, frame_number, numbered_frame, write_clip

cv2 = pytest.importorskip("cv2")


@pytest.fixture
def no_thread_left():
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    left = {t.name for t in set(threading.enumerate()) - before}
    assert not left, f"threads left alive: {left}"


def test_stream_is_a_function_of_the_video_package():
    assert inspect.isfunction(edgeseg.stream) and edgeseg.stream is edgeseg.video.stream
    assert edgeseg.open_source is edgeseg.video.open_source
    assert isinstance(edgeseg.stream(FrameSource([numbered_frame(0)]), FakeSegmenter()), edgeseg.video.Stream)


def test_file_mode_processes_every_frame_in_order(tmp_path, no_thread_left):
    clip = write_clip(tmp_path / "in.avi", frames=50, fps=25)
    out = tmp_path / "out.mp4"
    seg = FakeSegmenter()
    stream = edgeseg.stream(str(clip), seg, sink=str(out))
    results = list(stream)
    assert [r.index for r in results] == list(range(50))
    assert [frame_number(r.frame) for r in results] == list(range(50))
    for r in results[::7]:  # each result belongs to its own frame
        np.testing.assert_array_equal(r.labels, (r.frame[:, :, 2] > 127).astype(np.uint8))
        assert r.probs.shape == (2, 64, 96) and r.image.shape == r.frame.shape
    assert seg.threads == {"edgeseg-inference"}
    summary = stream.summary()
    assert summary["frames_processed"] == summary["frames_captured"] == 50 and summary["frames_dropped"] == 0
    assert summary["stopped_by"] == "end" and summary["sink"]["frames_written"] == 50
    assert set(results[0].timings) == {"capture", "pre", "infer", "post", "crf", "render", "end_to_end"}
    assert all(r.timings["end_to_end"] >= r.timings["infer"] for r in results)
    assert count_frames(out) == 50


def test_live_source_keeps_the_latest_frame_under_a_slow_model(no_thread_left):
    frames = [numbered_frame(i) for i in range(80)]
    source = FrameSource(frames, fps=200, realtime=True)  # a 200 fps "camera" for 0.4 s
    seg = FakeSegmenter(delay=0.04)  # 25 fps model
    stream = edgeseg.stream(source, seg)
    results = list(stream)
    summary = stream.summary()
    numbers = [frame_number(r.frame) for r in results]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert [r.index for r in results] == numbers
    assert summary["frames_captured"] == 80
    assert summary["frames_processed"] + summary["frames_dropped"] == 80
    assert summary["frames_dropped"] >= 40  # at most ~0.4 s / 0.04 s + a few frames can be processed
    assert set(summary["queue_high_water"].values()) == {1}  # memory bounded: one frame per hand-off, no backlog
    drops = [r.dropped for r in results]
    assert drops == sorted(drops) and drops[-1] <= summary["frames_dropped"]
    assert max(r.timings["end_to_end"] for r in results) < 0.04 * 8  # fresh frames, not a growing backlog


def test_file_mode_queues_stay_bounded(tmp_path, no_thread_left):
    source = FrameSource([numbered_frame(i) for i in range(40)], fps=25)
    stream = edgeseg.stream(source, FakeSegmenter(delay=0.005), queue_size=3)
    assert len(list(stream)) == 40
    assert all(v <= 3 for v in stream.summary()["queue_high_water"].values())


def test_break_stops_the_threads(tmp_path, no_thread_left):
    source = FrameSource([numbered_frame(i) for i in range(10)], loop=True)
    seen = 0
    for _result in edgeseg.stream(source, FakeSegmenter()):
        seen += 1
        if seen == 5:
            break
    assert seen == 5  # no_thread_left checks the threads ended with the loop


def test_max_frames_and_close(no_thread_left):
    source = FrameSource([numbered_frame(i) for i in range(10)], loop=True)
    stream = edgeseg.stream(source, FakeSegmenter(), max_frames=23)
    assert [frame_number(r.frame) for r in stream] == [i % 10 for i in range(23)]
    assert stream.summary()["stopped_by"] == "limit"
    with edgeseg.stream(FrameSource([numbered_frame(0)], loop=True), FakeSegmenter()) as early:
        next(iter(early))
    assert early.stopped_by in ("consumer", "closed")


def test_sigint_stops_cleanly_and_leaves_a_playable_file(tmp_path, no_thread_left):
    out = tmp_path / "out.mp4"
    source = FrameSource([numbered_frame(i) for i in range(10)], fps=100, loop=True, realtime=True)
    stream = edgeseg.stream(source, FakeSegmenter(delay=0.005), sink=str(out))
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    n = 0
    with pytest.raises(KeyboardInterrupt):
        for _ in stream:
            n += 1
    timer.join()
    summary = stream.summary()
    assert summary["stopped_by"] == "interrupt" and summary["threads_left"] == []
    assert n > 5 and count_frames(out) == summary["sink"]["frames_written"] >= n - 1


def test_source_failing_mid_stream_raises_and_leaves_a_playable_partial_file(tmp_path, no_thread_left):
    clip = write_clip(tmp_path / "in.avi", frames=60, size=(160, 120))
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    out = tmp_path / "partial.mp4"
    stream = edgeseg.stream(str(clip), FakeSegmenter(), sink=str(out))
    got = []
    with pytest.raises(SourceError, match="truncated or corrupt"):
        for result in stream:
            got.append(result.index)
    assert 0 < len(got) < 60 and got == list(range(len(got)))  # every decodable frame, then the error
    assert count_frames(out) == len(got)
    summary = stream.summary()
    assert summary["stopped_by"] == "error" and "capture (frame" in summary["errors"][0]


def test_inference_error_names_stage_and_frame(no_thread_left):
    source = FrameSource([numbered_frame(i) for i in range(20)])
    with pytest.raises(StreamError, match="inference stage failed at frame 7: RuntimeError: fake failure"):
        for _ in edgeseg.stream(source, FakeSegmenter(fail_at=7)):
            pass


def test_camera_reconnect_inside_the_loop_is_reported(no_thread_left):
    FakeCamera.opens = 0
    source = VideoSource(0, live=True, retries=3, backoff=0.01,
                         capture_factory=lambda target, api: FakeCamera([4, None, 4]))
    stream = edgeseg.stream(source, FakeSegmenter())
    got = []
    with pytest.raises(SourceError, match="disconnected"):
        for result in stream:
            got.append(result)
    assert len(got) >= 2 and source.reconnects == 1
    assert any("reconnected" in e for e in stream.summary()["events"])


def test_smooth_is_passed_to_the_segmenter_and_history_reset():
    seg = FakeSegmenter()
    list(edgeseg.stream(FrameSource([numbered_frame(0)] * 3), seg, smooth=0.6))
    assert seg.smooth == 0.6 and seg.resets == 1
    with pytest.raises(InputError, match=r"smooth: got 1\.5"):
        edgeseg.stream(FrameSource([numbered_frame(0)]), seg, smooth=1.5)


def test_bad_arguments_are_named():
    frames = FrameSource([numbered_frame(0)])
    with pytest.raises(InputError, match="max_frames: got 0"):
        edgeseg.stream(frames, FakeSegmenter(), max_frames=0)
    with pytest.raises(InputError, match="model: got int"):
        edgeseg.stream(frames, 42)
    with pytest.raises(InputError, match="render: nothing renders"):
        edgeseg.stream(frames, FakeSegmenter(), render=False, sink="frames_dir/")
    with pytest.raises(InputError, match="crf/threads/backend"):
        edgeseg.stream(frames, FakeSegmenter(), crf=True)


def test_real_segmenter_from_an_onnx_file_with_smoothing(tmp_path, no_thread_left):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgeseg.video.testing import threshold_onnx

    model = threshold_onnx(tmp_path / "threshold.onnx", size=(64, 96))
    clip = write_clip(tmp_path / "in.avi", frames=12, size=(96, 64))
    stream = edgeseg.stream(str(clip), str(model), sink=str(tmp_path / "out.avi"), smooth=0.5, threads=1)
    from edgeseg.video.render import Overlay

    assert isinstance(stream.render, Overlay)  # the fast, identical overlay for an unmodified Segmenter
    results = list(stream)
    assert len(results) == 12
    square = results[-1].labels[56:, :20]  # the bright square in every frame is class 1
    assert square.mean() > 0.95
    assert results[0].probs.shape == (2, 64, 96) and results[0].probs.dtype == np.float32
    assert results[0].timings["infer"] > 0 and results[0].timings["crf"] == 0
    assert count_frames(tmp_path / "out.avi") == 12


def test_timings_are_the_segmentations_own_else_the_loop_times_the_call(no_thread_left):
    from edgeseg.video.testing import FakeSegmentation

    def bare(frame):  # a callable whose result carries no timings: the loop's timing of the call is "infer"
        time.sleep(0.003)
        labels = (frame[:, :, 2] > 127).view(np.uint8)
        return FakeSegmentation(labels, np.stack([1 - labels, labels]).astype(np.float32), {})

    frames = [numbered_frame(i) for i in range(3)]
    results = list(edgeseg.stream(FrameSource(frames), bare, render=False))
    assert [list(r.timings) for r in results] == [["capture", "infer", "render", "end_to_end"]] * 3
    assert min(r.timings["infer"] for r in results) >= 0.003
    assert [r.index for r in results] == [0, 1, 2] and all(r.image is None for r in results)

    results = list(edgeseg.stream(FrameSource(frames), FakeSegmenter(delay=0.003), render=False))
    assert [list(r.timings) for r in results] == [["capture", "pre", "infer", "post", "crf", "render",
                                                   "end_to_end"]] * 3
    assert all(r.timings["infer"] == r.segmentation.timings["infer"] >= 0.003 for r in results)
    assert all(r.frame is f for r, f in zip(results, frames))  # FrameSource hands over its own arrays


def test_building_the_labels_is_timed_in_render_even_without_a_renderer(tmp_path, monkeypatch, no_thread_left):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgeseg import postprocess
    from edgeseg.video.testing import threshold_onnx

    upsample = postprocess.fixed_point_foreground_to_frame_size

    def slow_upsample(*args):
        time.sleep(0.005)
        return upsample(*args)

    monkeypatch.setattr(postprocess, "fixed_point_foreground_to_frame_size", slow_upsample)
    model = threshold_onnx(tmp_path / "threshold.onnx", size=(64, 96))
    frames = FrameSource([numbered_frame(i, (96, 64)) for i in range(4)])
    results = list(edgeseg.stream(frames, str(model), render=False, threads=1))
    assert len(results) == 4 and all(r.labels.shape == (64, 96) for r in results)
    assert min(r.timings["render"] for r in results) >= 0.005
    assert min(r.timings["end_to_end"] for r in results) >= 0.005


def test_segmenter_stages_run_in_capture_inference_and_render_threads(tmp_path, no_thread_left):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgeseg.pipeline import Segmenter
    from edgeseg.video.testing import threshold_onnx

    class Recording(Segmenter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.threads = {"preprocess": set(), "infer": set(), "postprocess": set()}

        def preprocess(self, frame):
            self.threads["preprocess"].add(threading.current_thread().name)
            return super().preprocess(frame)

        def infer(self, item):
            self.threads["infer"].add(threading.current_thread().name)
            return super().infer(item)

        def postprocess(self, item):
            self.threads["postprocess"].add(threading.current_thread().name)
            return super().postprocess(item)

    model = threshold_onnx(tmp_path / "threshold.onnx", size=(64, 96))
    frames = [numbered_frame(i) for i in range(10)]
    seg = Recording(str(model), threads=1, smooth=0.5)
    results = list(edgeseg.stream(FrameSource(frames), seg))
    assert seg.threads == {"preprocess": {"edgeseg-capture"}, "infer": {"edgeseg-inference"},
                           "postprocess": {"edgeseg-render"}}
    direct = Segmenter(str(model), threads=1, smooth=0.5)  # the same frames through plain calls, in order
    for frame, result in zip(frames, results):
        expected = direct(frame)
        np.testing.assert_array_equal(result.labels, expected.labels)
        np.testing.assert_allclose(result.probs, expected.probs, atol=1e-6)
        assert set(result.timings) >= {"pre", "infer", "post", "render", "end_to_end"}
        assert result._in_flight is None  # the model input/output between the stages is not kept in the result


def test_a_frame_the_segmenter_rejects_fails_the_inference_stage(tmp_path, no_thread_left):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgeseg.video.testing import threshold_onnx

    model = threshold_onnx(tmp_path / "threshold.onnx", size=(64, 96))
    frames = [numbered_frame(i) for i in range(5)] + [np.zeros((0, 96, 3), np.uint8)]
    with pytest.raises(InputError, match="frame: got an empty image"):  # edgeseg's own errors reach the caller as they are
        list(edgeseg.stream(FrameSource(frames), str(model), threads=1))


def test_an_abandoned_stream_does_not_block_interpreter_exit():
    import subprocess
    import sys

    code = ("import edgeseg\n"
            "from edgeseg.video import FrameSource\n"
            "from edgeseg.video.testing import FakeSegmenter, numbered_frame\n"
            "s = edgeseg.stream(FrameSource([numbered_frame(0)], loop=True), FakeSegmenter())\n"
            "it = iter(s)\n"
            "next(it)\n"
            "print('left without closing', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "left without closing" in done.stdout
