"""Why DMO exists: one policy update through the RSSM against one through the diffusion model.

Both unroll H = 32 imagined steps at B = 16, 64x64, 3 Euler denoising steps per frame, with
the world model and RSSM of the `cpu` presets (untrained weights: the cost does not depend
on them) and the same actor:

* dmo: the diffusion model makes the frames under no_grad, the RSSM filters them and the
  coupling gives the prior's gradient (rl/imagination.py); backward through the RSSM only;
* bptt: the same unroll with the sampler inside autograd: each generated frame goes through
  the encoder into the RSSM posterior with its gradient, so backward runs through every
  denoising step of every frame (what DMO avoids).

Each mode runs in a fresh process (its own peak RSS): time of forward + backward per update
(median of `--repeats`), the peak RSS above the process's RSS before the first update (and
the whole process's), parameter counts. One thread each.

    python bench/dmo_backward.py [--repeats 3] [--set world_model.unet.stem_stride=2 ...]

Writes bench/results/dmo_backward.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
H, B = 32, 16


def build(sets: list[str]):
    import torch

    from dmo_ros.rl.policy import Actor, ActorConfig
    from dmo_ros.worldmodels.diamond import DiamondWorldModel
    from dmo_ros.worldmodels.rssm import RSSM
    from dmo_ros.worldmodels.rssm_train import resolve_config as rssm_config
    from dmo_ros.worldmodels.train import resolve_config as wm_config

    torch.manual_seed(0)
    resolved = wm_config("pusht.yaml", "cpu", sets)
    wm = DiamondWorldModel(resolved.section.model_config(resolved.task)).eval()
    rssm = RSSM(rssm_config("pusht.yaml", "cpu", []).model)
    actor = Actor(rssm.feature_dim, rssm.cfg.action_dim, ActorConfig())
    for p in [*wm.parameters(), *rssm.parameters()]:
        p.requires_grad_(False)  # only the actor learns here; graphs still run through them
    L = wm.cfg.context
    frames = torch.rand(B, L, 3, 64, 64) * 2 - 1
    actions = torch.rand(B, L, rssm.cfg.action_dim) * 2 - 1
    return wm, rssm, actor, frames, actions


def dmo_update(wm, rssm, actor, frames, actions) -> None:
    from dmo_ros.rl.imagination import unroll

    traj = unroll(rssm, actor, wm, lambda f, s: f.mean((1, 2, 3)), frames, actions, H)
    (-traj.local_rewards.sum()).backward()


def bptt_update(wm, rssm, actor, frames, actions) -> None:
    """The same unroll with every frame inside autograd: frames -> encoder -> posterior."""
    import torch

    from dmo_ros.worldmodels.sampler import sample_next_frame

    sample = sample_next_frame.__wrapped__  # the sampler without its no_grad
    with torch.no_grad():
        posts, _ = rssm.observe_sequence(frames, actions)
    state = {k: v[:, -1] for k, v in posts.items()}
    past, acts, total = frames, actions, 0.0
    for _ in range(H):
        action, _ = actor(rssm.features(state))
        acts = torch.cat([acts[:, :-1], action[:, None]], 1)
        frame = sample(wm.denoiser, past, acts, wm.cfg.sampler)
        state = rssm.posterior(rssm.imagine(state, action), rssm.encode(frame))
        total = total + rssm.reward(rssm.features(state)).sum()
        past = torch.cat([past[:, 1:], frame[:, None]], 1)
        acts = torch.cat([acts[:, 1:], action[:, None]], 1)
    (-total).backward()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(mode: str, repeats: int, sets: list[str]) -> dict:
    import torch

    torch.set_num_threads(1)
    wm, rssm, actor, frames, actions = build(sets)
    update = {"dmo": dmo_update, "bptt": bptt_update}[mode]
    before = rss_mb()  # interpreter, torch, models and inputs: not the update's
    times = []
    for _ in range(repeats):
        actor.zero_grad(set_to_none=True)
        t = time.perf_counter()
        update(wm, rssm, actor, frames, actions)
        times.append(time.perf_counter() - t)
        assert all(p.grad is not None for p in actor.parameters())
    return {
        "mode": mode,
        "update_s": statistics.median(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": before,
        "update_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before,
        "world_model_params_M": sum(p.numel() for p in wm.parameters()) / 1e6,
        "rssm_params_M": sum(p.numel() for p in rssm.parameters()) / 1e6,
    }


def main() -> int:
    if sys.argv[1:2] == ["--one"]:
        mode, repeats, sets = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
        print(json.dumps(measure(mode, repeats, sets)), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", action="append", default=[], help="world-model overrides")
    args = p.parse_args()
    rows = {}
    for mode in ("dmo", "bptt"):
        cmd = [sys.executable, __file__, "--one", mode, str(args.repeats), *args.set]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(rows[mode]), flush=True)
    d, b = rows["dmo"], rows["bptt"]
    result = {
        "setting": {"horizon": H, "batch": B, "image": 64, "threads": 1, "sets": args.set},
        "rows": rows,
        "time_ratio_bptt_over_dmo": b["update_s"] / d["update_s"],
        "peak_rss_ratio_bptt_over_dmo": b["peak_rss_mb"] / d["peak_rss_mb"],
        "update_memory_ratio_bptt_over_dmo": b["update_peak_mb"] / max(d["update_peak_mb"], 1.0),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dmo_backward.json").write_text(json.dumps(result, indent=1))
    print(
        f"one policy update, H={H} B={B}: dmo {d['update_s']:.2f} s, +{d['update_peak_mb']:.0f} MB "
        f"over {d['rss_before_mb']:.0f}; bptt through the diffusion model {b['update_s']:.2f} s, "
        f"+{b['update_peak_mb']:.0f} MB -> time x{result['time_ratio_bptt_over_dmo']:.1f}, "
        f"update memory x{result['update_memory_ratio_bptt_over_dmo']:.1f} "
        f"(whole process x{result['peak_rss_ratio_bptt_over_dmo']:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
