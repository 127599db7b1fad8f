"""The task's goal image(s) for the ranking reward: rendered by the simulated table, or files.

`reward.ranking.goal_image` in the task config:
* `sim`: the simulated Push-T table renders the T exactly on its goal pose, with the pusher at
  rest at `renders` places on a ring of GOAL_RING m around the goal (clear of the T, whose
  farthest point is 0.121 m from its origin); the reward averages its score over them.
  Measured (cpu ranking reward, held-out auto-play): where the pusher is hardly matters,
  Spearman with coverage 0.926-0.927 for each single place, 0.927 for the average of 8 and
  0.928 with the operator's own 30 success frames as goals.
* a path: a PNG/JPEG file, or a folder of them (all used, averaged the same way). Take it with
  the task's own camera, as recorded: the T placed by hand exactly on the goal, the pusher
  (end-effector) lifted or moved out of the way; several photos with the arm resting at
  different places serve like the renders. Frames are resized to the task's image size as
  the play data's are (cv2.INTER_AREA, no crop).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dmo_ros.errors import UserError
from dmo_ros.task import TaskConfig

GOAL_RING = 0.2  # m, pusher distance from the goal pose's origin in the rendered goal images
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
HOW = "a camera frame of the T on its goal with the pusher out of the way"


def goal_images(spec: str, task: TaskConfig, renders: int, source: str = "config") -> np.ndarray:
    """uint8 [K,S,S,3] goal images for `task` (S = task.image_size); UserError when missing."""
    if not spec:
        raise UserError(f"{source}: reward.ranking.goal_image is not set (give 'sim' or {HOW})")
    if spec == "sim":
        if task.robot != "flexiv":
            raise UserError(
                f"{source}: reward.ranking.goal_image 'sim': only the simulated Push-T table "
                f"renders a goal image; task '{task.name}' needs an image file ({HOW})"
            )
        return rendered_goals(task.image_size, renders)
    path = Path(spec)
    files = [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not path.exists() or not files:
        raise UserError(f"{source}: reward.ranking.goal_image {spec}: no such image ({HOW})")
    return np.stack([_read(f, task.image_size) for f in files])


def rendered_goals(size: int, renders: int) -> np.ndarray:
    from dmo_ros.sim.pusht_table import PushTTable

    table = PushTTable(image_size=size)
    table.reset(seed=0)
    centre = table.ground_truth()["goal"][:2]
    angles = 2 * np.pi * (np.arange(renders) + 0.5) / renders
    ring = centre + GOAL_RING * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.stack([table.render_goal(ee) for ee in ring])


def _read(path: Path, size: int) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"reward.ranking.goal_image {path}: not a readable image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb.shape[:2] != (size, size):
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb
