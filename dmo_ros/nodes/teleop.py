"""Teleop node: keyboard (any terminal, also over SSH) or joystick -> actions at 5 Hz.

Actions are physical, in the robot's action space (Flexiv: `ee_delta` relative pose per
0.2 s step; Go2: `cmd_vel` TwistStamped), published only while the deadman is held:
keyboard: a movement key was pressed within its hold window; joystick: the deadman button
is down. Releasing it stops the stream, which the drivers' watchdogs turn into a stop.

Keys, layout 'body' (the Go2; ROS axes: x forward, y left, yaw counter-clockwise):
  w / up, s / down     +x / -x   (vx)
  a / left, d / right  +y / -y   (vy)
  q, e                 +yaw / -yaw (wz)
layout 'image' (Push-T: the board frame has x right and y down in the overhead camera image,
so the keys move the pusher the way it moves on screen):
  w / up, s / down     -y / +y   (dy: up / down the image)
  a / left, d / right  -x / +x   (dx: left / right in the image)
both layouts:
  + / =, - / _         speed scale up / down (10 % steps, 10..100 % of the bounds)
  space                toggle intent   -> publishes std_msgs/Empty on `intent_toggle`
  m                    mark milestone  -> publishes std_msgs/Empty on `milestone_press`
The intent_button node owns the label (`intent`) and `milestone`; the terminal can be read
by one process only, so teleop forwards those two keys. Joystick intent/milestone buttons
are read by intent_button from `joy` directly.

Under `use_sim_time` the actions go out every control period of sim time, stamped with it;
the keyboard is polled, and key holds and the joystick timeout are measured, in wall time
(that is when a person presses keys).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Empty

from dmo_ros.errors import UserError
from dmo_ros.nodes.entry import build, run
from dmo_ros.nodes.keyboard import KeyReader
from dmo_ros.nodes.msgs import planar_pose, twist_stamped
from dmo_ros.nodes.params import declare
from dmo_ros.task import TaskConfig, load_task

# (positive keys, negative keys) per action dimension, per layout.
LAYOUTS = {
    "body": [(("w", "up"), ("s", "down")), (("a", "left"), ("d", "right")), (("q",), ("e",))],
    "image": [(("d", "right"), ("a", "left")), (("s", "down"), ("w", "up"))],
}
SPEED_UP, SPEED_DOWN = ("+", "="), ("-", "_")
INTENT_KEY, MILESTONE_KEY = "space", "m"
SPEED_STEP, SPEED_MIN, SPEED_MAX = 0.1, 0.1, 1.0


def action_class(task: TaskConfig) -> type:
    """The message class of the task's action topic."""
    return PoseStamped if task.robot == "flexiv" else TwistStamped


def action_message(task: TaskConfig, action: np.ndarray, stamp: Time) -> PoseStamped | TwistStamped:
    """A physical action as the robot's command: a relative pose in the base frame ('world')
    for the arm, a body-frame velocity ('base_link') for the Go2."""
    if task.robot == "flexiv":
        return planar_pose(stamp, "world", float(action[0]), float(action[1]))
    return twist_stamped(stamp, "base_link", action)


def scale_to_bounds(task: TaskConfig, command: np.ndarray) -> np.ndarray:
    """Command in [-1, 1] per dimension -> physical action; 0 stays 0 (bounds may be asymmetric)."""
    lo, hi = np.asarray(task.action_low), np.asarray(task.action_high)
    c = np.clip(command, -1.0, 1.0)
    return np.where(c >= 0, c * hi, -c * lo)


