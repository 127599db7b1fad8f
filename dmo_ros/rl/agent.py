"""A trained policy as it runs on a robot: the RSSM filter and the actor's deterministic action.

Each new frame is filtered with the previous action (the posterior's most likely state, so
the same frames give the same actions); the first frame after `reset` starts from the RSSM's
initial state with a zero action, as in pretraining. Used by `dmo-ros eval policy` and the
policy node; the checkpoint is a DMO-SAPO run's (rl/dmo_sapo.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from dmo_ros.errors import UserError
from dmo_ros.rl.policy import Actor
from dmo_ros.task import TaskConfig
from dmo_ros.worldmodels.rssm import RSSM


class Agent:
    def __init__(self, rssm: RSSM, actor: Actor) -> None:
        self.rssm, self.actor = rssm.eval(), actor.eval()
        self.state: dict[str, Tensor] | None = None
        self.action: Tensor | None = None

    def reset(self, batch: int) -> None:
        device = next(self.actor.parameters()).device
        self.state = self.rssm.initial(batch)
        self.action = torch.zeros(batch, self.rssm.cfg.action_dim, device=device)

    @torch.no_grad()
    def act(self, frames: Tensor) -> Tensor:
        """Frames uint8 [B,H,W,3] -> actions [B,A] in [-1, 1]."""
        if self.state is None:
            self.reset(frames.shape[0])
        device = self.action.device
        embed = self.rssm.encode(frames.to(device).permute(0, 3, 1, 2))
        prior = self.rssm.imagine(self.state, self.action)
        self.state = self.rssm.posterior(prior, embed, mode=True)
        self.action = self.actor.mode(self.rssm.features(self.state))
        return self.action


def load_agent(path: str | Path, task: TaskConfig, device: torch.device) -> tuple[Agent, dict]:
    """The policy of a DMO-SAPO run (folder or checkpoint) for `task`, and its checkpoint."""
    from dmo_ros.rl.dmo_sapo import KIND, networks
    from dmo_ros.training.checkpoint import load_checkpoint, resolve_checkpoint

    file = resolve_checkpoint(path)
    ckpt = load_checkpoint(file, kind=KIND, task=task.name)
    try:
        rssm, actor, _ = networks(ckpt["model_config"], str(file))
        rssm.load_state_dict(ckpt["rssm"])
        actor.load_state_dict(ckpt["actor"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise UserError(f"{file}: checkpoint does not fit its model ({str(exc)[:120]})") from None
    cfg = rssm.cfg
    if cfg.image_size != task.image_size or cfg.action_dim != task.action_dim:
        raise UserError(
            f"{file}: policy for {cfg.image_size}px frames and {cfg.action_dim}-d actions, the "
            f"task has {task.image_size}px and {task.action_dim}-d"
        )
    return Agent(rssm.to(device), actor.to(device)), ckpt


def save_untrained_policy(path: str | Path, task: TaskConfig, **rssm_sizes) -> Path:
    """A policy checkpoint with untrained networks (RSSMConfig sizes as given), holding what
    `load_agent` reads: for the deployment side's tests and benches without a training run."""
    from dmo_ros.rl.policy import ActorConfig, CriticConfig
    from dmo_ros.training.checkpoint import save_checkpoint
    from dmo_ros.worldmodels.rssm import RSSMConfig

    torch.manual_seed(0)
    rssm = RSSM(RSSMConfig(task.action_dim, task.image_size, **rssm_sizes))
    actor_cfg = ActorConfig()
    model_config = {
        "rssm": rssm.cfg.to_dict(),
        "actor": dataclasses.asdict(actor_cfg),
        "critic": dataclasses.asdict(CriticConfig()),
    }
    payload = {
        "kind": "policy",
        "task": task.name,
        "model_config": model_config,
        "config": {"task": dataclasses.asdict(task)},
        "rssm": rssm.state_dict(),
        "actor": Actor(rssm.feature_dim, task.action_dim, actor_cfg).state_dict(),
    }
    return save_checkpoint(path, payload)
