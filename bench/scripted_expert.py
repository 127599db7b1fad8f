"""The scripted operator as a privileged expert on the policy's start variants: a ceiling
for Table I and a check that an episode length leaves room to succeed.

Pure Python, no ROS: the simulated Push-T table reset as `dmo-ros eval policy` resets it
(the same seeds from policy.eval.seed, the near or full start options), and the auto-play
operator (dmo_ros/sim/pusht_operator.py) held in its task mode, seeing the true poses the
policy never sees. Per variant: the success rate within the config's episode length and
within `--max-steps`, and the steps to success (percentiles). Results go to
bench/results/scripted_expert.json.

    python bench/scripted_expert.py --episodes 50
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dmo_ros.config import load_yaml
from dmo_ros.rl.sim_forward import make_table, reset_options
from dmo_ros.sim.pusht_operator import PushTOperator
from dmo_ros.sim.pusht_table import PushTTable
from dmo_ros.task import load_task

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parent.parent / "config" / "pusht.yaml"


def episode(table: PushTTable, seed: int, options: dict, max_steps: int) -> int | None:
    """Steps to success of the expert from this start (None: not within max_steps)."""
    _, gt = table.reset(seed=seed, options=options)
    expert = PushTOperator(seed, 1.0, 0.0, table.max_delta, table.workspace_low,
                           table.workspace_high)  # fmt: skip
    expert.mode, expert.steps_left = "task", 10**9  # an attempt that never gives up
    for k in range(max_steps):
        action = expert.act(gt)[0]
        *_, gt = table.step(action)
        if gt["success"]:
            return k + 1
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--variants", nargs="+", default=["near", "full"])
    args = p.parse_args()
    policy = load_yaml(CONFIG)["policy"]
    table = make_table(load_task(CONFIG))  # as `dmo-ros eval policy` makes its tables
    seed0 = int(policy["eval"]["seed"])
    out = {"episodes": args.episodes, "max_steps": args.max_steps, "variants": {}}
    for variant in args.variants:
        length = int(policy["variants"][variant]["steps"])
        options = reset_options(variant, policy["variants"].get("near"))
        steps = [episode(table, seed0 + i, options, args.max_steps) for i in range(args.episodes)]
        done = np.array([s for s in steps if s is not None], float)
        within = [s is not None and s <= length for s in steps]
        row = {
            "episode_steps": length,
            "success_within_episode": float(np.mean(within)),
            f"success_within_{args.max_steps}": len(done) / len(steps),
            "steps_to_success_p50_p80_p95_max": (
                np.percentile(done, [50, 80, 95, 100]).round(1).tolist() if len(done) else None
            ),
        }
        out["variants"][variant] = row
        print(f"{variant}: {json.dumps(row)}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scripted_expert.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
