"""Generated trajectories for the RSSM's fine-tuning (Algorithm 1: the replay buffer D).

Each imagined episode adds [B, T] frames, actions and global-reward labels; the oldest
are dropped beyond `capacity` steps. Kept as uint8 frames on the CPU (64x64x3 = 12 KiB a
step: a million steps is 12 GiB, so the paper's sizes want a smaller capacity here).
Sampling draws windows of `length` steps inside one episode, from a seeded generator.
"""

from __future__ import annotations

import torch


class ReplayBuffer:
    def __init__(self, capacity: int, length: int) -> None:
        if capacity < length or length < 1:
            raise ValueError(f"replay: capacity {capacity} must hold a window of {length} steps")
        self.capacity, self.length = capacity, length
        self.episodes: list[dict[str, torch.Tensor]] = []  # each {"frames" [T,H,W,3] uint8, ...}
        self.steps = 0

    def __len__(self) -> int:
        return self.steps

    def add(self, frames: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        """Episodes [B, T, ...]: frames uint8 [B,T,H,W,3] (or [-1, 1] floats [B,T,3,H,W],
        converted), actions [B,T,A] (actions[t] taken after frames[t]), rewards [B,T]."""
        if frames.dtype != torch.uint8:
            frames = ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            frames = frames.permute(0, 1, 3, 4, 2)
        if frames.shape[1] < self.length:
            raise ValueError(f"replay: episodes of {frames.shape[1]} steps < window {self.length}")
        for b in range(frames.shape[0]):
            self.episodes.append(
                {
                    "frames": frames[b].cpu().contiguous(),
                    "actions": actions[b].detach().float().cpu(),
                    "rewards": rewards[b].detach().float().cpu(),
                }
            )
            self.steps += frames.shape[1]
        while self.steps > self.capacity:
            self.steps -= len(self.episodes.pop(0)["frames"])

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """`batch` windows {"frames" [B,L,H,W,3] uint8, "actions" [B,L,A], "rewards" [B,L]}."""
        if not self.episodes:
            raise ValueError("replay: empty")
        which = torch.randint(len(self.episodes), (batch,), generator=generator).tolist()
        items = []
        for e in which:
            ep = self.episodes[e]
            start = int(
                torch.randint(len(ep["frames"]) - self.length + 1, (1,), generator=generator)
            )
            items.append({k: v[start : start + self.length] for k, v in ep.items()})
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
