"""The episodes of `dmo-ros deploy` counted as `dmo-ros eval policy` counts them, free of ROS.

Episode i starts from the scene of seed `seed` + i; step t's ground truth (coverage, success)
is the simulated robot's after t control steps. An episode ends at success or after `steps`
steps, and the result has evaluate_agent's shape (rl/evaluate.py): an ended episode keeps its
last coverage for the rest of the curve. Robots without a coverage (the Go2) get None there.
"""

from __future__ import annotations

import numpy as np

from dmo_ros.errors import UserError


class DeployEpisodes:
    """Bookkeeping of `episodes` seeded episodes of at most `steps` steps."""

    def __init__(self, variant: str, steps: int, episodes: int, seed: int) -> None:
        if min(steps, episodes) < 1:
            raise UserError(f"deploy: steps {steps} and episodes {episodes} must be >= 1")
        self.variant, self.steps, self.episodes, self.seed = variant, steps, episodes, seed
        self.rows: list[dict] = []
        self._curves: list[list[float]] = []  # coverage after t = 0, 1, ... steps, per episode
        self._curve: list[float] | None = None  # the running episode's

    @property
    def done(self) -> bool:
        return len(self.rows) == self.episodes

    @property
    def running(self) -> bool:
        return self._curve is not None

    def next_seed(self) -> int:
        """The scene seed of the next episode (as evaluate_agent: seed + its index)."""
        return self.seed + len(self.rows)

    def start(self, seed: int, coverage: float | None) -> None:
        """The next episode's scene (of `seed`) is there, with its start coverage."""
        if self.done or self.running or seed != self.next_seed():
            raise UserError(f"deploy: scene of seed {seed} where seed {self.next_seed()} is due")
        self._curve = [np.nan if coverage is None else float(coverage)]

    def step(self, step: int, coverage: float | None, success: bool) -> dict | None:
        """Ground truth after `step` steps of the running episode; its row once it ends."""
        if self._curve is None or step != len(self._curve):
            raise UserError(f"deploy: step {step} of a scene out of order (a message was lost)")
        self._curve.append(np.nan if coverage is None else float(coverage))
        if not success and step < self.steps:
            return None
        curve = np.asarray(self._curve)
        self._curves.append(self._curve + [self._curve[-1]] * (self.steps - step))
        self._curve = None
        row = {
            "seed": self.next_seed(),
            "success": bool(success),
            "steps": int(step),
            "final_coverage": _value(curve[-1]),
            "max_coverage": _value(curve.max()),
        }
        self.rows.append(row)
        return row

    def result(self) -> dict:
        """evaluate_agent's dict over the ended episodes."""
        wins = [r["steps"] for r in self.rows if r["success"]]
        curves = np.asarray(self._curves, dtype=float).reshape(len(self._curves), -1)
        covered = curves.size and not np.isnan(curves).any()
        return {
            "variant": self.variant,
            "steps": self.steps,
            "seed": self.seed,
            "episodes": len(self.rows),
            "successes": len(wins),
            "success_rate": len(wins) / max(1, len(self.rows)),
            "steps_to_success": {
                "mean": float(np.mean(wins)) if wins else None,
                "median": float(np.median(wins)) if wins else None,
            },
            "coverage_curve": curves.mean(axis=0).tolist() if covered else [],
            "final_coverage_mean": float(curves[:, -1].mean()) if covered else None,
            "max_coverage_mean": float(curves.max(axis=1).mean()) if covered else None,
            "rows": list(self.rows),
        }


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)
