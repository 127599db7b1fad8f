"""`policy`: a trained image policy driving the robot at the control rate, with its safety.

Subscribes to the camera (sensor-data QoS) and, while enabled, sends one action per control
period (a timer on the node clock: sim time under `use_sim_time`) in robot units on the
task's action topic: `ee_delta` (geometry_msgs/PoseStamped, a relative pose) for the Flexiv,
`cmd_vel` (geometry_msgs/TwistStamped) for the Go2. The RSSM filter (rl/agent.py) takes the
frame of each step with the previous action; it restarts when the node is enabled, when the
scene is reset (`reset`, std_msgs/Header, from the simulated drivers) and after a fault.
The rules (timing, staleness, estop, enable, NaN and limits) are rl/deploy_safety.py's.

Services: `~/enable` (std_srvs/SetBool; the node starts disabled unless `enable` is true)
and `~/estop` (std_srvs/SetBool, latches until released). The driver's latch state
(`estop/active`, std_msgs/Bool, transient-local) latches the policy too. After a release the
policy stays disabled until enabled again. `/diagnostics` (diagnostic_msgs/DiagnosticArray,
once a second of node time): loop rate, inference latency, frame age, last fault.

A checkpoint for another robot or image size, or one that does not load, is one line and
exit 2, before anything is published.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header
from std_srvs.srv import SetBool

from dmo_ros.data.images import image_to_array
from dmo_ros.errors import UserError
from dmo_ros.nodes.command_gate import LATCHED
from dmo_ros.nodes.entry import build, run
from dmo_ros.nodes.params import declare
from dmo_ros.nodes.teleop import action_class, action_message
from dmo_ros.rl.deploy_safety import DeploySafety, Step, policy_frame
from dmo_ros.task import task_for_robot

DIAGNOSTICS_PERIOD = 1.0  # s of node time


def _stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class PolicyNode(Node):
    """The policy between the camera and the driver; `agent` and `safety` for tests."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("policy", **kwargs)
        build(self, self._setup)

    def _setup(self) -> None:
        checkpoint = declare(self, "checkpoint", "", "policy run folder (its last.pt) or .pt file")
        robot = declare(self, "robot", "pusht", "robot the policy drives: pusht | flexiv | go2")
        rate = declare(
            self, "rate", 5.0, "actions per second (the policy's training rate)", 0.1, 50.0
        )
        enable = declare(self, "enable", False, "start enabled (else wait for ~/enable)")
        stale = declare(
            self, "stale_timeout", 0.4, "stop when no camera frame is younger (s)", 0.01, 10.0
        )
        device = declare(self, "device", "cpu", "torch device of the policy: cpu | cuda[:N]")
        self.task = task = task_for_robot(robot)
        if not checkpoint:
            raise UserError("policy: no checkpoint (-p checkpoint:=models/RUN)")
        if abs(1.0 / rate - task.control_period) > 1e-9:
            self.get_logger().warning(
                f"rate {rate:g} Hz differs from the task's {1.0 / task.control_period:g} Hz: "
                "the policy was trained at the task's control period"
            )
        self.agent, ckpt = _load(checkpoint, task, device)
        trained_for = ckpt.get("config", {}).get("task", {}).get("robot", task.robot)
        if trained_for != task.robot:
            raise UserError(f"policy: {checkpoint} drives the {trained_for}, not the {task.robot}")
        self.safety = DeploySafety(task, stale, enabled=enable)
        self._frame: np.ndarray | None = None
        self.steps = 0  # commands computed by the policy
        self._latency_ms = 0.0
        self._window = (0, self.get_clock().now().nanoseconds)  # (steps, time) of last report

        self._command = self.create_publisher(action_class(task), task.action_topic, 10)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Image, task.image_topic, self._on_image, qos_profile_sensor_data)
        self.create_subscription(Header, "reset", lambda _m: self.safety.scene_reset(), 10)
        self.create_subscription(Bool, "estop/active", self._on_driver_estop, LATCHED)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_service(SetBool, "~/estop", self._on_estop)
        self.create_timer(1.0 / rate, self._on_tick)
        self.create_timer(DIAGNOSTICS_PERIOD, self._publish_diagnostics)
        state = "enabled" if enable else "disabled (~/enable to start)"
        self.get_logger().info(f"{checkpoint} on the {task.robot}: {state}")

    def _on_image(self, msg: Image) -> None:
        try:
            self._frame = policy_frame(image_to_array(msg), self.task.image_size)
        except UserError as exc:
            self.get_logger().warning(f"frame ignored: {exc}", throttle_duration_sec=2.0)
            return
        if self.safety.frame(_stamp_ns(msg.header.stamp)):
            self._act()

    def _on_tick(self) -> None:
        step = self.safety.tick(self.get_clock().now().nanoseconds)
        if step is Step.ACT:
            self._act()
        elif step is Step.STOP:
            self.get_logger().warning(
                f"{self.safety.last_fault}: stopping", throttle_duration_sec=2.0
            )
            self._stop()

    def _act(self) -> None:
        if self.safety.needs_reset:
            self.agent.reset(1)
            self.safety.needs_reset = False
        start = time.perf_counter()
        action = self.agent.act(torch.from_numpy(self._frame)[None])
        self._latency_ms = 1e3 * (time.perf_counter() - start)
        command = self.safety.command(action[0].float().cpu().numpy())
        if command is None:
            self.get_logger().warning(self.safety.last_fault, throttle_duration_sec=2.0)
            self._stop()
            return
        self.steps += 1
        self._publish(command)

    def _stop(self) -> None:
        if (command := self.safety.stop_command()) is not None:
            self._publish(command)

    def _publish(self, command: np.ndarray) -> None:
        stamp = self.get_clock().now().to_msg()
        self._command.publish(action_message(self.task, command, stamp))

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response):
        response.success, response.message = self.safety.enable(bool(request.data))
        self.get_logger().info(f"enable {bool(request.data)}: {response.message}")
        return response

    def _on_estop(self, request: SetBool.Request, response: SetBool.Response):
        self._latch("service", bool(request.data))
        response.success = True
        response.message = f"estop {'latched' if self.safety.latched else 'released'}"
        return response

    def _on_driver_estop(self, msg: Bool) -> None:
        self._latch("driver", bool(msg.data))

    def _latch(self, source: str, engaged: bool) -> None:
        if self.safety.estop(source, engaged):
            if engaged:
                self._stop()  # the Go2 stops now, not at its driver's command timeout
            state = "LATCHED" if engaged else "released (the policy stays disabled)"
            self.get_logger().warning(f"estop {state} ({source})")

    def _publish_diagnostics(self) -> None:
        now = self.get_clock().now()
        steps, since = self._window
        elapsed = (now.nanoseconds - since) * 1e-9
        self._window = (self.steps, now.nanoseconds)
        age = self.safety.frame_age(now.nanoseconds)
        if self.safety.latched:
            level, message = DiagnosticStatus.ERROR, "estop latched"
        elif not self.safety.enabled:
            level, message = DiagnosticStatus.OK, "disabled"
        elif self.safety.stale:
            level, message = DiagnosticStatus.WARN, "no fresh camera frame"
        else:
            level, message = DiagnosticStatus.OK, "running"
        values = {
            "loop_rate_hz": f"{(self.steps - steps) / elapsed:.2f}" if elapsed > 0 else "0",
            "inference_latency_ms": f"{self._latency_ms:.2f}",
            "frame_age_s": "none" if age is None else f"{age:.3f}",
            "last_fault": self.safety.last_fault or "none",
            "steps": str(self.steps),
        }
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: policy on the {self.task.robot}",
            hardware_id=self.task.robot,
            message=message,
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        self._diagnostics.publish(
            DiagnosticArray(header=Header(stamp=now.to_msg()), status=[status])
        )


def _load(checkpoint: str, task, device: str):
    """The agent and checkpoint (rl/agent.py refuses another task, image size or action
    size, and a file that is not a checkpoint)."""
    from dmo_ros.rl.agent import load_agent

    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise UserError(f"policy: bad device '{device}' (cpu, cuda, cuda:N)") from None
    try:
        return load_agent(checkpoint, task, torch_device)
    except UserError as exc:
        raise UserError(f"policy: {exc}") from None


def main(args: list[str] | None = None) -> int:
    return run(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
