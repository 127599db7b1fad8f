"""Intent button node: the one owner of the intent label and of milestone marks.

Outputs: `intent` (std_msgs/Bool, transient-local so late joiners such as the recorder get
the current label at once; republished at 5 Hz and immediately on every change) and
`milestone` (std_msgs/Empty). Inputs, so that any source can drive the label without a
second publisher on `intent`:
  * `intent_toggle` (std_msgs/Empty): flip the label (keyboard teleop's intent key);
  * `intent_set` (std_msgs/Bool): set the label (auto-play, scripts);
  * `milestone_press` (std_msgs/Empty): mark a milestone (keyboard teleop's milestone key);
  * `joy` (sensor_msgs/Joy): the configured buttons toggle / mark on their press edge.
"""

from __future__ import annotations

from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Empty

from dmo_ros.nodes.entry import build, run
from dmo_ros.nodes.params import declare

LATCHED_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class IntentButtonNode(Node):
    """Holds the intent label; `intent`, `toggles` and `milestones` are readable for summaries."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("intent_button", **kwargs)
        build(self, self._setup)

    def _setup(self) -> None:
        self.intent = declare(self, "initial", False, "intent label at start")
        rate = declare(self, "rate_hz", 5.0, "republish rate of the intent label", 0.1, 100.0)
        self._toggle_button = declare(
            self, "joy_toggle_button", 0, "joystick button that toggles intent (-1: none)", -1, 63
        )
        self._milestone_button = declare(
            self,
            "joy_milestone_button",
            1,
            "joystick button that marks a milestone (-1: none)",
            -1,
            63,
        )
        self.toggles = 0
        self.milestones = 0
        self._buttons: list[int] = []
        self._intent_pub = self.create_publisher(Bool, "intent", LATCHED_QOS)
        self._milestone_pub = self.create_publisher(Empty, "milestone", 10)
        self.create_subscription(Empty, "intent_toggle", lambda _: self.toggle(), 10)
        self.create_subscription(Bool, "intent_set", lambda m: self.set(m.data), 10)
        self.create_subscription(Empty, "milestone_press", lambda _: self.mark(), 10)
        self.create_subscription(Joy, "joy", self._on_joy, 10)
        self.create_timer(1.0 / rate, self._publish)
        self._publish()

    def toggle(self) -> None:
        self.set(not self.intent)

    def set(self, value: bool) -> None:
        value = bool(value)
        if value != self.intent:
            self.intent = value
            self.toggles += 1
            self.get_logger().info(f"intent {'ON' if value else 'off'}")
            self._publish()

    def mark(self) -> None:
        self.milestones += 1
        self._milestone_pub.publish(Empty())
        self.get_logger().info(f"milestone {self.milestones}")

    def _on_joy(self, msg: Joy) -> None:
        buttons = list(msg.buttons)
        if self._pressed(buttons, self._toggle_button):
            self.toggle()
        if self._pressed(buttons, self._milestone_button):
            self.mark()
        self._buttons = buttons

    def _pressed(self, buttons: list[int], index: int) -> bool:
        """True on the press edge of button `index` (held buttons fire once)."""
        if index < 0 or index >= len(buttons) or not buttons[index]:
            return False
        return index >= len(self._buttons) or not self._buttons[index]

    def _publish(self) -> None:
        self._intent_pub.publish(Bool(data=self.intent))


def main(args: list[str] | None = None) -> int:
    return run(IntentButtonNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
