"""PPO inside the same forward model: the zeroth-order baseline (paper Section IV, Table I).

The unroll is DMO-SAPO's (imagination.py) under no_grad: the same forward model, global
reward, RSSM filter, features and actor network; only the update differs. Advantages are
lambda-returns minus the critics' mean value (= GAE(lambda)); the clipped surrogate and a
value regression run for `epochs` passes over `minibatches`. The RSSM keeps fine-tuning on
the generated episodes, as for DMO.
"""

from __future__ import annotations

import torch

from dmo_ros.rl.dmo_sapo import Learner
from dmo_ros.rl.imagination import Trajectory, unroll
from dmo_ros.rl.sapo import lambda_returns


class PPOLearner(Learner):
    def __init__(self, cfg, rssm, device):
        super().__init__(cfg, rssm, "ppo", device)
        for group in self.actor_opt.param_groups:
            group["lr"] = cfg.ppo.lr

    @property
    def horizon(self) -> int:
        return self.cfg.ppo.horizon

    def epoch(self, forward, reward, starts) -> dict[str, float]:
        logs = self.model_step()
        frames, actions = starts.sample(self.cfg.batch, self.generator)
        device = self.log_alpha.device
        with torch.no_grad():
            traj = unroll(
                self.rssm, self.actor, forward, reward, frames.to(device), actions.to(device),
                self.horizon,
            )  # fmt: skip
        logs |= self.update(traj)
        starts.advance(traj)
        self.replay.add(*traj.replay_episode())
        return logs

    def update(self, traj: Trajectory) -> dict[str, float]:
        cfg, ppo = self.cfg, self.cfg.ppo
        with torch.no_grad():
            values = self.critics(traj.features).mean(0)
            returns = lambda_returns(traj.rewards, values, cfg.gamma, cfg.lam)
            adv = returns - values[:-1]
        x, a = traj.features[:-1].flatten(0, 1), traj.actions.flatten(0, 1)
        with torch.no_grad():
            # recomputed rather than the sampler's: tanh saturates in float32, and atanh of a
            # saturated action is not the sample's u, so the first ratio would not be 1
            old = self.actor.log_prob(x, a)
        ret, adv = returns.flatten(), adv.flatten()
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        sums = {"train/policy_loss": 0.0, "train/critic_loss": 0.0, "train/clip_fraction": 0.0}
        n = 0
        for _ in range(ppo.epochs):
            order = torch.randperm(len(ret), generator=self.generator).to(ret.device)
            for mb in order.chunk(ppo.minibatches):
                log_prob = self.actor.log_prob(x[mb], a[mb])
                ratio = (log_prob - old[mb]).exp()
                clipped = ratio.clamp(1 - ppo.clip, 1 + ppo.clip)
                policy = -torch.min(ratio * adv[mb], clipped * adv[mb]).mean()
                loss = policy + ppo.entropy_coef * log_prob.mean()
                self.actor_opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.actor.parameters(), ppo.grad_clip)
                self.actor_opt.step()
                value = (self.critics(x[mb]) - ret[mb]).square().mean()
                self.critic_opt.zero_grad(set_to_none=True)
                value.backward()
                torch.nn.utils.clip_grad_norm_(self.critics.parameters(), cfg.critic.grad_clip)
                self.critic_opt.step()
                sums["train/policy_loss"] += float(policy.detach())
                sums["train/critic_loss"] += float(value.detach())
                sums["train/clip_fraction"] += float(((ratio - 1).abs() > ppo.clip).float().mean())
                n += 1
        logs = {k: v / max(1, n) for k, v in sums.items()}
        logs["train/reward"] = float(traj.rewards.mean())
        logs["train/entropy"] = float(-traj.log_probs.mean())
        logs["train/value"] = float(values.mean())
        return logs
