"""`flexiv_driver`: the Flexiv Rizon (Push-T) behind ROS 2, simulated or real.

backend `sim`: the Push-T table simulator, stepped at the control period, publishing its
camera (camera/image_raw, 5 Hz), ee_pose and the task ground truth, and owning the sim clock
(`/clock`, `time_scale` times real time; see sim_driver). backend `flexiv`: a Rizon
through flexivrdk (`FlexivArm`); the fixed camera is the `camera` node's job.
Subscribes to `ee_delta` (geometry_msgs/PoseStamped: a relative pose per 0.2 s step,
position.x/y = dx/dy in metres); serves `reset` (sim: a new scene at the next step, after a
`reset` event, std_msgs/Header, on the topic of that name) and `estop` (latched; real: Stop()).
Sim scenes: `near_position` > 0 draws every scene near the goal (eval policy's near variant),
`reset_seed` sets the first reset's seed, and `task/step` says which scene and step the ground
truth is of (see sim_driver).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from dmo_ros.errors import UserError
from dmo_ros.nodes import msgs
from dmo_ros.nodes.command_gate import CommandGate
from dmo_ros.nodes.entry import build, run
from dmo_ros.nodes.params import declare
from dmo_ros.nodes.sim_driver import SimDriver, offer_no_reset
from dmo_ros.task import load_task

BACKENDS = ("sim", "flexiv")
COMMANDS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class FlexivDriver(Node):
    """Driver node for the Flexiv arm; `sdk` injects a flexivrdk stand-in (tests only)."""

    def __init__(self, sdk: Any = None, **kwargs: Any) -> None:
        super().__init__("flexiv_driver", **kwargs)
        self._arm = None
        self._sim: SimDriver | None = None
        build(self, lambda: self._setup(sdk))

    def _setup(self, sdk: Any) -> None:
        backend = declare(self, "backend", "sim", "sim (Push-T simulator) | flexiv (real arm)")
        task_file = declare(self, "task_config", "pusht.yaml", "task file: action bounds, period")
        self._frame_id = declare(self, "frame_id", "world", "frame of ee_pose and task poses")
        camera_frame = declare(self, "camera_frame_id", "camera", "frame of the sim camera image")
        image_size = declare(self, "image_size", 64, "sim camera image size (pixels)", 16, 1024)
        seed = declare(self, "seed", 0, "sim: seed of the first scene; +1 per reset", 0, 2**31 - 1)
        reset_seed = declare(
            self,
            "reset_seed",
            -1,
            "sim: seed of the first reset's scene (-1: seed + 1)",
            -1,
            2**31 - 1,
        )
        near = declare(
            self,
            "near_position",
            0.0,
            "sim: T within this fraction of the board of its goal (0: gym-pusht's starts)",
            0.0,
            1.0,
        )
        near_angle = declare(
            self,
            "near_angle_deg",
            30.0,
            "sim: with near_position, T within +-this of its goal",
            0.0,
            180.0,
        )
        timeout = declare(
            self, "command_timeout", 0.2, "sim: a delta older than this (s) is not used", 0.01, 5.0
        )
        time_scale = declare(
            self, "time_scale", 1.0, "sim: sim seconds per wall second (1: real time)", 0.01, 100.0
        )
        robot_sn = declare(self, "robot_sn", "", "flexiv: serial number, e.g. Rizon4-062468")
        connect_timeout = declare(
            self, "connect_timeout", 30.0, "flexiv: give up connecting after (s)", 1.0, 300.0
        )
        ws_low = declare(
            self, "workspace_low", [0.30, -0.30, 0.05], "flexiv: TCP box lower corner x,y,z (m)"
        )
        ws_high = declare(
            self, "workspace_high", [0.80, 0.30, 0.40], "flexiv: TCP box upper corner x,y,z (m)"
        )
        stream_hz = declare(self, "stream_hz", 100.0, "flexiv: target streaming rate", 1.0, 1000.0)
        max_vel = declare(self, "max_linear_vel", 0.2, "flexiv: TCP speed limit (m/s)", 0.01, 1.0)
        state_rate = declare(self, "state_rate", 10.0, "flexiv: ee_pose rate (Hz)", 1.0, 100.0)
        self._backend = backend
        if backend not in BACKENDS:
            raise UserError(
                f"flexiv_driver: unknown backend '{backend}' "
                f"(expected one of: {', '.join(BACKENDS)})"
            )
        if backend != "sim" and time_scale != 1.0:
            raise UserError(
                f"{self.get_name()}: time_scale {time_scale:g} needs the sim backend "
                "(a real robot runs in real time)"
            )
        task = load_task(task_file)
        self._period = task.control_period
        control = MutuallyExclusiveCallbackGroup()  # commands, steps, estop, reset: one at a time
        self._pose = self.create_publisher(PoseStamped, task.state_topic, 10)
        self._gate = CommandGate(
            self, task.action_low, task.action_high, task.action_names, self._on_estop, control
        )
        if backend == "sim":
            from dmo_ros.sim import make_sim  # the sims pull in pygame/pymunk: only when used

            self._sim = SimDriver(
                self,
                lambda: make_sim(
                    "flexiv", image_size=image_size, control_period=task.control_period
                ),
                control_period=task.control_period,
                command_timeout=timeout,
                consume=True,
                frame_id=self._frame_id,
                camera_frame_id=camera_frame,
                image_topic=task.image_topic,
                object_key="object",
                seed=seed,
                publish_state=self._publish_sim_pose,
                callback_group=control,
                time_scale=time_scale,
                # as rl/sim_forward.reset_options: the starts of `dmo-ros eval policy --variant`
                reset_options={"near": (near, float(np.radians(near_angle)))} if near else None,
                first_reset_seed=None if reset_seed < 0 else reset_seed,
            )
        else:
            from dmo_ros.hw.flexiv import FlexivArm

            if not robot_sn:
                raise UserError(
                    "flexiv_driver: the flexiv backend needs robot_sn (e.g. Rizon4-062468)"
                )
            self._arm = FlexivArm(
                robot_sn,
                ws_low,
                ws_high,
                max_step=max(abs(v) for v in (*task.action_low, *task.action_high)),
                stream_hz=stream_hz,
                control_period=task.control_period,
                sdk=sdk,
                max_linear_vel=max_vel,
                on_fault=lambda message: self.get_logger().error(message),
            )
            self._connect_timeout = connect_timeout
            self._arm.connect(timeout=connect_timeout)
            self._last_forward = 0.0
            self.create_timer(1.0 / state_rate, self._publish_tcp, callback_group=control)
            offer_no_reset(self, backend, control)
        self.create_subscription(
            PoseStamped, task.action_topic, self._on_delta, COMMANDS, callback_group=control
        )
        self.get_logger().info(f"backend {backend}: listening on {task.action_topic}")

    def _on_delta(self, msg: PoseStamped) -> None:
        delta = self._gate.admit(msgs.planar_delta(msg))
        if delta is None:
            return
        if self._backend == "sim":
            self._sim.command(delta)
            return
        # A delta is a displacement: deltas faster than the control rate would add up to a
        # faster arm than the task allows, so the surplus is dropped.
        now = time.monotonic()
        if now - self._last_forward < 0.5 * self._period:
            self.get_logger().warning(
                "ee_delta faster than the control rate: dropped", throttle_duration_sec=2.0
            )
            return
        self._last_forward = now
        try:
            self._arm.apply_delta(delta)
        except RuntimeError as exc:  # a fault stopped streaming: estop on/off reconnects
            self.get_logger().error(f"delta not applied: {exc}", throttle_duration_sec=2.0)

    def _on_estop(self, engage: bool) -> None:
        if self._backend == "sim":
            self._sim.halt()
        elif engage:
            self._arm.stop()
        else:  # Stop() left the arm idle: clear faults, servo on, hold the measured pose again
            self._arm.connect(timeout=self._connect_timeout)

    def _publish_sim_pose(self, gt: dict, stamp) -> None:
        ee = gt["ee"]
        self._pose.publish(msgs.planar_pose(stamp, self._frame_id, ee[0], ee[1]))

    def _publish_tcp(self) -> None:
        if self._arm is None:
            return
        stamp = self.get_clock().now().to_msg()
        self._pose.publish(msgs.tcp_pose(stamp, self._frame_id, self._arm.tcp_pose()))

    def destroy_node(self) -> None:
        """Stop and release the arm (or the simulator), then destroy the node."""
        arm, self._arm = self._arm, None
        if arm is not None:
            arm.close()
        sim, self._sim = self._sim, None
        if sim is not None:
            sim.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run(FlexivDriver, args)


if __name__ == "__main__":
    raise SystemExit(main())
