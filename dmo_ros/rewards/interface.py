"""What the RL code calls: a learned reward per frame, the same for both kinds.

    reward = load_reward("models/reward-pusht-cpu", task)
    r = reward(frames, start)   # frames, start [B,3,H,W] in [-1, 1] -> [B]

The ranking reward (ranking.py) scores frames towards the task's goal image(s) stored in its
checkpoint, from `start` (e.g. the first frame of an imagined rollout; None: the learned
"no start"), standardised over its training frames. The intent reward (intent.py) ignores
`start`. Both run without gradients (the RSSM's reward head is what RL differentiates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from dmo_ros.errors import UserError
from dmo_ros.rewards.intent import KIND as INTENT_KIND
from dmo_ros.rewards.intent import IntentConfig, IntentReward
from dmo_ros.rewards.ranking import KIND as RANKING_KIND
from dmo_ros.rewards.ranking import RankingConfig, RankingReward
from dmo_ros.task import TaskConfig
from dmo_ros.training.checkpoint import load_checkpoint, resolve_checkpoint

MODELS = {RANKING_KIND: (RankingConfig, RankingReward), INTENT_KIND: (IntentConfig, IntentReward)}


@runtime_checkable
class Reward(Protocol):
    kind: str
    image_size: int

    def __call__(self, frames: Tensor, start: Tensor | None = None) -> Tensor:
        """Frames [B,3,H,W] in [-1, 1] (start: the same shape, or None) -> rewards [B]."""
        ...


class LearnedReward:
    """A trained reward model behind the `Reward` call (EMA weights, eval mode, no grad)."""

    def __init__(self, kind: str, model: RankingReward | IntentReward) -> None:
        self.kind, self.model = kind, model
        self.image_size = model.cfg.image_size

    def __call__(self, frames: Tensor, start: Tensor | None = None) -> Tensor:
        return self.model.reward(frames, start)

    def to(self, device: str | torch.device) -> LearnedReward:
        self.model.to(device)
        return self


def load_model(path: str | Path, task: TaskConfig | None = None):
    """(kind, model with its EMA weights, checkpoint, file) of a reward run (folder or file);
    refuses another kind of model, another task and another image size in one line."""
    file = resolve_checkpoint(path)
    ckpt = load_checkpoint(file, task=task.name if task is not None else None)
    kind = ckpt.get("kind")
    if kind not in MODELS:
        raise UserError(f"{file}: checkpoint holds a '{kind}', not a reward model")
    config_cls, model_cls = MODELS[kind]
    try:
        cfg = config_cls.from_dict(ckpt["model_config"], str(file))
        model = model_cls(cfg)
        model.load_state_dict(ckpt["ema"]["module"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise UserError(f"{file}: checkpoint does not fit its model ({str(exc)[:120]})") from None
    if task is not None and cfg.image_size != task.image_size:
        raise UserError(
            f"{file}: reward model takes {cfg.image_size}x{cfg.image_size} images, task "
            f"'{task.name}' has {task.image_size}x{task.image_size}"
        )
    return kind, model.eval(), ckpt, file


def load_reward(path: str | Path, task: TaskConfig) -> LearnedReward:
    """The reward of a trained run for `task` (see `load_model` for what is refused)."""
    kind, model, _, file = load_model(path, task)
    if kind == RANKING_KIND and int(model.norm_frames) == 0:
        raise UserError(f"{file}: ranking reward is not normalised yet (finish it with --resume)")
    return LearnedReward(kind, model)
