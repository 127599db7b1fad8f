"""`go2_driver`: the Unitree Go2 (push-cube) behind ROS 2, simulated, real, or pass-through.

backend `sim`: the MuJoCo push-cube scene, stepped at the control period, publishing the front
camera (camera/image_raw, 5 Hz), odom and the task ground truth, and owning the sim clock
(`/clock`, `time_scale` times real time; see sim_driver). backend `unitree`: the robot's
sport service through unitree_sdk2py (`Go2Base`: Move, StopMove after silence, Damp on estop),
its front camera through the SDK's video client, and odom from its sport-mode state.
backend `cmd_vel`: validated, clamped commands are relayed on `locomotion_topic` for a
custom locomotion policy, re-sent at 10 Hz and replaced by one zero twist after
`watchdog_timeout` of silence (the same `VelocityStream` as the SDK path); the SDK is used
only to read the sport-mode state for odom (`state_rate` 0: not at all).
unitree and cmd_vel publish odom at most at `state_rate`, one message per new state sample,
stamped when the sample arrived; no sample for `STATE_STALE_S` pauses odom with a warning.
Subscribes to `cmd_vel` (geometry_msgs/TwistStamped: linear.x, linear.y, angular.z); serves
`reset` (sim: a new scene at the next step, after a `reset` event, std_msgs/Header, on the
topic of that name; the real backends refuse it) and `estop`.
"""

from __future__ import annotations

import time
from typing import Any

from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from dmo_ros.errors import UserError
from dmo_ros.nodes import msgs
from dmo_ros.nodes.capture import CaptureThread
from dmo_ros.nodes.command_gate import CommandGate
from dmo_ros.nodes.entry import build, run
from dmo_ros.nodes.params import declare
from dmo_ros.nodes.sim_driver import SimDriver, offer_no_reset
from dmo_ros.task import load_task

BACKENDS = ("sim", "unitree", "cmd_vel")
COMMANDS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
ZERO = (0.0, 0.0, 0.0)
STATE_STALE_S = 0.5  # no sport state for this long: odom pauses, with a warning


