"""A scripted tele-operator for play data, working only from ground-truth poses.

It behaves like a person playing with the scene: it wanders, walks up to the object, pushes
it from varied sides and now and then does the task (pushes the T / the cube towards the goal)
with the intent label on. Modes are drawn at random (seeded); each lasts a random number of
control steps. It knows the scene the way a person does (the T's shape, the gate's opening),
and sees nothing but what the auto_play node gets: the poses, `success` and (Push-T)
`coverage` in the ground-truth dict.

A task attempt (intent on) lasts until success or until the operator gives up (a budget of
control steps, as a person tries for a while). On success the operator presses the milestone
once, at the success step, stops pushing and backs off slowly for HOLD_STEPS steps (intent
still on: the result is part of the task), then ends the attempt. No attempt starts while the
scene is at success already (a person first plays it out of the goal).
"""

from __future__ import annotations

import numpy as np

from dmo_ros.errors import UserError
from dmo_ros.sim.go2_operator import Go2Operator
from dmo_ros.sim.operator import HOLD_STEPS, Act
from dmo_ros.sim.pusht_operator import PushTOperator
from dmo_ros.task import robot_name, task_for_robot

__all__ = ["HOLD_STEPS", "Act", "AutoPlay"]


class AutoPlay:
    """Scripted play for 'pusht'/'flexiv' (end-effector deltas) or 'go2' (body velocities)."""

    def __init__(
        self,
        robot: str,
        seed: int = 0,
        task_prob: float = 0.2,
        wander_prob: float = 0.1,
        **kwargs,
    ) -> None:
        """task_prob / wander_prob: chance that the next activity is the task / wandering
        (else free play). kwargs: pusht: workspace_low, workspace_high (m); go2: arena_half
        (m), gate_offset (m, the point in front of the goal gate's opening, from the goal)."""
        self.robot = robot_name(robot)
        if min(task_prob, wander_prob) < 0.0 or task_prob + wander_prob > 1.0:
            raise UserError(
                f"auto-play: task_prob {task_prob} and wander_prob {wander_prob} "
                "must be probabilities that add up to at most 1"
            )
        task = task_for_robot(self.robot)
        if self.robot == "flexiv":
            self._op = PushTOperator(
                seed,
                task_prob,
                wander_prob,
                max_delta=float(task.action_high[0]),
                low=kwargs.pop("workspace_low", (0.025, 0.025)),  # PushTTable's workspace
                high=kwargs.pop("workspace_high", (0.487, 0.487)),
            )
        else:
            self._op = Go2Operator(
                seed,
                task_prob,
                wander_prob,
                low=task.action_low,
                high=task.action_high,
                arena_half=float(kwargs.pop("arena_half", 2.5)),  # Go2PushCube's arena
                gate_offset=kwargs.pop("gate_offset", (-0.6, 0.0)),
            )
        if kwargs:
            raise UserError(f"auto-play ({robot}): unknown option(s) {', '.join(sorted(kwargs))}")

    def act(self, gt: dict) -> Act:
        """The next action (physical units), the intent label and the milestone press, from
        what the auto_play node gets: pusht "ee", "object", "goal"; go2 "base", "cube",
        "goal"; both "success" (task/success; False when absent) and pusht "coverage"
        (optional). A success in a task attempt presses the milestone (that step only) and
        ends the attempt after HOLD_STEPS steps of staying."""
        action, intent, milestone = self._op.act(gt)
        return Act(np.asarray(action, dtype=np.float32), bool(intent), bool(milestone))

    @property
    def attempts(self) -> int:
        """Task attempts started so far."""
        return self._op.attempts

    @property
    def successes(self) -> int:
        """Task attempts that reached success (milestones pressed)."""
        return self._op.successes
