"""When a deployed policy may command the robot, and what it sends: the policy node's rules,
free of ROS so they are tested without DDS.

A control step is due on every tick of the control timer. It acts on the first camera frame
stamped at or after the tick (at once if that frame is already there): on the simulated
robots the frame of a step carries the step's time, so the action for frame t reaches step
t + 1 as in `dmo-ros eval policy`; a real camera adds at most one frame interval.
No frame within `stale_timeout` (two periods) of a tick: a stop (the Go2 gets a zero
velocity, the arm no delta) and a fault, and the filtered state restarts once frames
return (it missed the steps in between). The node starts disabled unless told; an
emergency stop from any source latches until that source releases it, and a release
leaves the node disabled: the robot never restarts by itself. Every action is checked
(NaN/inf refused, then clipped to the task's bounds) before it becomes a command.
"""

from __future__ import annotations

import enum

import cv2
import numpy as np

from dmo_ros.hw.command_guard import BadCommand, CommandGuard
from dmo_ros.task import TaskConfig


class Step(enum.Enum):
    """What a tick of the control timer asks of the node."""

    OFF = "off"  # disabled or estop latched: send nothing
    STOP = "stop"  # no fresh frame: a stop command (Go2) or nothing (arm)
    ACT = "act"  # infer on the latest frame now
    WAIT = "wait"  # infer on the next frame when it arrives


def policy_frame(rgb: np.ndarray, size: int) -> np.ndarray:
    """A camera image as the policy sees it: square `size` pixels, resized as in training."""
    if rgb.shape[:2] != (size, size):
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


class DeploySafety:
    """The enable / estop / staleness state of a deployed policy, and its command check.

    Times are integer nanoseconds of the node's clock (sim time under `use_sim_time`)."""

    def __init__(self, task: TaskConfig, stale_timeout: float, enabled: bool = False) -> None:
        self.task = task
        n = task.action_dim
        # The policy's output is checked before scaling (scaling clips, and would turn an inf
        # into a bound); the command after it, against the robot's bounds.
        self._unit = CommandGuard([-1.0] * n, [1.0] * n, task.action_names)
        self._guard = CommandGuard(task.action_low, task.action_high, task.action_names)
        self._stale_ns = round(stale_timeout * 1e9)
        self.enabled = enabled
        self._estops: set[str] = set()  # sources whose estop is engaged
        self._frame_ns: int | None = None  # stamp of the latest frame
        self._due_ns: int | None = None  # a step waits for a frame stamped at or after this
        self.stale = False
        self.needs_reset = True  # the filtered state must start afresh before the next act
        self.last_fault = ""

    @property
    def latched(self) -> bool:
        return bool(self._estops)

    def estop(self, source: str, engaged: bool) -> bool:
        """Engage or release `source`'s estop; True when the latch state changed."""
        before = self.latched
        if engaged:
            self._estops.add(source)
            self.enabled = False
            self._due_ns = None
            self.last_fault = f"estop ({source})"
        else:
            self._estops.discard(source)
        return self.latched != before

    def enable(self, on: bool) -> tuple[bool, str]:
        """Enable or disable; (accepted, message). Enabling under an estop is refused."""
        if on and self.latched:
            return False, f"estop latched ({', '.join(sorted(self._estops))}): release it first"
        if on and not self.enabled:
            self.needs_reset = True  # a new run: the old filtered state describes another scene
        self.enabled = on
        if not on:
            self._due_ns = None
        return True, "enabled" if on else "disabled"

    def scene_reset(self) -> None:
        """The scene was reset: the filtered state starts afresh at the next frame."""
        self.needs_reset = True

    def tick(self, now_ns: int) -> Step:
        """A control step is due at `now_ns`."""
        self._due_ns = None
        if not self.enabled or self.latched:
            return Step.OFF
        if self._frame_ns is None or now_ns - self._frame_ns >= self._stale_ns:
            if not self.stale:
                self.last_fault = "no fresh camera frame"
            self.stale = self.needs_reset = True
            return Step.STOP
        self.stale = False
        if self._frame_ns >= now_ns:
            return Step.ACT
        self._due_ns = now_ns
        return Step.WAIT

    def frame(self, stamp_ns: int) -> bool:
        """A camera frame stamped `stamp_ns` arrived; True when the waiting step acts on it."""
        self._frame_ns = stamp_ns if self._frame_ns is None else max(self._frame_ns, stamp_ns)
        if self._due_ns is None or stamp_ns < self._due_ns:
            return False
        self._due_ns = None
        return self.enabled and not self.latched

    def frame_age(self, now_ns: int) -> float | None:
        """Seconds since the latest frame's stamp; None before the first."""
        return None if self._frame_ns is None else (now_ns - self._frame_ns) * 1e-9

    def command(self, action: np.ndarray) -> np.ndarray | None:
        """The policy's [-1, 1] action as a physical command inside the task's bounds, or None
        (a fault; the filtered state restarts) when it is not finite."""
        try:
            unit = self._unit.check(np.asarray(action, dtype=np.float64).reshape(-1))
        except BadCommand as exc:
            self.last_fault = f"policy output refused: {exc}"
            self.needs_reset = True
            return None
        return self._guard.check(self.task.denormalize(unit))

    def stop_command(self) -> np.ndarray | None:
        """What a stop sends: a zero velocity to the Go2, nothing to the arm (no delta holds it)."""
        return np.zeros(self.task.action_dim) if self.task.robot == "go2" else None
