"""One batch of imagined episodes (Algorithm 1's inner loop), with the DMO coupling.

From L-frame contexts: the RSSM filters the context; then for H steps the actor acts on the
RSSM features, the **forward** model (diffusion, simulator) makes the next frame, the
**global** reward labels it, the RSSM filters it, and the next features carry the
posterior's value with the prior's gradient (coupling.py). `forward=None` is No-Diffusion:
the RSSM prior is also the forward model (its decoded frames get the global reward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dmo_ros.rl.coupling import couple_state
from dmo_ros.worldmodels.rssm import RSSM

Reward = Callable[[Tensor, Tensor], Tensor]  # (frames [B,3,S,S], start [B,3,S,S]) -> [B]


@dataclass
class Trajectory:
    features: Tensor  # [H+1, B, F]: what the actor saw, with the DMO gradients
    actions: Tensor  # [H, B, A]
    log_probs: Tensor  # [H, B]
    local_rewards: Tensor  # [H, B]: the RSSM reward head on the state after each action
    rewards: Tensor  # [H, B]: the global reward of the frame after each action (no gradient)
    frames: Tensor  # [B, H+1, 3, S, S] in [-1, 1]: the start frame, then the imagined ones
    start_reward: Tensor  # [B]: the global reward of the start frame

    def replay_episode(self) -> tuple[Tensor, Tensor, Tensor]:
        """(frames, actions, reward labels) for rl/replay.py: [B, H+1, ...], actions[t] taken
        after frames[t] (none after the last: zeros), labels of the frames."""
        acts = self.actions.detach().transpose(0, 1)
        acts = torch.cat([acts, torch.zeros_like(acts[:, :1])], 1)
        labels = torch.cat([self.start_reward[:, None], self.rewards.transpose(0, 1)], 1)
        return self.frames, acts, labels


def unroll(
    rssm: RSSM,
    actor: torch.nn.Module,
    forward: Any | None,
    reward: Reward,
    frames: Tensor,
    actions: Tensor,
    horizon: int,
) -> Trajectory:
    """Contexts frames [B,L,3,S,S] in [-1, 1] and actions [B,L,A] (actions[:, i] after
    frames[:, i]; the last is the one the policy replaces) -> `horizon` imagined steps."""
    with torch.no_grad():
        posts, _ = rssm.observe_sequence(frames, actions)
        state = {k: v[:, -1] for k, v in posts.items()}
        start = frames[:, -1]
        start_reward = reward(start, start)
        world = forward.init(frames, actions) if forward is not None else None
    feats, acts, log_probs, local, rewards, out = [rssm.features(state)], [], [], [], [], [start]
    for _ in range(horizon):
        action, log_prob = actor(feats[-1])
        prior = rssm.imagine(state, action)
        with torch.no_grad():
            if forward is None:
                observed = prior
                frame = rssm.decode(rssm.features(prior)).clamp(-1.0, 1.0)
            else:
                frame, world = forward.step(world, action.detach())
                detached = {k: v.detach() for k, v in prior.items()}
                observed = rssm.posterior(detached, rssm.encode(frame))
            rewards.append(reward(frame, start).float())
        state = couple_state(prior, observed)
        feats.append(rssm.features(state))
        local.append(rssm.reward(feats[-1]))
        acts.append(action)
        log_probs.append(log_prob)
        out.append(frame)
    return Trajectory(
        features=torch.stack(feats),
        actions=torch.stack(acts),
        log_probs=torch.stack(log_probs),
        local_rewards=torch.stack(local),
        rewards=torch.stack(rewards),
        frames=torch.stack(out, 1),
        start_reward=start_reward.float(),
    )
