"""What both scripted operators share: geometry helpers, the mode schedule (wander | play |
task) and the attempt bookkeeping (success, milestone, staying a moment)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 1e-9 else np.array([1.0, 0.0])


def perp(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def detour(start: np.ndarray, end: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """`end`, or a waypoint beside `centre` when the straight path would pass closer to it than
    `radius` (and closer than `end` itself is)."""
    seg = end - start
    length = float(np.hypot(*seg))
    if length < 1e-9:
        return end
    radius = min(radius, float(np.hypot(*(end - centre))) - 0.005)
    u = seg / length
    closest = start + u * float(np.clip(np.dot(centre - start, u), 0.0, length))
    if np.hypot(*(closest - centre)) >= radius:
        return end
    side = closest - centre
    side = unit(side) if np.hypot(*side) > 1e-6 else perp(u)
    return centre + side * radius * 1.3


class Act(NamedTuple):
    """What the operator does in one control step."""

    action: np.ndarray  # physical units (end-effector delta / body velocity)
    intent: bool  # the intent label (task attempt under way)
    milestone: bool  # pressed once, at the step an attempt's success is seen


HOLD_STEPS = 6  # after success: stay (backing off slowly) 1.2 s, intent on, then end the attempt


class Operator:
    """Mode bookkeeping shared by both robots: wander | play (push anywhere) | task."""

    # give-up budget of a task attempt (control steps): 30 s; for the Go2 measured, the attempts
    # that succeed take a median ~45 steps, all within ~75
    TASK_STEPS = 150

    def __init__(self, seed: int, task_prob: float, wander_prob: float) -> None:
        # two streams: the schedule of activities depends on the seed alone, not on the scene
        self.rng = np.random.default_rng([seed, 0])
        self.schedule = np.random.default_rng([seed, 1])
        self.task_prob, self.wander_prob = task_prob, wander_prob
        self.mode, self.steps_left = "wander", 0
        self.phase, self.push_left = "approach", 0  # approach | align | push
        self.direction, self.speed = np.array([1.0, 0.0]), 1.0
        self.planned = False  # a push is planned once per approach
        self.waypoint = np.zeros(2)
        self.hold_left = 0  # steps still to stay after a success
        self.attempts = self.successes = 0

    def approach_again(self) -> None:
        self.phase, self.planned = "approach", False

    def next_mode(self, success: bool = False) -> None:
        r, u = self.schedule.random(), self.schedule.random()
        if r < self.task_prob and not success:  # at success already: play it out first
            self.mode, self.steps_left = "task", self.TASK_STEPS
            self.attempts += 1
            self.begin_task()
        elif r < self.task_prob + self.wander_prob:
            self.mode, self.steps_left = "wander", 6 + int(u * 10)
        else:
            self.mode, self.steps_left = "play", 20 + int(u * 25)
        self.approach_again()

    def begin_task(self) -> None:
        """A new task attempt starts (robot-specific state)."""

    def success_step(self, success: bool) -> bool:
        """Bookkeeping of a success in task mode; True at the step the milestone is pressed."""
        if self.mode != "task" or self.hold_left > 0 or not success:
            return False
        self.hold_left, self.successes = HOLD_STEPS, self.successes + 1
        return True

    def holding(self) -> bool:
        """Whether this step is one of staying after a success (counts it); the attempt ends
        after the last."""
        if self.hold_left <= 0:
            return False
        self.hold_left -= 1
        if self.hold_left == 0:  # the attempt is over: a new activity at the next step
            self.mode, self.steps_left = "done", 0
        return True
