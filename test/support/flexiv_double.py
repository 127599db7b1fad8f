"""A stand-in for the flexivrdk 2.x module: the API surface FlexivArm uses, nothing more.

Names, parameter names, defaults and enum values follow flexivrdk 2.1.0 (checked against
the real module by test_hw_flexiv_conformance). Pass an instance as `FlexivArm(sdk=...)`.
The simulated arm tracks the last commanded pose unless a test holds it (an arm blocked
by contact), records every call with its time, and can be made to fault, hang or refuse.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Mode(enum.IntEnum):
    UNKNOWN = 0
    IDLE = 1
    RT_JOINT_TORQUE = 2
    RT_JOINT_IMPEDANCE = 3
    NRT_JOINT_IMPEDANCE = 4
    RT_JOINT_POSITION = 5
    NRT_JOINT_POSITION = 6
    NRT_PLAN_EXECUTION = 7
    NRT_PRIMITIVE_EXECUTION = 8
    RT_CARTESIAN_MOTION_FORCE = 9
    NRT_CARTESIAN_MOTION_FORCE = 10
    NRT_SUPER_PRIMITIVE = 11


class JointGroup(enum.IntEnum):
    UNKNOWN = -1
    ALL = 0
    ARMS = 2
    ARM_1 = 3
    ARM_2 = 4
    EXT_AXIS = 5
    FIRST = 0  # aliases, as in flexivrdk
    LAST = 5


class OperationalStatus(enum.IntEnum):
    UNKNOWN = 0
    READY = 1
    BOOTING = 2
    ESTOP_NOT_RELEASED = 3
    NOT_SERVO_ON = 4
    RELEASING_BRAKE = 5
    MINOR_FAULT = 6
    CRITICAL_FAULT = 7
    IN_REDUCED_STATE = 8
    IN_RECOVERY_STATE = 9
    IN_MANUAL_MODE = 10
    IN_AUTO_MODE = 11


def _fixed(values: Any, size: int, name: str) -> list[float]:
    """pybind11's FixedSize list[float] conversion: exactly `size` numbers or TypeError."""
    out = [float(v) for v in values]
    if len(out) != size:
        raise TypeError(f"{name}: expected {size} floats, got {len(out)}")
    return out


class NrtCartesianCmd:
    """Commands data for non-real-time Cartesian motion-force control."""

    def __init__(
        self,
        pose_d: Any = None,
        wrench_d: Any = (0.0,) * 6,
        twist_d: Any = (0.0,) * 6,
        max_linear_vel: float = 0.5,
        max_angular_vel: float = 1.0,
        max_linear_acc: float = 2.0,
        max_angular_acc: float = 5.0,
    ) -> None:
        self.pose_d = _fixed(pose_d if pose_d is not None else (0.0,) * 7, 7, "pose_d")
        self.wrench_d = _fixed(wrench_d, 6, "wrench_d")
        self.twist_d = _fixed(twist_d, 6, "twist_d")
        self.max_linear_vel = float(max_linear_vel)
        self.max_angular_vel = float(max_angular_vel)
        self.max_linear_acc = float(max_linear_acc)
        self.max_angular_acc = float(max_angular_acc)


@dataclass
class RobotStates:
    tcp_pose: list[float] = field(default_factory=lambda: [0.0] * 7)


@dataclass
class Call:
    t: float  # time.monotonic()
    name: str
    kwargs: dict[str, Any]


