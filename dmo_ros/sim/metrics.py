"""Trajectory quality of a base path (paper, Push Cube table): steps to success, straightness
(displacement / path length) and curvature (total |yaw change| per metre travelled)."""

from __future__ import annotations

import numpy as np


def trajectory_metrics(poses: np.ndarray, success_step: int | None) -> dict:
    """poses: (N, 3) rows of x, y (m), yaw (rad), one per control step, poses[0] the start.

    The path is cut at `success_step` (the index of the first successful pose) when given.
    Values that are undefined (no success; a path that never moves) are None.
    """
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) < 1:
        raise ValueError(f"trajectory_metrics: poses must be (N, 3), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("trajectory_metrics: poses contain NaN or inf")
    if success_step is not None:
        if not 0 <= success_step < len(p):
            raise ValueError(
                f"trajectory_metrics: success_step {success_step} outside 0..{len(p) - 1}"
            )
        p = p[: success_step + 1]
    length = float(np.sum(np.hypot(*np.diff(p[:, :2], axis=0).T))) if len(p) > 1 else 0.0
    # yaw differences wrapped to (-pi, pi]: a turn through +-pi counts as the short way round
    dyaw = np.angle(np.exp(1j * np.diff(p[:, 2])))
    moved = length > 1e-9
    return {
        "steps_to_success": None if success_step is None else int(success_step),
        "straightness": float(np.hypot(*(p[-1, :2] - p[0, :2])) / length) if moved else None,
        "curvature": float(np.sum(np.abs(dyaw)) / length) if moved else None,
        "path_length": length,
    }