class Go2Driver(Node):
    """Driver node for the Go2 (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("go2_driver", **kwargs)
        self._base = None
        self._stream = None
        self._sport_state = None  # cmd_vel: the robot's sport state, read without a SportClient
        self._state_source = None  # unitree / cmd_vel: what state() is asked of for odom
        self._sim: SimDriver | None = None
        self._capture = None
        build(self, self._setup)

    def _setup(self) -> None:
        backend = declare(self, "backend", "sim", "sim (MuJoCo) | unitree (SDK) | cmd_vel (relay)")
        task_file = declare(self, "task_config", "push_cube.yaml", "task file: bounds, period")
        self._odom_frame = declare(self, "odom_frame_id", "odom", "frame of odom and task poses")
        self._base_frame = declare(self, "base_frame_id", "base_link", "body frame of the robot")
        self._camera_frame = declare(self, "camera_frame_id", "front_camera", "camera image frame")
        image_size = declare(self, "image_size", 64, "sim camera image size (pixels)", 16, 640)
        seed = declare(self, "seed", 0, "sim: seed of the first scene; +1 per reset", 0, 2**31 - 1)
        reset_seed = declare(
            self,
            "reset_seed",
            -1,
            "sim: seed of the first reset's scene (-1: seed + 1)",
            -1,
            2**31 - 1,
        )
        response = declare(self, "response", "nominal", "sim: low-level response, nominal|changed")
        timeout = declare(
            self,
            "command_timeout",
            0.2,
            "sim: a command older than this (s) is not used",
            0.01,
            5.0,
        )
        time_scale = declare(
            self, "time_scale", 1.0, "sim: sim seconds per wall second (1: real time)", 0.01, 100.0
        )
        watchdog = declare(
            self, "watchdog_timeout", 0.4, "unitree/cmd_vel: stop after this silence (s)", 0.05, 5.0
        )
        iface = declare(self, "iface", "eth0", "unitree/cmd_vel: network interface to the robot")
        domain = declare(self, "dds_domain", 0, "unitree/cmd_vel: the robot's DDS domain", 0, 232)
        connect_timeout = declare(
            self, "connect_timeout", 5.0, "unitree: give up connecting after (s)", 0.5, 120.0
        )
        camera_rate = declare(
            self, "camera_rate", 15.0, "unitree: front camera rate (Hz)", 0.0, 30.0
        )
        state_rate = declare(
            self,
            "state_rate",
            20.0,
            "unitree/cmd_vel: max odom rate (Hz) from the robot's sport state (0: no odom)",
            0.0,
            100.0,
        )
        out_topic = declare(
            self, "locomotion_topic", "locomotion/cmd_vel", "cmd_vel: topic of the relayed commands"
        )
        self._backend = backend
        if backend not in BACKENDS:
            raise UserError(
                f"go2_driver: unknown backend '{backend}' (expected one of: {', '.join(BACKENDS)})"
            )
        if backend != "sim" and time_scale != 1.0:
            raise UserError(
                f"{self.get_name()}: time_scale {time_scale:g} needs the sim backend "
                "(a real robot runs in real time)"
            )
        task = load_task(task_file)
        watchdog_periods = max(1, round(watchdog / task.control_period))
        control = MutuallyExclusiveCallbackGroup()  # commands, steps, estop, reset: one at a time
        self._gate = CommandGate(
            self, task.action_low, task.action_high, task.action_names, self._on_estop, control
        )
        if backend == "sim":
            from dmo_ros.sim import make_sim  # MuJoCo/EGL: only when used

            self._odom = self.create_publisher(Odometry, task.state_topic, 10)
            self._sim = SimDriver(
                self,
                lambda: make_sim(
                    "go2",
                    image_size=image_size,
                    control_period=task.control_period,
                    response=response,
                ),
                control_period=task.control_period,
                command_timeout=timeout,
                consume=False,
                frame_id=self._odom_frame,
                camera_frame_id=self._camera_frame,
                image_topic=task.image_topic,
                object_key="cube",
                seed=seed,
                publish_state=self._publish_sim_odom,
                callback_group=control,
                time_scale=time_scale,
                first_reset_seed=None if reset_seed < 0 else reset_seed,
            )
        elif backend == "unitree":
            from dmo_ros.hw.go2 import Go2Base

            lo, hi = task.action_low, task.action_high
            self._base = Go2Base(
                iface=iface,
                domain=domain,
                vx=(lo[0], hi[0]),
                vy=(lo[1], hi[1]),
                wz=(lo[2], hi[2]),
                control_period=task.control_period,
                timeout_periods=watchdog_periods,
            )
            self._base.connect(timeout=connect_timeout)
            self._state_source = self._base
            if camera_rate > 0:
                self._image = self.create_publisher(Image, task.image_topic, 5)
                # The video RPC on a thread of its own: a slow frame never delays a command.
                self._capture = CaptureThread(
                    self._base.camera_frame,
                    self._publish_frame,
                    lambda: self.get_logger().warning(
                        "no frame from the Go2 camera", throttle_duration_sec=5.0
                    ),
                    camera_rate,
                    name="go2-camera",
                )
            offer_no_reset(self, backend, control)
        else:
            from dmo_ros.hw.command_guard import CommandGuard
            from dmo_ros.hw.go2 import SportState, VelocityStream

            if state_rate > 0:
                self._sport_state = SportState(iface, domain)
                self._sport_state.open()
                self._state_source = self._sport_state

            self._relay = self.create_publisher(TwistStamped, out_topic, COMMANDS)
            self._stream = VelocityStream(
                self._send,
                lambda: self._send(ZERO),
                CommandGuard(task.action_low, task.action_high, task.action_names),
                task.control_period,
                watchdog_periods,
            )
            offer_no_reset(self, backend, control)
        if self._state_source is not None and state_rate > 0:
            self._odom = self.create_publisher(Odometry, task.state_topic, 10)
            self._last_state = None  # the stamp of the sample last published
            self._state_since = time.monotonic()
            self.create_timer(1.0 / state_rate, self._publish_state, callback_group=control)
        self.create_subscription(
            TwistStamped, task.action_topic, self._on_command, COMMANDS, callback_group=control
        )
        self.get_logger().info(f"backend {backend}: listening on {task.action_topic}")

    def _on_command(self, msg: TwistStamped) -> None:
        command = self._gate.admit(msgs.planar_twist(msg))
        if command is None:
            return
        if self._backend == "sim":
            self._sim.command(command)
        elif self._backend == "unitree":
            self._base.move(*command)  # the adapter re-sends it and stops after silence
        else:
            self._stream.command(command)

    def _send(self, command) -> None:
        stamp = self.get_clock().now().to_msg()
        self._relay.publish(msgs.twist_stamped(stamp, self._base_frame, command))

    def _on_estop(self, engage: bool) -> None:
        if self._backend == "sim":
            self._sim.halt()
        elif self._backend == "unitree":
            # Damp: joints go limp. Release stands the robot up again (StandUp, BalanceStand).
            self._base.damp() if engage else self._base.recover()
        elif engage:
            self._stream.stop()  # no more repeats, one zero twist now

    def _publish_sim_odom(self, gt: dict, stamp) -> None:
        self._odom.publish(
            msgs.odometry(stamp, self._odom_frame, self._base_frame, gt["base"], gt["base_vel"])
        )

    def _publish_state(self) -> None:
        state = self._state_source.state()
        now = time.monotonic()
        age = now - (state["stamp"] if state is not None else self._state_since)
        if age > STATE_STALE_S:
            self.get_logger().warning(
                f"no Go2 sport state (rt/sportmodestate) for {age:.1f} s: odom paused",
                throttle_duration_sec=5.0,
            )
            return
        if state is None or state["stamp"] == self._last_state:
            return  # nothing new since the last odom
        self._last_state = state["stamp"]
        stamp = self.get_clock().now() - Duration(seconds=now - state["stamp"])
        self._odom.publish(
            msgs.odometry(
                stamp.to_msg(),
                self._odom_frame,
                self._base_frame,
                state["pose"],
                state["velocity"],
            )
        )

    def _publish_frame(self, frame) -> None:
        stamp = self.get_clock().now().to_msg()
        self._image.publish(msgs.image(stamp, self._camera_frame, frame))

    def destroy_node(self) -> None:
        """Stop and release the robot (or the simulator), then destroy the node."""
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.close()
        base, self._base = self._base, None
        if base is not None:
            base.close()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        sport_state, self._sport_state = self._sport_state, None
        if sport_state is not None:
            sport_state.close()
        sim, self._sim = self._sim, None
        if sim is not None:
            sim.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run(Go2Driver, args)


if __name__ == "__main__":
    raise SystemExit(main())
