"""Auto-play node: the scripted tele-operator (`dmo_ros.sim.auto_play.AutoPlay`) on ROS topics.

Works from ground truth only, so it needs the simulated driver: the robot state (`ee_pose`
or `odom`), `task/object_pose`, `task/goal_pose`, `task/success` (std_msgs/Bool) and, where
the sim has one, `task/coverage` (std_msgs/Float32). On every simulator step (each camera
frame, which the driver publishes after that step's state) it publishes the action on the
task's action topic and its intent label on `intent_set` (std_msgs/Bool), which the
intent_button node turns into the latched `intent` label: one owner of `intent`, whatever
drives it. A task attempt that succeeds presses the milestone once: std_msgs/Empty on
`milestone_press`, which the intent_button node republishes on `milestone`. The sim driver
does not reset a scene at success, so the operator stays there a moment, then plays on.
Answering the frame puts the action into the very next step (a timer would add up to a step
of latency and, on the sim clock, always the full step), and the action is logged at the
frame's time: in the bag, actions[t] follows frames[t] at any `time_scale`.

Contact ratio: the fraction of simulator steps in which the robot touched the object, from
the sim driver's `task/contact` (std_msgs/Bool, one per step).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Empty, Float32

from dmo_ros.nodes.entry import build, run
from dmo_ros.nodes.msgs import quaternion_yaw
from dmo_ros.nodes.params import declare
from dmo_ros.nodes.teleop import action_class, action_message
from dmo_ros.sim.auto_play import AutoPlay
from dmo_ros.task import load_task


def _planar(pose) -> np.ndarray:
    """(x, y, yaw) of a geometry_msgs/Pose."""
    return np.array([pose.position.x, pose.position.y, quaternion_yaw(pose.orientation)])


class AutoPlayNode(Node):
    """Drives the simulated robot like a person at play; `contact_ratio`, `intent_ratio`,
    `attempts`, `successes`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("auto_play", **kwargs)
        build(self, self._setup)

    def _setup(self) -> None:
        task_file = declare(self, "task_config", "pusht.yaml", "task file: robot, actions, topics")
        seed = declare(self, "seed", 0, "seed of the scripted operator", 0, 2**31 - 1)
        self.task = load_task(task_file)
        self._player = AutoPlay(self.task.robot, seed=seed)
        self.steps = self.intent_steps = 0
        self.sim_steps = self.contact_steps = 0  # from task/contact
        self._robot: np.ndarray | None = None
        self._object: np.ndarray | None = None
        self._goal: np.ndarray | None = None
        self._success = False  # task/success (False until the first one arrives)
        self._coverage: float | None = None  # task/coverage, where the sim publishes it
        self.milestones = 0

        self._action_pub = self.create_publisher(
            action_class(self.task), self.task.action_topic, 10
        )
        self._intent_pub = self.create_publisher(Bool, "intent_set", 10)
        self._milestone_pub = self.create_publisher(Empty, "milestone_press", 10)
        if self.task.robot == "flexiv":
            self.create_subscription(PoseStamped, self.task.state_topic, self._on_ee, 10)
        else:
            self.create_subscription(Odometry, self.task.state_topic, self._on_odom, 10)
        self.create_subscription(PoseStamped, "task/object_pose", self._on_object, 10)
        self.create_subscription(PoseStamped, "task/goal_pose", self._on_goal, 10)
        self.create_subscription(Bool, "task/contact", self._on_contact, 10)
        self.create_subscription(Bool, "task/success", self._on_success, 10)
        self.create_subscription(Float32, "task/coverage", self._on_coverage, 10)
        # The frame is the step's trigger only: raw, never deserialised.
        self.create_subscription(
            Image, self.task.image_topic, self._on_frame, qos_profile_sensor_data, raw=True
        )

    def _on_ee(self, msg: PoseStamped) -> None:
        self._robot = _planar(msg.pose)

    def _on_odom(self, msg: Odometry) -> None:
        self._robot = _planar(msg.pose.pose)

    def _on_object(self, msg: PoseStamped) -> None:
        self._object = _planar(msg.pose)

    def _on_goal(self, msg: PoseStamped) -> None:
        self._goal = _planar(msg.pose)

    def _on_success(self, msg: Bool) -> None:
        self._success = bool(msg.data)

    def _on_coverage(self, msg: Float32) -> None:
        self._coverage = float(msg.data)

    def _on_contact(self, msg: Bool) -> None:
        self.sim_steps += 1
        self.contact_steps += bool(msg.data)

    def ground_truth(self) -> dict | None:
        """The AutoPlay ground-truth dict from the latest messages, or None before all arrived."""
        if self._robot is None or self._object is None or self._goal is None:
            return None
        if self.task.robot == "flexiv":
            gt = {"ee": self._robot[:2], "object": self._object, "goal": self._goal}
        else:
            gt = {"base": self._robot, "cube": self._object, "goal": self._goal[:2]}
        gt["success"] = self._success
        if self._coverage is not None:
            gt["coverage"] = self._coverage
        return gt

    def _on_frame(self, _data: bytes) -> None:
        gt = self.ground_truth()
        if gt is None:
            return  # the driver's first state has not arrived yet
        action, intent, milestone = self._player.act(gt)
        stamp = self.get_clock().now().to_msg()
        self._intent_pub.publish(Bool(data=bool(intent)))
        if milestone:  # pressed with the label still on: the success is part of the attempt
            self._milestone_pub.publish(Empty())
            self.milestones += 1
        self._action_pub.publish(action_message(self.task, np.asarray(action), stamp))
        self.steps += 1
        self.intent_steps += bool(intent)

    @property
    def contact_ratio(self) -> float | None:
        """Fraction of simulator steps with object contact; None without task/contact."""
        return self.contact_steps / self.sim_steps if self.sim_steps else None

    @property
    def intent_ratio(self) -> float:
        return self.intent_steps / max(1, self.steps)

    @property
    def attempts(self) -> int:
        """Task attempts started (intent spans)."""
        return self._player.attempts

    @property
    def successes(self) -> int:
        """Task attempts that reached task/success (one milestone each)."""
        return self._player.successes

    def report(self) -> str:
        ratio = self.contact_ratio
        contact = "unknown (no task/contact)" if ratio is None else f"{ratio:.0%}"
        rate = f" ({self.successes / self.attempts:.0%})" if self.attempts else ""
        return (
            f"auto-play: {self.steps} steps, intent on {self.intent_ratio:.0%} of them; "
            f"{self.attempts} task attempts, {self.successes} succeeded{rate}; "
            f"object contact in {contact} of {self.sim_steps} simulator steps"
        )

    def destroy_node(self) -> None:
        if getattr(self, "steps", 0):
            self.get_logger().info(self.report())
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run(AutoPlayNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