class RobotDouble:
    """flexivrdk.Robot for one simulated single-arm robot (joint group ARM_1)."""

    def __init__(self, sdk: FlexivDouble, robot_sn: str) -> None:
        self._sdk = sdk
        self.robot_sn = robot_sn
        self.mode = Mode.IDLE
        self.servo_on = False

    def _log(self, name: str, **kwargs: Any) -> None:
        self._sdk.log(name, **kwargs)

    def fault(self) -> bool:
        self._log("fault")
        return self._sdk.faulted

    def ClearFault(self, timeout_sec: int = 30) -> bool:
        if not isinstance(timeout_sec, int):
            raise TypeError("ClearFault(): timeout_sec must be an int")
        self._log("ClearFault", timeout_sec=timeout_sec)
        if self._sdk.clearable:
            self._sdk.faulted = False
        return not self._sdk.faulted

    def ServoOn(self) -> None:
        self._log("ServoOn")
        self.servo_on = True
        self._sdk.polls = 0

    def operational(self) -> bool:
        self._log("operational")
        return self.operational_status() == OperationalStatus.READY

    def operational_status(self) -> OperationalStatus:
        sdk = self._sdk
        if sdk.faulted:
            return OperationalStatus.MINOR_FAULT
        if not self.servo_on:
            return OperationalStatus.NOT_SERVO_ON
        sdk.polls += 1
        if sdk.polls_to_operational is None or sdk.polls <= sdk.polls_to_operational:
            return OperationalStatus.RELEASING_BRAKE
        return OperationalStatus.READY

    def SwitchMode(self, mode: Mode) -> None:
        if not isinstance(mode, Mode):
            raise TypeError("SwitchMode(): mode must be a flexivrdk.Mode")
        self._log("SwitchMode", mode=mode)
        if self._sdk.faulted or not self.servo_on:
            raise RuntimeError("[flexiv::rdk::Robot] robot is not operational")
        self.mode = mode

    def states(self) -> dict[JointGroup, RobotStates]:
        return {JointGroup.ARM_1: RobotStates(tcp_pose=list(self._sdk.tcp))}

    def SendCartesianMotionForce(self, cmds: dict[JointGroup, NrtCartesianCmd]) -> None:
        for group, cmd in cmds.items():
            if group != JointGroup.ARM_1 or not isinstance(cmd, NrtCartesianCmd):
                raise ValueError("cmds must map an existing single-arm joint group to a command")
        if self.mode != Mode.NRT_CARTESIAN_MOTION_FORCE:
            raise RuntimeError("[flexiv::rdk::Robot] robot is not in the correct control mode")
        if self._sdk.faulted:
            raise RuntimeError("[flexiv::rdk::Robot] robot is not operational")
        pose = cmds[JointGroup.ARM_1].pose_d
        self._log("SendCartesianMotionForce", pose_d=pose)
        if not self._sdk.held:  # the double tracks its commands perfectly
            self._sdk.tcp = np.array(pose)

    def Stop(self) -> None:
        self._log("Stop")
        self.mode = Mode.IDLE


class FlexivDouble:
    """Module-like flexivrdk stand-in; `Robot(robot_sn)` builds the simulated arm."""

    Mode = Mode
    JointGroup = JointGroup
    OperationalStatus = OperationalStatus
    NrtCartesianCmd = NrtCartesianCmd
    RobotStates = RobotStates

    def __init__(
        self,
        serial_number: str = "Rizon4-062468",
        tcp_pose: tuple[float, ...] = (0.5, 0.0, 0.2, 0.0, 0.0, 1.0, 0.0),
        faulted: bool = False,
        clearable: bool = True,
        polls_to_operational: int | None = 2,
        hang: bool = False,
    ) -> None:
        self.serial_number = serial_number
        self.tcp = np.array(tcp_pose, dtype=np.float64)
        self.faulted = faulted
        self.clearable = clearable
        self.polls_to_operational = polls_to_operational  # None: never operational
        self.polls = 0
        self.held = False
        self.release = threading.Event()  # set it to let a hanging constructor return
        self.hang = hang
        self.calls: list[Call] = []
        self._calls_lock = threading.Lock()
        self.robot: RobotDouble | None = None

    def log(self, name: str, **kwargs: Any) -> None:
        with self._calls_lock:
            self.calls.append(Call(time.monotonic(), name, kwargs))

    def Robot(self, robot_sn: str, verbose: bool = True, lite: bool = False) -> RobotDouble:
        self.log("Robot", robot_sn=robot_sn)
        if self.hang:  # a robot that never answers the search
            self.release.wait()
        if robot_sn != self.serial_number:
            raise RuntimeError(
                f"[flexiv::rdk::Robot] Failed to establish connection with {robot_sn}\n"
                "Please check network settings"
            )
        self.robot = RobotDouble(self, robot_sn)
        return self.robot

    # -- test controls -----------------------------------------------------------------
    def hold_tcp(self, pose: tuple[float, ...]) -> None:
        """Pin the measured TCP (an arm blocked by contact): commands no longer move it."""
        self.tcp = np.array(pose, dtype=np.float64)
        self.held = True

    def inject_fault(self) -> None:
        self.faulted = True

    def names(self) -> list[str]:
        with self._calls_lock:
            return [c.name for c in self.calls]

    def sent(self, since: float = 0.0) -> list[Call]:
        """The SendCartesianMotionForce calls made at or after `since` (monotonic time)."""
        with self._calls_lock:
            return [c for c in self.calls if c.name == "SendCartesianMotionForce" and c.t >= since]
