"""SAPO's objective (paper Eq. (4)-(6); REFERENCE.md): entropy bonus, lambda-returns, and the
actor, critic and temperature losses over one imagined batch.

Tensors are time-major: rewards [H, B], values [H+1, B]. The actor's return uses the local
reward head (differentiable through the RSSM); the critics' targets the global rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class AlphaConfig:
    init: float = 1.0
    lr: float = 5.0e-3
    target_entropy: float = -1.0  # SAPO: -0.5 x action_dim


def entropy_bonus(log_probs: Tensor, target_entropy: float) -> Tensor:
    """SAPO's rescaled entropy H' = (H + |H_target|) * 0.5 / |H_target|, with H = -log pi of
    the sampled action (a one-sample estimate; a squashed Gaussian has no closed form)."""
    scale = abs(target_entropy)
    return (-log_probs + scale) * 0.5 / scale


def lambda_returns(rewards: Tensor, values: Tensor, gamma: float, lam: float) -> Tensor:
    """Eq. (6) as a recursion: G_t = r_t + gamma ((1 - lam) V_{t+1} + lam G_{t+1}), G_H = V_H.

    rewards [H, B], values [H+1, B] -> targets [H, B]."""
    out, g = [], values[-1]
    for t in reversed(range(rewards.shape[0])):
        g = rewards[t] + gamma * ((1.0 - lam) * values[t + 1] + lam * g)
        out.append(g)
    return torch.stack(out[::-1])


def actor_loss(local_rewards: Tensor, bonus: Tensor, last_value: Tensor, gamma: float) -> Tensor:
    """Eq. (4), negated and per step: -(sum_h gamma^h (R_h + alpha H'_h) + gamma^H V(s_H)) / H,
    averaged over the batch. `bonus` is alpha * H' [H, B]; last_value V(s_H) [B]."""
    horizon = local_rewards.shape[0]
    discount = gamma ** torch.arange(horizon, device=local_rewards.device).to(local_rewards)
    ret = (discount[:, None] * (local_rewards + bonus)).sum(0) + gamma**horizon * last_value
    return -ret.mean() / horizon


def alpha_loss(log_alpha: Tensor, log_probs: Tensor, target_entropy: float) -> Tensor:
    """alpha * |H_target| * sg(H - H_target): alpha falls while the entropy is above target."""
    entropy = -log_probs.detach().mean()
    return log_alpha.exp() * abs(target_entropy) * (entropy - target_entropy)
