"""The batched global world model as the RL code sees it (DESIGN.md, CONTRACTS.md E).

The RL code only calls `init` and `step`, so any global model (DIAMOND-style here,
DreamerV4-style for Push Cube) can drive it. Frames are float in [-1, 1], [B,3,H,W];
actions are normalised to [-1, 1], [B,A].

Alignment (as in the play data): `actions[:, i]` is the action issued after seeing
`frames[:, i]`. `init` takes the last L frames and the L actions recorded after them;
the last of those is the one `step` replaces with the action it is given.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class GlobalWorldModel(Protocol):
    def init(self, frames: Tensor, actions: Tensor) -> Any:
        """State from frames [B,L,3,H,W] in [-1, 1] and actions [B,L,A] in [-1, 1]."""
        ...

    def step(self, state: Any, action: Tensor) -> tuple[Tensor, Any]:
        """Apply `action` [B,A] after the state's last frame: (next frame [B,3,H,W], state)."""
        ...
