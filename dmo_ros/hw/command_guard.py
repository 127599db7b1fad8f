"""The last check before a command reaches a robot: finite, right length, inside the limits.

Sim and real drivers both pass every command through a `CommandGuard`, so NaN, inf or a
malformed command is refused in one place and an out-of-range one is clipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dmo_ros.errors import UserError


class BadCommand(UserError, ValueError):
    """A command that must not reach a robot (NaN, inf, wrong length, not numbers)."""


class CommandGuard:
    """Clips commands to [low, high] per dimension; refuses malformed ones with `BadCommand`."""

    def __init__(
        self,
        low: Sequence[float],
        high: Sequence[float],
        names: Sequence[str] | None = None,
    ) -> None:
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        n = self.low.size
        self.names = list(names) if names is not None else [f"[{i}]" for i in range(n)]
        if self.high.size != n or len(self.names) != n:
            raise UserError(
                f"command limits: low has {n} values, high {self.high.size}, "
                f"names {len(self.names)}; they must match"
            )
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise UserError(f"command limits must be finite (low {low}, high {high})")
        if np.any(self.low > self.high):
            raise UserError(f"command limits: low {low} must not exceed high {high}")

    @property
    def size(self) -> int:
        return int(self.low.size)

    def check(self, command: Sequence[float]) -> np.ndarray:
        """A clipped float64 copy of `command`, or `BadCommand` naming the problem."""
        try:
            values = np.array(command, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BadCommand(f"command {command!r} is not a list of numbers") from exc
        if values.ndim != 1 or values.size != self.size:
            raise BadCommand(
                f"command has shape {values.shape}, expected {self.size} values "
                f"({', '.join(self.names)})"
            )
        bad = ~np.isfinite(values)
        if bad.any():
            which = ", ".join(n for n, b in zip(self.names, bad) if b)
            raise BadCommand(f"command {values.tolist()} has a non-finite value ({which})")
        return np.clip(values, self.low, self.high)
