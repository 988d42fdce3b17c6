"""Sources: every frame of a real video file in order, folders, DICOM cines, loops, clear errors, camera
reconnects with backoff."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.video import DicomSource, FrameSource, ImageFolderSource, SourceError, open_source
from edgeseg.video.capture import VideoSource
from edgeseg.video.testing import FakeCamera, frame_number, numbered_frame, write_clip

cv2 = pytest.importorskip("cv2")

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def read_all(source):
    with source:
        return [image for image, _ in source]


@pytest.mark.parametrize("name", ["clip.avi", "clip.mp4"])
def test_video_file_gives_every_frame_in_order(tmp_path, name):
    path = write_clip(tmp_path / name, frames=40, size=(96, 64), fps=20)
    source = open_source(str(path))
    frames = read_all(source)
    assert [frame_number(f) for f in frames] == list(range(40))
    assert frames[0].shape == (64, 96, 3) and frames[0].dtype == np.uint8
    assert source.size == (96, 64) and source.fps == pytest.approx(20)
    assert not source.is_live


def test_timestamps_increase(tmp_path):
    path = write_clip(tmp_path / "clip.avi", frames=5)
    with open_source(path) as source:
        stamps = [t for _, t in source]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


def test_loop_restarts_the_file(tmp_path):
    path = write_clip(tmp_path / "clip.avi", frames=5)
    numbers = []
    with open_source(path, loop=True) as source:
        for image, _ in source:
            numbers.append(frame_number(image))
            if len(numbers) == 12:
                break
    assert numbers == [0, 1, 2, 3, 4] * 2 + [0, 1]


def test_realtime_paces_a_file_and_marks_it_live(tmp_path):
    frames = [numbered_frame(i) for i in range(6)]
    with FrameSource(frames, fps=50, realtime=True) as source:
        stamps = [t for _, t in source]
    assert source.is_live
    assert stamps[-1] - stamps[0] == pytest.approx(5 / 50, abs=0.03)


def test_truncated_file_is_an_error_not_an_end(tmp_path):
    path = write_clip(tmp_path / "clip.avi", frames=60, size=(160, 120))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    source = open_source(path)
    seen = []
    with pytest.raises(SourceError, match=r"stopped decoding after \d+ of 60 frames \(truncated or corrupt"):
        with source:
            for image, _ in source:
                seen.append(frame_number(image))
    assert 0 < len(seen) < 60 and seen == list(range(len(seen)))


def test_image_folder_sorted_at_given_fps(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), numbered_frame(i))
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path), fps=12)
    assert isinstance(source, ImageFolderSource) and source.fps == 12
    assert [frame_number(f) for f in read_all(source)] == [0, 1, 2]
    assert open_source(str(tmp_path)).fps == 30  # the documented default


def test_image_folder_with_mixed_sizes_names_the_file(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), numbered_frame(0, (96, 64)))
    cv2.imwrite(str(tmp_path / "b.png"), numbered_frame(1, (64, 48)))
    with pytest.raises(SourceError, match=r"b\.png: image size is 64x48, expected 96x64"):
        read_all(open_source(tmp_path))


def test_dicom_echo_cine_from_pydicom_data():
    data = pytest.importorskip("pydicom.data")
    path = data.get_testdata_file("color3d_jpeg_baseline.dcm")
    if path is None:
        pytest.skip("pydicom-data's color3d_jpeg_baseline.dcm is not installed")
    source = open_source(path)
    assert isinstance(source, DicomSource)
    assert source.fps == pytest.approx(30, abs=0.1)  # FrameTime 33.333 ms
    frames = read_all(source)
    assert len(frames) == 120 and frames[0].shape == (480, 640, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[60])  # a moving heart, not one frame repeated
    assert source.decoder == "opencv"
    reference = read_all(DicomSource(path, decoder="pydicom"))  # pydicom's own JPEG decode + YBR -> RGB
    assert len(reference) == 120
    for i in (0, 59, 119):
        np.testing.assert_array_equal(frames[i], reference[i])


def test_gray_frames_become_three_equal_channels():
    gray = np.random.default_rng(5).integers(0, 256, (6, 9), dtype=np.uint8)
    got = read_all(FrameSource([gray, gray[:, :, None]]))
    for image in got:
        assert image.shape == (6, 9, 3) and image.flags.c_contiguous
        np.testing.assert_array_equal(image, np.stack([gray, gray, gray], axis=2))


def test_dicom_monochrome_12_bit_scales_to_uint8(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = np.zeros((3, 8, 10), np.uint16)
    frames[1] = 4095
    frames[2, :, :5] = 2048
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # ultrasound multi-frame
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8, 10, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.FrameTime = 40
    ds.PixelData = frames.tobytes()
    path = tmp_path / "cine"  # no suffix: found by the DICM magic
    ds.save_as(str(path), enforce_file_format=True)
    source = open_source(str(path))
    got = read_all(source)
    assert source.fps == pytest.approx(25)
    assert [g.shape for g in got] == [(8, 10, 3)] * 3
    assert got[0].max() == 0 and got[1].min() == 255
    assert (got[2][:, :5] == 128).all() and (got[2][:, 5:] == 0).all()


@pytest.mark.skipif(not (OPENCV_DATA / "Megamind.avi").exists(), reason="Debian opencv-doc is not installed")
def test_megamind_sample_video():
    source = open_source(OPENCV_DATA / "Megamind.avi")
    frames = read_all(source)
    assert len(frames) == 270 and source.size == (720, 528)


def test_missing_file_unknown_scheme_and_unopenable_file(tmp_path):
    with pytest.raises(SourceError, match="source file not found: .*nope.mp4"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(InputError, match=r"unknown scheme 'foo://'.*rtsp://"):
        open_source("foo://bar")
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video" * 10)
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(bogus).open()
    with pytest.raises(InputError, match="single image"):
        cv2.imwrite(str(tmp_path / "one.png"), numbered_frame(0))
        open_source(tmp_path / "one.png")


def test_csi_without_gstreamer_says_why():
    if cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match="GStreamer"):
        open_source("csi://0")


def test_live_camera_reconnects_with_backoff():
    FakeCamera.opens = 0
    plan = [3, None, 2]  # 3 frames, unplugged: first reopen fails, second delivers 2 more, then gone for good
    source = VideoSource(0, live=True, retries=2, backoff=0.01,
                         capture_factory=lambda target, api: FakeCamera(plan))
    got = []
    with pytest.raises(SourceError, match="disconnected; 2 reconnect attempts"), source:
        for image, _ in source:
            got.append(image)
    assert len(got) == 5 and source.reconnects == 1
    assert sum("reconnect attempt" in e for e in source.events) == 2 + 2
    assert any("reconnected after 2 attempt" in e for e in source.events)


def test_live_camera_that_never_opens_fails_after_its_retries():
    FakeCamera.opens = 0
    source = VideoSource(7, live=True, retries=2, backoff=0.01, capture_factory=lambda target, api: FakeCamera([None]))
    with pytest.raises(SourceError, match="cannot open camera '7'.*; 2 reconnect attempts over .* failed too"):
        source.open()
    assert FakeCamera.opens == 3
    no_retry = VideoSource(7, live=True, retries=0, capture_factory=lambda target, api: FakeCamera([None]))
    with pytest.raises(SourceError, match="cannot open camera '7'"):
        no_retry.open()
