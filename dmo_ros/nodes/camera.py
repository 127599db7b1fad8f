"""`camera`: a USB/RTSP camera (OpenCV) publishing rgb8 images on camera/image_raw.

The fixed overhead camera of the real Push-T table. `source` is a device index ("0") or a
URL/path (rtsp://..., a video file); frames are read and published at `fps` on a capture
thread, so a slow read never holds up the node's executor.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import Image

from dmo_ros.nodes import msgs
from dmo_ros.nodes.capture import CaptureThread
from dmo_ros.nodes.entry import build, run
from dmo_ros.nodes.params import declare

TOPIC = "camera/image_raw"


class CameraNode(Node):
    """Publishes an OpenCV camera's frames (RGB) at its frame rate."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("camera", **kwargs)
        self._camera = None
        self._capture = None
        build(self, self._setup)

    def _setup(self) -> None:
        # An index or a URL: `-p source:=0` arrives as an integer, a URL as a string.
        any_type = ParameterDescriptor(
            description="USB device index or URL/path (rtsp://, a video file)", dynamic_typing=True
        )
        source = self.declare_parameter("source", "0", any_type).value
        width = declare(self, "width", 640, "requested frame width (pixels)", 16, 4096)
        height = declare(self, "height", 480, "requested frame height (pixels)", 16, 4096)
        fps = declare(self, "fps", 30.0, "frames read and published per second", 1.0, 120.0)
        self._frame_id = declare(self, "frame_id", "camera", "frame of the images")

        from dmo_ros.hw.camera import OpenCVCamera

        self._camera = OpenCVCamera(source, width=width, height=height, fps=fps)
        self._publisher = self.create_publisher(Image, TOPIC, 5)
        self.frames = 0
        self._capture = CaptureThread(
            self._camera.read, self._publish, self._no_frame, fps, name="camera"
        )
        self.get_logger().info(f"camera {source} -> {TOPIC} at {fps:g} Hz")

    def _no_frame(self) -> None:
        self.get_logger().warning("no frame from the camera", throttle_duration_sec=5.0)

    def _publish(self, frame) -> None:
        stamp = self.get_clock().now().to_msg()
        self._publisher.publish(msgs.image(stamp, self._frame_id, frame))
        self.frames += 1

    def destroy_node(self) -> None:
        """Stop reading, release the camera, then destroy the node."""
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.close()
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
