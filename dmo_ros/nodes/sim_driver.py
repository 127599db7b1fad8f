"""A simulated robot behind the driver topics, stepped every control period (both `sim` backends).

The simulated scene changes only at a control step, so the camera image is the one the step
returns and is published right after it with the step's stamp: the sim camera runs at the
control rate (5 Hz), and the frame a policy sees is never older than the step it acts on.
A step uses the latest command if it is younger than `command_timeout` (one control period by
default), otherwise a zero command: losing the command stream stops the robot within a period.
Deltas (Flexiv) are consumed by the step that uses them; applying one twice would move twice.

Every call into the simulator runs on one worker thread of its own: MuJoCo's EGL context can
be current in one thread only, and a multi-threaded executor runs callbacks on any thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float32
from std_srvs.srv import Trigger

from dmo_ros.nodes import msgs


class SimDriver:
    """Steps `sim` at `control_period` with the latest admitted command and publishes the result.

    Publishes `image_topic` (rgb8), task/success, task/coverage (when the sim reports one),
    task/contact (robot touched the object during the step), task/object_pose and
    task/goal_pose (ground truth, evaluation and auto-play only); calls
    `publish_state(ground_truth, stamp)` for the robot's own state topic. Serves `reset`.
    """

    def __init__(
        self,
        node: Node,
        make_sim: Callable[[], Any],
        *,
        control_period: float,
        command_timeout: float,
        consume: bool,
        frame_id: str,
        camera_frame_id: str,
        image_topic: str,
        object_key: str,
        seed: int,
        publish_state: Callable[[dict, Time], None],
        callback_group: CallbackGroup,
    ) -> None:
        self._node = node
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim")
        try:
            self._sim = sim = self._run(make_sim)
        except BaseException:
            self._worker.shutdown()
            raise
        self._timeout = command_timeout
        self._consume = consume
        self._frame_id = frame_id
        self._camera_frame_id = camera_frame_id
        self._object_key = object_key
        self._publish_state = publish_state
        self._seed = seed
        self._zero = np.zeros(sim.action_space.shape, dtype=np.float32)
        self._pending: tuple[float, np.ndarray] | None = None
        self.steps = 0
        self._obs, _ = self._run(lambda: sim.reset(seed=seed))
        gt = self._run(sim.ground_truth)

        self._image = node.create_publisher(Image, image_topic, 5)
        self._success = node.create_publisher(Bool, "task/success", 10)
        self._contact = node.create_publisher(Bool, "task/contact", 10)
        self._coverage = (
            node.create_publisher(Float32, "task/coverage", 10) if "coverage" in gt else None
        )
        self._object = node.create_publisher(PoseStamped, "task/object_pose", 10)
        self._goal = node.create_publisher(PoseStamped, "task/goal_pose", 10)
        node.create_timer(
            control_period, lambda: self._run(self._step), callback_group=callback_group
        )
        node.create_service(
            Trigger,
            "reset",
            lambda request, response: self._run(lambda: self._reset(response)),
            callback_group=callback_group,
        )
        self._run(self._publish)

    def _run(self, call: Callable[[], Any]) -> Any:
        """Run `call` on the simulator's thread and return its result."""
        return self._worker.submit(call).result()

    def command(self, action: np.ndarray) -> None:
        """Use `action` (physical units, already admitted by the command gate) at the next step."""
        self._pending = (time.monotonic(), np.asarray(action, dtype=np.float32))

    def halt(self) -> None:
        """Drop any pending command: the next steps get zero commands."""
        self._pending = None

    def _step(self) -> None:
        action = self._zero
        if self._pending is not None:
            received, command = self._pending
            if time.monotonic() - received <= self._timeout:
                action = command
            if self._consume or action is self._zero:
                self._pending = None
        self._obs, *_ = self._sim.step(action)
        self.steps += 1
        self._publish()

    def close(self) -> None:
        """Release the simulator (its renderers) on its own thread, then stop the thread."""
        self._run(self._sim.close)
        self._worker.shutdown()

    def _reset(self, response: Trigger.Response) -> Trigger.Response:
        self._seed += 1
        self._pending = None
        self._obs, _ = self._sim.reset(seed=self._seed)
        self._publish()
        response.success = True
        response.message = f"scene reset with seed {self._seed}"
        self._node.get_logger().info(response.message)
        return response

    def _publish(self) -> None:
        stamp = self._node.get_clock().now().to_msg()
        gt = self._sim.ground_truth()
        self._publish_state(gt, stamp)
        self._success.publish(Bool(data=bool(gt["success"])))
        self._contact.publish(Bool(data=bool(gt["contact"])))
        if self._coverage is not None:
            self._coverage.publish(Float32(data=float(gt["coverage"])))
        obj, goal = gt[self._object_key], gt["goal"]
        self._object.publish(msgs.planar_pose(stamp, self._frame_id, obj[0], obj[1], obj[2]))
        goal_yaw = goal[2] if len(goal) > 2 else 0.0
        self._goal.publish(msgs.planar_pose(stamp, self._frame_id, goal[0], goal[1], goal_yaw))
        # The image last: a node that acts on each frame finds this step's state already sent.
        self._image.publish(msgs.image(stamp, self._camera_frame_id, self._obs))


def offer_no_reset(node: Node, backend: str, callback_group: CallbackGroup) -> None:
    """A `reset` service that says why it cannot reset a real robot's scene."""

    def refuse(_request: Trigger.Request, response: Trigger.Response):
        response.success = False
        response.message = f"reset needs the sim backend (this driver runs '{backend}')"
        return response

    node.create_service(Trigger, "reset", refuse, callback_group=callback_group)
