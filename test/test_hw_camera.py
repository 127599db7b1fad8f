"""OpenCVCamera on a video file written here (there is no camera on this machine)."""

import cv2
import numpy as np
import pytest

from dmo_ros.errors import UserError
from dmo_ros.hw.camera import OpenCVCamera

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]  # RGB, one per frame


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "table.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 60))
    assert writer.isOpened()
    for rgb in COLOURS:
        frame = np.zeros((60, 80, 3), np.uint8)
        frame[:] = rgb[::-1]  # OpenCV writes BGR
        writer.write(frame)
    writer.release()
    return path


def test_frames_come_out_rgb_in_order_then_none(video):
    with OpenCVCamera(str(video), width=80, height=60, fps=10) as camera:
        for rgb in COLOURS:
            frame = camera.read()
            assert frame.dtype == np.uint8 and frame.shape == (60, 80, 3)
            assert frame.reshape(-1, 3).mean(axis=0) == pytest.approx(rgb, abs=8)
        assert camera.read() is None  # end of the file
    assert camera.read() is None  # closed


def test_frames_are_resized_to_the_configured_size(video):
    with OpenCVCamera(video.as_posix(), width=32, height=24) as camera:
        frame = camera.read()
    assert frame.shape == (24, 32, 3)
    assert frame.reshape(-1, 3).mean(axis=0) == pytest.approx(COLOURS[0], abs=8)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("/nonexistent/table.mp4", "no such video file"),
        (57, "cannot open the device /dev/video57"),
        ("57", "cannot open the device /dev/video57"),
        ("rtsp://127.0.0.1:9/nothing", "cannot open the source"),
    ],
)
def test_a_source_that_cannot_be_opened_is_one_clear_line(source, words):
    with pytest.raises(UserError) as info:  # never hangs (pytest's timeout would say)
        OpenCVCamera(source, open_timeout=2.0)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_not_a_video_is_refused(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not a video")
    with pytest.raises(UserError, match="cannot open"):
        OpenCVCamera(str(junk))


def test_bad_size_is_refused(video):
    with pytest.raises(UserError, match="positive"):
        OpenCVCamera(str(video), width=0)