class KeyboardMapper:
    """Key presses -> command; each key stays held for a window after its last press.

    A terminal sends one character on press and, after the auto-repeat delay (0.25-0.7 s),
    repeats at 25-40 Hz; it never reports releases. So a first press holds for
    `first_hold_s` (bridging the auto-repeat delay) and a repeat for `repeat_hold_s`
    (the key stops soon after release).
    """

    def __init__(
        self,
        action_dim: int,
        layout: str = "body",
        speed: float = 0.5,
        first_hold_s: float = 0.7,
        repeat_hold_s: float = 0.25,
    ) -> None:
        if layout not in LAYOUTS or len(LAYOUTS[layout]) < action_dim:
            raise UserError(
                f"teleop.keyboard_layout: '{layout}' does not fit {action_dim} action dimensions "
                "(body: up to 3, image: 2)"
            )
        self.action_dim = action_dim
        self.moves = LAYOUTS[layout][:action_dim]
        self.speed = speed
        self.first_hold_s, self.repeat_hold_s = first_hold_s, repeat_hold_s
        self._until: dict[str, float] = {}  # key -> time its hold ends

    def press(self, key: str, now: float) -> str | None:
        """Register a key; returns 'intent_toggle', 'milestone' or 'speed' for those keys."""
        if key == INTENT_KEY:
            return "intent_toggle"
        if key == MILESTONE_KEY:
            return "milestone"
        if key in SPEED_UP or key in SPEED_DOWN:
            step = SPEED_STEP if key in SPEED_UP else -SPEED_STEP
            self.speed = float(np.clip(round(self.speed + step, 2), SPEED_MIN, SPEED_MAX))
            return "speed"
        held = self._until.get(key, -np.inf) > now
        self._until[key] = now + (self.repeat_hold_s if held else self.first_hold_s)
        return None

    def command(self, now: float) -> np.ndarray | None:
        """Command in [-1, 1] per dimension, or None when no movement key is held (deadman)."""
        held = {k for k, until in self._until.items() if until > now}
        out = np.zeros(self.action_dim, np.float32)
        active = False
        for dim, (plus, minus) in enumerate(self.moves):
            p, m = bool(held.intersection(plus)), bool(held.intersection(minus))
            active |= p or m
            out[dim] = float(p) - float(m)
        return out * self.speed if active else None


class JoyMapper:
    """Joystick axes (times their signs) -> command while the deadman button is down;
    buttons step the speed."""

    def __init__(
        self,
        axes: list[int],
        signs: list[float] | None = None,
        deadman_button: int = 4,
        speed_down_button: int = 2,
        speed_up_button: int = 3,
        deadzone: float = 0.1,
        speed: float = 0.5,
    ) -> None:
        self.axes, self.deadman = axes, deadman_button
        self.signs = np.asarray(signs if signs is not None else [1.0] * len(axes), np.float32)
        if len(self.signs) != len(axes):
            raise UserError("teleop: joy_axes and joy_axis_signs differ in length")
        self.speed_buttons = (speed_down_button, speed_up_button)
        self.deadzone, self.speed = deadzone, speed
        self._last: Joy | None = None

    def update(self, msg: Joy) -> None:
        prev = list(self._last.buttons) if self._last is not None else []
        for sign, button in zip((-1, 1), self.speed_buttons):
            if _edge(msg.buttons, prev, button):
                self.speed = float(np.clip(round(self.speed + sign * SPEED_STEP, 2), 0.1, 1.0))
        self._last = msg

    def command(self) -> np.ndarray | None:
        msg = self._last
        if msg is None or self.deadman >= len(msg.buttons) or not msg.buttons[self.deadman]:
            return None
        values = [msg.axes[i] if 0 <= i < len(msg.axes) else 0.0 for i in self.axes]
        v = np.asarray(values, np.float32)
        v[np.abs(v) < self.deadzone] = 0.0
        return v * self.signs * self.speed


def _edge(buttons, prev, index: int) -> bool:
    if index < 0 or index >= len(buttons) or not buttons[index]:
        return False
    return index >= len(prev) or not prev[index]


