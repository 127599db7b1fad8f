"""SAPO's networks (REFERENCE.md): a squashed-Gaussian actor and twin critics on RSSM features.

SiLU + LayerNorm MLPs; log-std squashed into [log_std_min, log_std_max]; actions in [-1, 1]
(the task's normalised units). The critics are an ensemble of two without target networks:
bootstrap targets take their minimum, the actor their mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ActorConfig:
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    lr: float = 2.0e-3
    grad_clip: float = 0.5
    log_std_min: float = -5.0
    log_std_max: float = 2.0


@dataclass
class CriticConfig:
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    lr: float = 5.0e-4
    iterations: int = 16  # passes over one epoch's imagined states ...
    minibatches: int = 4  # ... in this many minibatches each
    grad_clip: float = 0.5


def mlp(inp: int, hidden: list[int], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inp, width), nn.LayerNorm(width), nn.SiLU()]
        inp = width
    return nn.Sequential(*layers, nn.Linear(inp, out))


def _log_prob(u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log-density of tanh(u) for u ~ N(mean, exp(log_std)), summed over the action dims."""
    gauss = -0.5 * ((u - mean) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)
    # log |d tanh(u) / du| = log(1 - tanh(u)^2), in a form that stays finite for large |u|
    squash = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (gauss - squash).sum(-1)


class Actor(nn.Module):
    def __init__(self, features: int, action_dim: int, cfg: ActorConfig):
        super().__init__()
        self.cfg = cfg
        self.net = mlp(features, cfg.hidden, 2 * action_dim)

    def _dist(self, features: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw = self.net(features).chunk(2, -1)
        lo, hi = self.cfg.log_std_min, self.cfg.log_std_max
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1.0)
        return mean, log_std

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """A reparameterised sample and its log-probability: (action [B,A], log_prob [B])."""
        mean, log_std = self._dist(features)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), _log_prob(u, mean, log_std)

    def log_prob(self, features: Tensor, action: Tensor) -> Tensor:
        """log pi(action | features) [B] of given actions in (-1, 1) (PPO's ratio)."""
        mean, log_std = self._dist(features)
        return _log_prob(torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6)), mean, log_std)

    def mode(self, features: Tensor) -> Tensor:
        """The deterministic action (deployment, evaluation)."""
        return torch.tanh(self._dist(features)[0])


class Critics(nn.Module):
    def __init__(self, features: int, cfg: CriticConfig, members: int = 2):
        super().__init__()
        self.members = nn.ModuleList(mlp(features, cfg.hidden, 1) for _ in range(members))

    def forward(self, features: Tensor) -> Tensor:
        """Values of every member: [members, ...]."""
        return torch.stack([m(features).squeeze(-1) for m in self.members])
