"""Flexiv Rizon arm on flexivrdk 2.x: planar end-effector deltas streamed as NRT Cartesian targets.

Each 0.2 s action is a position delta applied to the measured TCP pose (world frame),
clipped to a maximum step and a workspace box; a background thread streams targets at
`stream_hz`, moving linearly from the current target to the new one over the control
period, and checks `fault()` every cycle. Runs on Python 3.12 with numpy + flexivrdk only
(flexivrdk has no cp311 wheel): no torch, no rclpy here.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dmo_ros.errors import UserError
from dmo_ros.hw import ConnectError
from dmo_ros.hw.command_guard import CommandGuard

# Every flexivrdk 2.x callable this adapter uses: the keyword arguments it passes and the
# return type it relies on. test_hw_flexiv_conformance checks these against the real module
# (Python 3.12) and against the test double, so adapter, double and SDK cannot drift apart.
# All calls below pass exactly these keywords.
SDK_CALLS: dict[str, tuple[tuple[str, ...], str]] = {
    "Robot": (("robot_sn",), "None"),  # constructor: finds the robot on the network
    "Robot.fault": ((), "bool"),
    "Robot.ClearFault": (("timeout_sec",), "bool"),
    "Robot.ServoOn": ((), "None"),  # 1.x called it Enable()
    "Robot.operational": ((), "bool"),
    "Robot.operational_status": ((), "OperationalStatus"),
    "Robot.SwitchMode": (("mode",), "None"),
    "Robot.states": ((), "dict[JointGroup, RobotStates]"),
    "Robot.SendCartesianMotionForce": (("cmds",), "None"),
    "Robot.Stop": ((), "None"),
    "NrtCartesianCmd": (("pose_d", "max_linear_vel"), "None"),
}
# Names (enum members, struct fields) the adapter reads.
SDK_ATTRIBUTES: tuple[str, ...] = (
    "Mode.NRT_CARTESIAN_MOTION_FORCE",
    "JointGroup.ARM_1",
    "RobotStates.tcp_pose",
    "NrtCartesianCmd.pose_d",
    "NrtCartesianCmd.max_linear_vel",
)
DEFAULT_GROUP = "ARM_1"  # a Rizon is one arm; 2.x addresses commands and states per group
STOP_TIMEOUT_S = 10.0  # Stop() blocks until the arm is still; never hang a shutdown on it


class RobotFault(RuntimeError):
    """The arm faulted or refused a command; streaming has stopped."""


def make_command(sdk: Any, pose: Sequence[float], max_linear_vel: float) -> Any:
    """One NRT Cartesian motion target: pose [x,y,z,qw,qx,qy,qz] in the world frame."""
    return sdk.NrtCartesianCmd(
        pose_d=[float(v) for v in pose], max_linear_vel=float(max_linear_vel)
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _import_sdk() -> Any:
    try:
        import flexivrdk
    except ImportError as exc:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise UserError(
            f"flexivrdk is not installed for Python {version} (it has no 3.11 wheel); "
            "run the Flexiv driver from the Python 3.12 venv (`make venv312`)"
        ) from exc
    return flexivrdk


class FlexivArm:
    """A Flexiv arm driven by end-effector position deltas (see the module docstring)."""

    def __init__(
        self,
        serial_number: str,
        workspace_low: Sequence[float],
        workspace_high: Sequence[float],
        max_step: float = 0.04,
        stream_hz: float = 100.0,
        control_period: float = 0.2,
        sdk: Any = None,
        *,
        max_linear_vel: float = 0.2,
        group: str = DEFAULT_GROUP,
        on_fault: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not serial_number or not isinstance(serial_number, str):
            raise UserError(
                f"flexiv: serial_number must be a non-empty string, got {serial_number!r}"
            )
        if not (0 < max_step <= 0.2):
            raise UserError(f"flexiv: max_step {max_step} m must be in (0, 0.2]")
        if not (1.0 <= stream_hz <= 1000.0):
            raise UserError(f"flexiv: stream_hz {stream_hz} must be in [1, 1000]")
        if not (control_period > 0 and max_linear_vel > 0):
            raise UserError("flexiv: control_period and max_linear_vel must be positive")
        # The workspace box is a command guard on absolute positions (x, y, z).
        self._workspace = CommandGuard(workspace_low, workspace_high, names=("x", "y", "z"))
        self._step = CommandGuard([-max_step] * 3, [max_step] * 3, names=("dx", "dy", "dz"))
        self._planar_step = CommandGuard([-max_step] * 2, [max_step] * 2, names=("dx", "dy"))
        self.serial_number = serial_number
        self.stream_hz = float(stream_hz)
        self.control_period = float(control_period)
        self.max_linear_vel = float(max_linear_vel)
        self._sdk = sdk if sdk is not None else _import_sdk()
        try:
            self._group = getattr(self._sdk.JointGroup, group)
        except AttributeError:
            raise UserError(f"flexiv: unknown joint group {group!r} (e.g. ARM_1)") from None
        self._on_fault = on_fault
        self._clock = clock  # times the interpolation (tests step it); streaming paces on real time
        self._robot: Any = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._fault_message: str | None = None
        # The interpolation segment: from `_start` at time `_t0` to `_end` one period later.
        self._start = np.zeros(3)
        self._end = np.zeros(3)
        self._t0 = 0.0
        self._quat = np.array([1.0, 0.0, 0.0, 0.0])

    # -- connection ------------------------------------------------------------------------
    def connect(self, timeout: float = 30.0) -> None:
        """Find the robot, clear faults, servo on, wait until operational, start streaming.

        Also the way back after stop() or a fault: the connection is reused.
        """
        if self._thread is not None:
            if self._thread.is_alive():
                return
            self._thread.join()  # it ended on a fault
            self._thread = None
        deadline = time.monotonic() + timeout
        sn = self.serial_number
        if self._robot is None:  # after stop() the connection is reused
            self._robot = self._within(lambda: self._sdk.Robot(robot_sn=sn), deadline, "connecting")
        robot = self._robot
        if robot.fault():
            cleared = self._within(
                lambda: robot.ClearFault(
                    timeout_sec=max(1, math.ceil(deadline - time.monotonic()))
                ),
                deadline,
                "clearing the fault",
            )
            if not cleared:
                raise ConnectError(f"Flexiv {sn}: the fault could not be cleared (power cycle?)")
        self._within(robot.ServoOn, deadline, "servo on")
        while not robot.operational():
            if time.monotonic() >= deadline:
                status = robot.operational_status()
                raise ConnectError(
                    f"Flexiv {sn}: not operational after {timeout:g} s "
                    f"(status {getattr(status, 'name', status)})"
                )
            time.sleep(0.05)
        try:
            pose = self.tcp_pose()
        except KeyError:
            raise ConnectError(f"Flexiv {sn}: the robot has no joint group {self._group}") from None
        low, high = self._workspace.low, self._workspace.high
        if not np.all((pose[:3] >= low) & (pose[:3] <= high)):
            raise ConnectError(
                f"Flexiv {sn}: TCP at {np.round(pose[:3], 3).tolist()} m is outside the workspace "
                f"box {low.tolist()}..{high.tolist()}; move it inside first"
            )
        mode = self._sdk.Mode.NRT_CARTESIAN_MOTION_FORCE
        self._within(lambda: robot.SwitchMode(mode=mode), deadline, "switching mode")
        # Hold the measured pose: the first target is where the arm already is.
        pose = self.tcp_pose()
        self._quat = pose[3:].copy()
        self._start = self._end = pose[:3].copy()
        self._t0 = self._clock()
        self._fault_message = None
        self._halt.clear()
        self._thread = threading.Thread(target=self._stream, name="flexiv-stream", daemon=True)
        self._thread.start()

    def _within(self, call: Callable[[], Any], deadline: float, what: str) -> Any:
        """Run a blocking SDK call, giving up at `deadline`: an unreachable robot never hangs us."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["value"] = call()
            except BaseException as exc:  # handed to the caller's thread below
                outcome["error"] = exc

        worker = threading.Thread(target=run, name=f"flexiv-{what}", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            raise ConnectError(f"Flexiv {self.serial_number}: {what} timed out")
        if "error" in outcome:
            raise ConnectError(
                f"Flexiv {self.serial_number}: {what} failed: {_first_line(outcome['error'])}"
            ) from outcome["error"]
        return outcome.get("value")

    # -- commands --------------------------------------------------------------------------
    def apply_delta(self, delta_xyz: Sequence[float]) -> np.ndarray:
        """Move by (dx, dy) or (dx, dy, dz) from the measured TCP; return the new target pose.

        The step is clipped per axis to `max_step`, the target to the workspace box. A planar
        (2-value) delta keeps the height of the previous target. NaN/inf -> `BadCommand`.
        """
        planar = hasattr(delta_xyz, "__len__") and len(delta_xyz) == 2
        step = (self._planar_step if planar else self._step).check(delta_xyz)
        self._require_streaming()
        measured = self.tcp_pose()[:3]
        with self._lock:
            target = measured.copy()
            target[:2] += step[:2]
            target[2] = self._end[2] if planar else measured[2] + step[2]
            target = self._workspace.check(target)
            now = self._clock()
            self._start = self._interpolated(now)
            self._end = target
            self._t0 = now
        return np.concatenate([target, self._quat])

    def target(self) -> np.ndarray:
        """The pose being streamed right now [x,y,z,qw,qx,qy,qz]."""
        with self._lock:
            return np.concatenate([self._interpolated(self._clock()), self._quat])

    def tcp_pose(self) -> np.ndarray:
        """The measured TCP pose [x, y, z, qw, qx, qy, qz] in the world frame."""
        if self._robot is None:
            raise RuntimeError(f"Flexiv {self.serial_number}: not connected")
        return np.asarray(self._robot.states()[self._group].tcp_pose, dtype=np.float64)

    def fault(self) -> bool:
        """True once the arm faulted (streaming has stopped) or while it reports a fault."""
        if self._fault_message is not None:
            return True
        return self._robot is not None and bool(self._robot.fault())

    @property
    def fault_message(self) -> str | None:
        """Why streaming stopped, if it stopped because of a fault."""
        return self._fault_message

    def _require_streaming(self) -> None:
        if self._fault_message is not None:
            raise RobotFault(self._fault_message)
        if self._thread is None:
            raise RuntimeError(f"Flexiv {self.serial_number}: not streaming; call connect()")

    # -- streaming -------------------------------------------------------------------------
    def _interpolated(self, now: float) -> np.ndarray:
        alpha = max(0.0, (now - self._t0) / self.control_period)
        if alpha >= 1.0:
            return self._end.copy()  # exactly the target, not a rounding of it
        return self._start + alpha * (self._end - self._start)

    def _stream(self) -> None:
        period = 1.0 / self.stream_hz
        robot = self._robot
        next_tick = time.monotonic()
        while not self._halt.is_set():
            try:
                if robot.fault():
                    self._report_fault(
                        f"Flexiv {self.serial_number}: robot fault; streaming stopped"
                    )
                    return
                pose = self.target()
                cmd = make_command(self._sdk, pose, self.max_linear_vel)
                robot.SendCartesianMotionForce(cmds={self._group: cmd})
            except Exception as exc:  # the SDK raises once the arm is no longer operational
                self._report_fault(
                    f"Flexiv {self.serial_number}: command refused ({_first_line(exc)}); "
                    "streaming stopped"
                )
                return
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay < -period:  # fell behind (a loaded machine): skip, do not burst
                next_tick = time.monotonic()
            self._halt.wait(max(0.0, delay))

    def _report_fault(self, message: str) -> None:
        self._fault_message = message
        if self._on_fault is not None:
            self._on_fault(message)

    # -- shutdown --------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop streaming and Stop() the arm (it holds still, mode IDLE). connect() resumes."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._halt.set()
            if thread is not threading.current_thread():
                thread.join()
        if self._robot is not None:
            self._within(self._robot.Stop, time.monotonic() + STOP_TIMEOUT_S, "stopping")

    def close(self) -> None:
        """stop(), then drop the connection. Safe to call twice."""
        if self._robot is None:
            return
        try:
            self.stop()
        finally:
            self._robot = None

    def __enter__(self) -> FlexivArm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
