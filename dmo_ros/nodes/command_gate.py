"""The one door every command passes before a robot: the emergency-stop latch, then the guard.

`estop` (std_srvs/SetBool) latches until released; while latched no command gets through.
`estop/active` (std_msgs/Bool, transient-local) tells late joiners the latch state.
A NaN/inf or malformed command is refused and logged; an out-of-range one is clipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
from std_srvs.srv import SetBool

from dmo_ros.hw.command_guard import BadCommand, CommandGuard

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class CommandGate:
    """Emergency-stop latch plus `CommandGuard`; `admit` returns the command that may pass."""

    def __init__(
        self,
        node: Node,
        low: Sequence[float],
        high: Sequence[float],
        names: Sequence[str],
        on_estop: Callable[[bool], None],
        callback_group: CallbackGroup,
    ) -> None:
        self._node = node
        self._guard = CommandGuard(low, high, names)
        self._on_estop = on_estop
        self.latched = False
        self._state = node.create_publisher(Bool, "estop/active", LATCHED)
        self._state.publish(Bool(data=False))
        node.create_service(SetBool, "estop", self._on_request, callback_group=callback_group)

    def admit(self, command: Sequence[float]) -> np.ndarray | None:
        """The clipped command, or None when it is refused or the estop is latched."""
        log = self._node.get_logger()
        if self.latched:
            log.warning("estop latched: command ignored", throttle_duration_sec=2.0)
            return None
        try:
            return self._guard.check(command)
        except BadCommand as exc:
            log.warning(f"rejected: {exc}", throttle_duration_sec=1.0)
            return None

    def _on_request(self, request: SetBool.Request, response: SetBool.Response):
        engage = bool(request.data)
        response.success, response.message = True, f"estop {'latched' if engage else 'released'}"
        if engage == self.latched:
            return response
        if engage:  # latch first: from here on no command passes, whatever the robot answers
            self._set(True)
        try:
            self._on_estop(engage)
        except Exception as exc:  # engage: the latch holds; release: it stays latched
            response.success = False
            response.message = f"estop {'engage' if engage else 'release'} failed: {exc}"
            self._node.get_logger().error(response.message)
            return response
        if not engage:
            self._set(False)
        self._node.get_logger().warning(f"estop {'LATCHED' if engage else 'released'}")
        return response

    def _set(self, latched: bool) -> None:
        self.latched = latched
        self._state.publish(Bool(data=latched))
