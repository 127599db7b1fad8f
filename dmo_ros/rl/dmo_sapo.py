"""`dmo-ros train policy`: DMO-SAPO, the paper's Algorithm 1, top to bottom.

Per epoch (`Learner.epoch`):
  1. backward model learning: `rssm.finetune_steps` RSSM updates on the replay buffer of
     generated trajectories; its reward head keeps learning the global reward's labels;
  2. imagination: B episodes of H steps from L-frame start contexts (imagination.py); the
     forward model makes the frames, the DMO coupling (coupling.py) gives the gradients;
  3. actor: Eq. (4) with the local reward head, + alpha H', bootstrapped by the critics'
     mean at H; alpha towards the target entropy;
  4. critics: Eq. (5)-(6), TD(lambda) targets from the global rewards;
  5. the imagined episodes go to the replay buffer.

Forward models (`--forward`): `global`, the diffusion world model; `sim`, the simulated robot
(an oracle, with `--reward sim` its goal coverage). `--algo nodiff` (No-Diffusion): the RSSM
prior is the forward model as well. The learner code is the same for all of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dmo_ros.config import build
from dmo_ros.errors import UserError
from dmo_ros.rl.config import PolicySection
from dmo_ros.rl.imagination import Trajectory, unroll
from dmo_ros.rl.policy import Actor, ActorConfig, CriticConfig, Critics
from dmo_ros.rl.replay import ReplayBuffer
from dmo_ros.rl.sapo import actor_loss, alpha_loss, entropy_bonus, lambda_returns
from dmo_ros.worldmodels.rssm import RSSM, RSSMConfig
from dmo_ros.worldmodels.rssm_train import Finetune

KIND = "policy"
ALGOS = ("dmo", "nodiff", "ppo")
SIM_CONTEXT = 4  # frames the RSSM filters before a simulated episode (the scene at rest)
BETAS = (0.7, 0.95)  # SAPO's AdamW betas


def networks(model_config: dict[str, Any], source: str) -> tuple[RSSM, Actor, Critics]:
    """The RSSM, actor and critics a policy checkpoint describes (untrained weights)."""
    rssm = RSSM(RSSMConfig.from_dict(model_config["rssm"], source))
    actor_cfg = build(ActorConfig, model_config["actor"], source, "actor.")
    critic_cfg = build(CriticConfig, model_config["critic"], source, "critic.")
    actor = Actor(rssm.feature_dim, rssm.cfg.action_dim, actor_cfg)
    return rssm, actor, Critics(rssm.feature_dim, critic_cfg)


class Learner:
    """Actor, twin critics, temperature, the RSSM's fine-tuning and its replay buffer."""

    def __init__(self, cfg: PolicySection, rssm: RSSM, algo: str, device: torch.device):
        self.cfg, self.rssm, self.algo = cfg, rssm.to(device), algo
        feats, actions = rssm.feature_dim, rssm.cfg.action_dim
        self.actor = Actor(feats, actions, cfg.actor).to(device)
        self.critics = Critics(feats, cfg.critic).to(device)
        self.log_alpha = torch.tensor(math.log(cfg.alpha.init), device=device, requires_grad=True)
        self.actor_opt = torch.optim.AdamW(self.actor.parameters(), cfg.actor.lr, betas=BETAS)
        self.critic_opt = torch.optim.AdamW(self.critics.parameters(), cfg.critic.lr, betas=BETAS)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], cfg.alpha.lr)
        r = cfg.rssm
        # No-Diffusion imagines in the RSSM itself: there are no generated frames to learn from.
        self.finetune = (
            Finetune(rssm, r.lr, r.grad_clip, r.batch_size, cfg.seed + 1) if algo == "dmo" else None
        )
        self.replay = ReplayBuffer(r.replay_capacity, r.window)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    @property
    def horizon(self) -> int:
        return self.cfg.horizon

    def model_config(self) -> dict[str, Any]:
        return {
            "rssm": self.rssm.cfg.to_dict(),
            "actor": asdict(self.cfg.actor),
            "critic": asdict(self.cfg.critic),
        }

    # -- one epoch ------------------------------------------------------------------------
    def epoch(self, forward, reward, starts) -> dict[str, float]:
        logs = self.model_step()
        frames, actions = starts.sample(self.cfg.batch, self.generator)
        device = self.log_alpha.device
        traj = unroll(
            self.rssm,
            self.actor,
            None if self.algo == "nodiff" else forward,
            reward,
            frames.to(device),
            actions.to(device),
            self.horizon,
        )
        logs |= self.actor_step(traj)
        logs |= self.critic_step(traj)
        starts.advance(traj)
        if self.finetune is not None:
            self.replay.add(*traj.replay_episode())
        return logs

    def model_step(self) -> dict[str, float]:
        if self.finetune is None or not len(self.replay):
            return {}
        logs = self.finetune.update(self.replay, self.cfg.rssm.finetune_steps)
        return {f"rssm/{k}": v for k, v in logs.items()}

    def bonus(self, log_probs: Tensor) -> Tensor:
        """alpha H' [H, B] at the current temperature (no gradient into alpha)."""
        alpha = self.log_alpha.detach().exp()
        return alpha * entropy_bonus(log_probs, self.cfg.alpha.target_entropy)

    def actor_step(self, traj: Trajectory) -> dict[str, float]:
        """Eq. (4); only the actor's parameters are differentiated, so neither the RSSM, the
        critics, the encoder nor the forward model receive a gradient."""
        cfg = self.cfg
        last_value = self.critics(traj.features[-1]).mean(0)
        loss = actor_loss(traj.local_rewards, self.bonus(traj.log_probs), last_value, cfg.gamma)
        params = list(self.actor.parameters())
        for p, g in zip(params, torch.autograd.grad(loss, params)):
            p.grad = g
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.actor.grad_clip)
        self.actor_opt.step()
        self.actor_opt.zero_grad(set_to_none=True)
        a_loss = alpha_loss(self.log_alpha, traj.log_probs, cfg.alpha.target_entropy)
        self.alpha_opt.zero_grad(set_to_none=True)
        a_loss.backward()
        self.alpha_opt.step()
        entropy = -traj.log_probs.detach().mean()
        return {
            "train/actor_loss": float(loss.detach()),
            "train/actor_grad_norm": float(norm),
            "train/entropy": float(entropy),
            "train/alpha": float(self.log_alpha.detach().exp()),
            "train/reward": float(traj.rewards.mean()),
            "train/local_reward": float(traj.local_rewards.detach().mean()),
            "train/local_reward_error": float(
                (traj.local_rewards.detach() - traj.rewards).abs().mean()
            ),
        }

    def critic_step(self, traj: Trajectory) -> dict[str, float]:
        """Eq. (5)-(6): TD(lambda) targets from the global rewards (+ alpha H'), the critics'
        minimum as bootstrap, computed once; then iterations x minibatches of regression."""
        cfg = self.cfg
        with torch.no_grad():
            feats = traj.features.detach()
            values = self.critics(feats).min(0).values
            rewards = traj.rewards + self.bonus(traj.log_probs.detach())
            targets = lambda_returns(rewards, values, cfg.gamma, cfg.lam)
        x, y = feats[:-1].flatten(0, 1), targets.flatten()
        total, count = 0.0, 0
        for _ in range(cfg.critic.iterations):
            order = torch.randperm(len(y), generator=self.generator).to(y.device)
            for chunk in order.chunk(cfg.critic.minibatches):
                loss = (self.critics(x[chunk]) - y[chunk]).square().mean()
                self.critic_opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.critics.parameters(), cfg.critic.grad_clip)
                self.critic_opt.step()
                total, count = total + float(loss.detach()), count + 1
        return {"train/critic_loss": total / max(1, count), "train/value": float(values.mean())}

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "actor": self.actor.state_dict(),
            "critics": self.critics.state_dict(),
            "rssm": self.rssm.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "generator": self.generator.get_state(),
        }
        if self.finetune is not None:
            state["rssm_opt"] = self.finetune.opt.state_dict()
            state["rssm_generator"] = self.finetune.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critics.load_state_dict(state["critics"])
        self.rssm.load_state_dict(state["rssm"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.generator.set_state(state["generator"])
        if self.finetune is not None:
            self.finetune.opt.load_state_dict(state["rssm_opt"])
            self.finetune.generator.set_state(state["rssm_generator"])


# -- start contexts ---------------------------------------------------------------------------


class BagStarts:
    """L-frame contexts from real play data (frames and the actions recorded after them);
    `keep` restricts them to some windows (the near variant)."""

    def __init__(self, sequences, context: int, keep: np.ndarray | None = None) -> None:
        from dmo_ros.data.windows import WindowDataset

        self.windows = WindowDataset(sequences, context)
        self.index = np.arange(len(self.windows)) if keep is None else np.flatnonzero(keep)
        if not len(self.index):
            raise UserError("no start context left in the play data")

    def sample(self, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        pick = torch.randint(len(self.index), (batch,), generator=generator).tolist()
        items = [self.windows[int(self.index[i])] for i in pick]
        frames = torch.stack([it["frames"] for it in items]).permute(0, 1, 4, 2, 3)
        return frames.float() / 127.5 - 1.0, torch.stack([it["actions"] for it in items])

    def advance(self, traj: Trajectory) -> None:
        """Every batch starts from fresh real contexts: nothing goes on."""


def near_starts(sequences, context: int, reward, quantile: float, device) -> BagStarts:
    """Contexts whose last frame the learned reward scores in its top `1 - quantile` (never
    the ground truth): where the task is nearly done, as the near variant asks."""
    starts = BagStarts(sequences, context)
    scores = []
    with torch.no_grad():
        n = len(starts.windows)
        for chunk in np.array_split(np.arange(n), max(1, n // 256)):
            last = torch.stack([starts.windows[int(i)]["frames"][-1] for i in chunk])
            frames = (last.permute(0, 3, 1, 2).float() / 127.5 - 1.0).to(device)
            scores.append(reward(frames, None).float().cpu())
    scores = torch.cat(scores).numpy()
    return BagStarts(sequences, context, scores >= np.quantile(scores, quantile))


class SimStarts:
    """The simulated robot's own resets (near or full), the scene at rest for L frames; the
    scenes then go on from where the last batch left them until the variant's episode
    length (`episode_steps`) has no room for another one, as SHAC and SAPO keep their
    environments across epochs: the policy learns the later states of an episode too."""

    def __init__(self, forward, episode_steps: int | None = None) -> None:
        self.forward, self.episode_steps = forward, episode_steps
        self.steps = 0  # since the scenes' reset
        self.context: tuple[Tensor, Tensor] | None = None  # where the next batch goes on

    def sample(self, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.context is None:
            self.steps = 0
            return self.forward.starts()
        return self.context

    def advance(self, traj: Trajectory) -> None:
        """After a batch: its last L frames (and the actions after them) go on, or a reset."""
        horizon = traj.actions.shape[0]
        self.steps += horizon
        context = self.forward.context
        if self.episode_steps is None or self.steps + horizon > self.episode_steps:
            self.context = None
            return
        acts = traj.actions.detach().transpose(0, 1)  # [B, H, A]
        acts = torch.cat([acts, torch.zeros_like(acts[:, :1])], 1)[:, -context:]
        self.context = (traj.frames[:, -context:].detach().contiguous(), acts.contiguous())

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "context": self.context, "scenes": self.forward.snapshot()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.context = int(state["steps"]), state["context"]
        self.forward.restore(state["scenes"])