class TeleopNode(Node):
    """Publishes the operator's actions at the task's control rate while the deadman is held."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("teleop", **kwargs)
        self._reader: KeyReader | None = None
        build(self, self._setup)

    def _setup(self) -> None:
        task_file = declare(self, "task_config", "pusht.yaml", "task file: robot, actions, topics")
        self.task = load_task(task_file)
        self.input = declare(self, "input", "keyboard", "keyboard or joy")
        speed = declare(
            self, "speed", 0.5, "initial speed, fraction of the action bounds", 0.1, 1.0
        )
        device = declare(self, "keyboard_device", "", "terminal to read keys from ('' = stdin)")
        layout = declare(
            self, "keyboard_layout", "body", "body: w = forward (Go2); image: w = up on screen"
        )
        first = declare(self, "key_first_hold_s", 0.7, "hold after a first key press", 0.05, 5.0)
        repeat = declare(self, "key_repeat_hold_s", 0.25, "hold after a repeat", 0.05, 5.0)
        axes = declare(self, "joy_axes", [1, 0, 3], "joystick axis per action dimension")
        signs = declare(self, "joy_axis_signs", [1.0, 1.0, 1.0], "sign per action dimension")
        deadman = declare(self, "joy_deadman_button", 4, "button to hold while driving", 0, 63)
        slower = declare(self, "joy_speed_down_button", 2, "button: speed down", -1, 63)
        faster = declare(self, "joy_speed_up_button", 3, "button: speed up", -1, 63)
        deadzone = declare(self, "joy_deadzone", 0.1, "stick dead zone", 0.0, 0.9)
        self._joy_timeout = declare(
            self, "joy_timeout_s", 0.5, "stop when joy messages stop this long", 0.05, 10.0
        )
        self.actions_sent = 0
        self._pub = self.create_publisher(action_class(self.task), self.task.action_topic, 10)
        self._toggle_pub = self.create_publisher(Empty, "intent_toggle", 10)
        self._milestone_pub = self.create_publisher(Empty, "milestone_press", 10)
        if self.input == "keyboard":
            self._keys = KeyboardMapper(self.task.action_dim, layout, speed, first, repeat)
            self._reader = KeyReader(device or None)
            # 50 Hz of wall time: keys feel immediate whatever the sim clock does.
            self.create_timer(0.02, self._poll_keys, clock=Clock(clock_type=ClockType.STEADY_TIME))
            self.get_logger().info(_keyboard_help(self.task, layout))
        elif self.input == "joy":
            dim = self.task.action_dim
            self._joy = JoyMapper(
                list(axes)[:dim], list(signs)[:dim], deadman, slower, faster, deadzone, speed
            )
            self._joy_time = -np.inf
            self.create_subscription(Joy, "joy", self._on_joy, 10)
            self.get_logger().info(
                f"joystick teleop: hold button {deadman} to drive; reading sensor_msgs/Joy on "
                f"'{self.resolve_topic_name('joy')}' (start joy_node from the 'joy' package)"
            )
            self.create_timer(5.0, self._check_joy_source)
        else:
            raise UserError(f"teleop.input: unknown input '{self.input}' (keyboard or joy)")
        self.create_timer(self.task.control_period, self._step)

    def _poll_keys(self) -> None:
        now = time.monotonic()
        for key in self._reader.read(0.0):
            event = self._keys.press(key, now)
            if event == "intent_toggle":
                self._toggle_pub.publish(Empty())
            elif event == "milestone":
                self._milestone_pub.publish(Empty())
            elif event == "speed":
                self.get_logger().info(f"speed {self._keys.speed:.0%}")

    def _check_joy_source(self) -> None:
        if self.count_publishers("joy") == 0:
            self.get_logger().warning(
                "no sensor_msgs/Joy publisher on 'joy': nothing to drive with "
                "(run `ros2 run joy joy_node`, or publish Joy messages there)"
            )

    def _on_joy(self, msg: Joy) -> None:
        self._joy.update(msg)
        self._joy_time = time.monotonic()

    def command(self) -> np.ndarray | None:
        """The current command in [-1, 1] per dimension, or None (deadman released)."""
        if self.input == "keyboard":
            return self._keys.command(time.monotonic())
        if time.monotonic() - self._joy_time > self._joy_timeout:
            return None
        return self._joy.command()

    def _step(self) -> None:
        command = self.command()
        if command is None:
            return
        action = scale_to_bounds(self.task, command)
        self._pub.publish(action_message(self.task, action, self.get_clock().now().to_msg()))
        self.actions_sent += 1

    def destroy_node(self) -> None:
        if self._reader is not None:
            self._reader.close()
        super().destroy_node()


def keyboard_keys(task: TaskConfig, layout: str) -> list[str]:
    """What each key does, one item per key group (the log line, the viewer's legend)."""
    moves = [
        f"{plus[0]}/{minus[0]}: +/-{name}"
        for name, (plus, minus) in zip(task.action_names, LAYOUTS[layout])
    ]
    return [*moves, "+/-: speed", "space: toggle intent", "m: milestone", "Ctrl-C: quit"]


def _keyboard_help(task: TaskConfig, layout: str) -> str:
    return "keyboard teleop (hold a movement key): " + "; ".join(keyboard_keys(task, layout))


def main(args: list[str] | None = None) -> int:
    return run(TeleopNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
