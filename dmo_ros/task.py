"""What a task is: its robot, camera, control period, action space and topics.

Shared by every layer (sims, data, models, nodes), so it depends on numpy only.
Actions travel in physical units on ROS topics and in bags; learning code sees them
normalised to [-1, 1] per dimension by `action_low` / `action_high`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from dmo_ros.config import load
from dmo_ros.errors import UserError

ROBOT_ALIASES = {"pusht": "flexiv", "flexiv": "flexiv", "go2": "go2"}
TASK_FILES = {"flexiv": "pusht.yaml", "go2": "push_cube.yaml"}


@dataclass
class TaskConfig:
    name: str
    robot: Literal["flexiv", "go2"]
    action_names: list[str]
    action_low: list[float]
    action_high: list[float]
    action_topic: str
    action_type: str
    state_topic: str
    state_type: str
    image_size: int = 64
    control_period: float = 0.2
    image_topic: str = "camera/image_raw"
    intent_topic: str = "intent"
    milestone_topic: str = "milestone"

    def __post_init__(self) -> None:
        n = len(self.action_names)
        if not (len(self.action_low) == len(self.action_high) == n):
            raise UserError(
                f"task '{self.name}': action_names, action_low, action_high differ in length"
            )
        if any(lo >= hi for lo, hi in zip(self.action_low, self.action_high)):
            raise UserError(f"task '{self.name}': every action_low must be below action_high")

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def normalize(self, action: np.ndarray) -> np.ndarray:
        """Physical units -> [-1, 1] (clipped)."""
        lo, hi = np.asarray(self.action_low), np.asarray(self.action_high)
        return np.clip(2.0 * (np.asarray(action) - lo) / (hi - lo) - 1.0, -1.0, 1.0).astype(
            np.float32
        )

    def denormalize(self, action: np.ndarray) -> np.ndarray:
        """[-1, 1] -> physical units (clipped to the bounds)."""
        lo, hi = np.asarray(self.action_low), np.asarray(self.action_high)
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return (lo + (a + 1.0) * 0.5 * (hi - lo)).astype(np.float32)


def robot_name(robot: str) -> str:
    """'pusht' | 'flexiv' -> 'flexiv'; 'go2' -> 'go2'; anything else is a UserError."""
    try:
        return ROBOT_ALIASES[robot]
    except KeyError:
        raise UserError(f"unknown robot '{robot}' (expected one of: pusht, flexiv, go2)") from None


def load_task(config: str | Path) -> TaskConfig:
    """The `task:` section of a task config file (config/pusht.yaml, config/push_cube.yaml)."""
    return load(TaskConfig, config, "task")


def task_for_robot(robot: str) -> TaskConfig:
    return load_task(TASK_FILES[robot_name(robot)])
