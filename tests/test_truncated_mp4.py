"""An .mp4 cut in half (its index, the 'moov' box, is written last) is reported as "truncated or missing index",
not with the generic list of causes (issue 16 item 8). Real files written by OpenCV and by PyAV."""

from __future__ import annotations

import pytest

from edgeseg.video import open_source
from edgeseg.video.capture import mp4_problem
from edgeseg.video.errors import SourceError
from edgeseg.video.testing import count_frames, write_clip

cv2 = pytest.importorskip("cv2")


@pytest.mark.parametrize("codec", ["mp4v", "h264"])
def test_mp4_cut_in_half_says_truncated_or_missing_index(tmp_path, codec):
    if codec == "h264":
        pytest.importorskip("av")
    whole = write_clip(tmp_path / "whole.mp4", frames=30, codec=codec)
    assert count_frames(whole) == 30 and mp4_problem(whole) is None
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"cannot open video .*cut\.mp4.*truncated or missing index "
                                          r"\(incomplete MP4: no 'moov' box; the file ends inside a box"):
        open_source(cut).open()


def test_other_unopenable_files_keep_the_generic_message(tmp_path):
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video" * 10)
    assert mp4_problem(bogus) is None
    with pytest.raises(SourceError, match="wrong index/path"):
        open_source(bogus).open()
    avi = write_clip(tmp_path / "clip.avi", frames=3)
    assert mp4_problem(avi) is None  # a RIFF file is not ISO base media
