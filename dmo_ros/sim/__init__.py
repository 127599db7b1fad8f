"""Embedded simulated robots (gymnasium API). No ROS, no torch.

The simulator modules are imported on demand: pymunk/pygame and MuJoCo load only for the
robot that is asked for.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from dmo_ros.errors import UserError
from dmo_ros.task import robot_name

if TYPE_CHECKING:
    from dmo_ros.sim.push_cube import Go2PushCube
    from dmo_ros.sim.pusht_table import PushTTable


def make_sim(robot: str, **kwargs) -> PushTTable | Go2PushCube:
    """The simulated robot for 'pusht' | 'flexiv' (Push-T table) or 'go2' (push-cube)."""
    if robot_name(robot) == "flexiv":
        from dmo_ros.sim.pusht_table import PushTTable as cls
    else:
        from dmo_ros.sim.push_cube import Go2PushCube as cls
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown and not takes_any:
        known = ", ".join(k for k in params if k != "self")
        raise UserError(
            f"simulated {robot}: unknown option(s) {', '.join(unknown)} (known: {known})"
        )
    return cls(**kwargs)
