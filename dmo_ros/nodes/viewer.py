"""Viewer node: the live camera image (scaled up), the intent label and the keys in a window.

Tele-operating a simulated robot from a terminal is blind without it: the pip-only path has
no RViz, so the window is OpenCV's (`dmo-ros collect --view`, `collect_play.launch.py
view:=true`, `ros2 run dmo_ros viewer`). Subscribes to the camera (sensor-data QoS) and to the
latched `intent`; the callbacks only keep the latest of each, and a wall-clock timer draws
(HighGUI wants every call from one thread; on the sim clock the window would freeze with
it). Keys are read by the teleop from its terminal; the window only lists them. Without a
display the node refuses to start, in one line (see window.display_problem).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Bool

from dmo_ros.data.images import image_to_array
from dmo_ros.errors import UserError
from dmo_ros.nodes.entry import build, run
from dmo_ros.nodes.intent_button import LATCHED_QOS
from dmo_ros.nodes.params import declare
from dmo_ros.nodes.teleop import LAYOUTS, keyboard_keys
from dmo_ros.nodes.window import Window, compose, display_problem
from dmo_ros.task import load_task

LEGENDS = {
    "joy": ["joystick: hold the deadman button to drive", "intent and milestone: their buttons"],
    "auto": ["auto-play drives: no keys"],
}


class ViewerNode(Node):
    """Shows the camera; `show` replaces the window (tests only: they have no display)."""

    def __init__(self, show: Callable[[np.ndarray], None] | None = None, **kwargs: Any) -> None:
        super().__init__("viewer", **kwargs)
        self._window: Window | None = None
        build(self, lambda: self._setup(show))

    def _setup(self, show: Callable[[np.ndarray], None] | None) -> None:
        task_file = declare(self, "task_config", "pusht.yaml", "task file: camera, intent topics")
        teleop = declare(self, "teleop", "keyboard", "whose keys to list: keyboard | joy | auto")
        layout = declare(self, "keyboard_layout", "body", "keyboard: the teleop's key layout")
        self._height = declare(
            self, "display_height", 512, "scale the camera up to at most this (px)", 64, 4096
        )
        rate = declare(self, "rate_hz", 30.0, "redraws per second of wall time", 1.0, 120.0)
        title = declare(self, "window_title", "dmo_ros camera", "window title")
        task = load_task(task_file)
        if teleop == "keyboard":
            if layout not in LAYOUTS:
                raise UserError(f"viewer.keyboard_layout: unknown layout '{layout}'")
            self._keys = [*keyboard_keys(task, layout), "(type in the teleop's terminal)"]
        elif teleop in LEGENDS:
            self._keys = LEGENDS[teleop]
        else:
            raise UserError(f"viewer.teleop: unknown teleop '{teleop}' (keyboard, joy or auto)")
        if show is None:
            problem = display_problem()
            if problem is not None:
                raise UserError(f"viewer: {problem}")
            self._window = Window(title)
            show = self._window.show
        self._show = show
        self.frames = 0
        self.intent: bool | None = None
        self._frame: np.ndarray | None = None
        self._first_s = self._stamp_s = 0.0  # stamps of the first and the latest frame
        self._view: np.ndarray | None = None  # drawn again only when something changed
        self.create_subscription(Image, task.image_topic, self._on_image, qos_profile_sensor_data)
        self.create_subscription(Bool, task.intent_topic, self._on_intent, LATCHED_QOS)
        self.create_timer(1.0 / rate, self._draw, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _on_image(self, msg: Image) -> None:
        try:
            self._frame = image_to_array(msg)
        except UserError as exc:
            self.get_logger().warning(f"camera: {exc}", throttle_duration_sec=5.0)
            return
        self._stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if self.frames == 0:
            self._first_s = self._stamp_s
        self.frames += 1
        self._view = None

    def _on_intent(self, msg: Bool) -> None:
        self.intent = bool(msg.data)
        self._view = None

    def _draw(self) -> None:
        if self._window is not None and self._window.closed:
            return
        if self._view is None:
            since = self._stamp_s - self._first_s
            caption = f"frame {self.frames}   t {since:.1f} s" if self.frames else ""
            self._view = compose(self._frame, self.intent, self._keys, self._height, caption)
        self._show(self._view)
        if self._window is not None and self._window.closed:
            self.get_logger().info("camera window closed (the other nodes go on)")

    def destroy_node(self) -> None:
        if self._window is not None:
            self._window.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run(ViewerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
