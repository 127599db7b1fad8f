"""camera node over real DDS: frames of a video file (OpenCV) arrive as rgb8 images."""

import subprocess

import cv2
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from support.ros_probe import Probe, Spinning

from dmo_ros.config import ros_parameters
from dmo_ros.nodes.camera import CameraNode
from dmo_ros.nodes.runtime import parameter_overrides

RED_RGB = (230, 20, 20)


@pytest.fixture
def video(tmp_path):
    """A 64x48 MJPG clip: red frames with a white square moving right."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(60):
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[:] = RED_RGB
        rgb[16:32, i % 48 : i % 48 + 16] = 255
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_frames_arrive_as_rgb8_in_order(video):
    probe = Probe("camera_probe")
    probe.listen(Image, "camera/image_raw", qos_profile_sensor_data)
    overrides = parameter_overrides(
        "flexiv_nodes.yaml", "camera", source=str(video), width=64, height=48, fps=20.0,
        frame_id="overhead",
    )  # fmt: skip
    camera = Spinning(lambda c: CameraNode(context=c, parameter_overrides=overrides))
    try:
        assert all(
            camera.node.has_parameter(k) for k in ros_parameters("flexiv_nodes.yaml", "camera")
        )
        probe.wait(lambda: probe.count("camera/image_raw") >= 12, 15.0)
    finally:
        camera.close()
        probe.close()
    received = probe.received("camera/image_raw")
    msg = received[-1][1]
    assert (msg.height, msg.width, msg.encoding, msg.step) == (48, 64, "rgb8", 64 * 3)
    assert msg.header.frame_id == "overhead"
    image = np.frombuffer(bytes(msg.data), np.uint8).reshape(48, 64, 3)
    assert image[4, 4].tolist() == pytest.approx(RED_RGB, abs=25)  # RGB order, not BGR
    frames = [bytes(m.data) for _, m in received]
    assert len(set(frames)) > len(frames) // 2  # successive frames, not one repeated
    # The publish rate is measured in bench/, not asserted here: a loaded CI machine slows it.


def test_missing_source_exits_2_with_one_line(python, tmp_path):
    missing = tmp_path / "nothing.mp4"
    done = subprocess.run(
        [python, "-m", "dmo_ros.nodes.camera", "--ros-args", "-p", f"source:={missing}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "no such video file" in lines[0], lines
