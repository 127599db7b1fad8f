"""Does the local model's gradient point uphill in the real world? DMO's premise, measured.

With the simulated Push-T table as the forward model (deterministic, replayable from its
reset seeds) and a trained RSSM as the local model: unroll B episodes of H steps with a
policy (the DMO coupling of rl/imagination.py), take the gradient g of the local return
J = sum_t R_hat(s_t) with respect to the whole action sequence of each episode, then replay
every episode open loop in the simulator from the same start with the actions moved by
+eps and -eps along g (and, as a control, along a random direction), and compare the true
returns (sum of goal coverage). If the gradient is informative, +g beats -g in more than
half the episodes and the random direction in about half.

    python bench/dmo_gradient_alignment.py --rssm models/rssm-sim [--policy models/RUN]

Writes bench/results/dmo_gradient_alignment.json, one entry per --label (default: the policy
run, or "untrained"). "moved_coverage" counts the episodes whose coverage changed at all:
the others never touched the T, and no gradient can be right or wrong there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dmo_ros.config import load_yaml
from dmo_ros.rl.imagination import unroll
from dmo_ros.rl.policy import Actor, ActorConfig
from dmo_ros.rl.sim_forward import SimForward
from dmo_ros.task import load_task
from dmo_ros.worldmodels.rssm_train import load_rssm

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parent.parent / "config" / "pusht.yaml"


class Leaves(torch.nn.Module):
    """The actor's samples as leaf tensors, kept, so the return's gradient reaches them."""

    def __init__(self, actor: Actor) -> None:
        super().__init__()
        self.actor, self.hold = actor, []

    def forward(self, feats: torch.Tensor):
        a, log_prob = self.actor(feats)
        a = a.detach().requires_grad_(True)
        self.hold.append(a)
        return a, log_prob


def replay(sim: SimForward, rng_state: dict, actions: torch.Tensor) -> np.ndarray:
    """True return [B] of open-loop actions [H,B,A] from the starts of `rng_state`."""
    sim.rng_state = rng_state
    sim.starts()
    total = np.zeros(sim.batch)
    for a in actions.clamp(-1.0, 1.0):
        sim.step(0, a)
        total += sim.reward(None).numpy()
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rssm", required=True)
    p.add_argument("--policy", help="a policy run (its actor); default: an untrained actor")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--horizon", type=int, default=32)
    p.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.2])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--variant", default="near", choices=("near", "full"))
    p.add_argument("--label", help="the entry's name in the JSON")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = load_task(CONFIG)
    rssm, _ = load_rssm(args.rssm, task, torch.device("cpu"))
    actor = Actor(rssm.feature_dim, task.action_dim, ActorConfig())
    if args.policy:
        from dmo_ros.rl.agent import load_agent

        agent, _ = load_agent(args.policy, task, torch.device("cpu"))
        rssm, actor = agent.rssm, agent.actor  # the policy with the RSSM it was trained with
    rssm.requires_grad_(False)
    actor.requires_grad_(False)
    near = load_yaml(CONFIG)["policy"]["variants"]["near"]  # the training's near starts
    sim = SimForward(task, args.batch, args.variant, near, seed=7, context=4)
    rows = {f"{e:g}": {"grad": [], "random": []} for e in args.eps}
    for _ in range(args.rounds):
        state = sim.rng_state
        frames, actions = sim.starts()
        leaves = Leaves(actor)
        traj = unroll(rssm, leaves, sim, sim.reward, frames, actions, args.horizon)
        hold = leaves.hold
        grads = torch.autograd.grad(traj.local_rewards.sum(), hold)
        acts, g = torch.stack(hold).detach(), torch.stack(grads)  # [H,B,A]
        base = replay(sim, state, acts)
        unit = g / g.square().sum((0, 2), keepdim=True).sqrt().clamp(min=1e-12)
        rand = torch.randn_like(g)
        rand = rand / rand.square().sum((0, 2), keepdim=True).sqrt()
        scale = (args.horizon * task.action_dim) ** 0.5  # eps = RMS change per component
        for e in args.eps:
            for name, d in (("grad", unit), ("random", rand)):
                up = replay(sim, state, acts + e * scale * d)
                down = replay(sim, state, acts - e * scale * d)
                rows[f"{e:g}"][name] += (up - down).tolist()
        print(f"round: true return of the sampled actions {base.mean():.3f}", flush=True)
    out = {"rssm": args.rssm, "policy": args.policy, "batch": args.batch,
           "horizon": args.horizon, "variant": args.variant, "eps": {}}  # fmt: skip
    for e, r in rows.items():
        res = {}
        for name, diffs in r.items():
            d = np.asarray(diffs)
            moved = d != 0
            res[name] = {
                "episodes": len(d),
                "moved_coverage": int(moved.sum()),  # the rest never touched the T either way
                "up_beats_down": float((d[moved] > 0).mean()) if moved.any() else None,
                "mean_up_minus_down": float(d.mean()),
            }
        out["eps"][e] = res
        print(f"eps {e}: {json.dumps(res)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "dmo_gradient_alignment.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved[args.label or args.policy or "untrained"] = out
    path.write_text(json.dumps(saved, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
