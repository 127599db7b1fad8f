"""Learned rewards: frames/s of the `cpu` presets, inference and training, on one thread.

Inference: the reward RL calls (`load_reward(...)(frames, start)`) on a batch of 256 frames
under no_grad; the ranking reward encodes frames, starts and its 8 goal images and averages
its head over the goals. Training: one optimiser step of the preset's batch (ranking: 32
samples of start, goal and 8 frames = 320 frames; intent: 64 frames), fp32 and bf16 autocast
(where the CPU has native bf16, as `bf16: auto` trains). Median of repeated timings.

    python bench/reward_speed.py        # -> bench/results/reward_speed.json
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

from dmo_ros.rewards.train import resolve_config
from dmo_ros.training.device import autocast, cpu_has_bf16

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 256
CONFIGS = {"ranking": "pusht.yaml", "intent": "push_cube.yaml"}


def timed(once, repeats: int = 5, budget_s: float = 30.0) -> float:
    once()  # warm-up
    times, end = [], time.perf_counter() + budget_s
    while len(times) < 3 or (len(times) < repeats and time.perf_counter() < end):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def batch_for(kind: str, resolved) -> tuple[dict, int]:
    """A training batch of random frames and the number of frames it encodes."""
    n, size = resolved.section.train.batch_size, resolved.task.image_size
    frames = lambda *shape: torch.randint(0, 256, (*shape, size, size, 3), dtype=torch.uint8)  # noqa: E731
    if kind == "intent":
        labels = torch.rand(n) < 0.5
        return {
            "frame": frames(n),
            "intent": labels,
            "milestone": torch.zeros(n, dtype=torch.bool),
        }, n
    m = resolved.section.ranking.pairs.frames
    t = torch.stack([torch.randperm(4 * m)[:m] for _ in range(n)])
    return {"start": frames(n), "goal": frames(n), "frames": frames(n, m), "t": t}, n * (m + 2)


def measure(kind: str) -> dict:
    resolved = resolve_config(CONFIGS[kind], "cpu")
    torch.manual_seed(0)
    model = resolved.make_model()
    if kind == "ranking":
        model.norm_frames.fill_(1)  # a trained run's normalisation is set; its values do not matter
    size = resolved.task.image_size
    x = torch.rand(BATCH, 3, size, size) * 2 - 1
    model.eval()
    infer_s = timed(lambda: model.reward(x, x))
    out = {
        "kind": kind,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "inference_batch": BATCH,
        "inference_frames_per_s": BATCH / infer_s,
    }
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch, frames = batch_for(kind, resolved)
    for bf16 in (False, True) if cpu_has_bf16() else (False,):

        def step(bf16=bf16):
            with autocast(torch.device("cpu"), bf16):
                loss, _ = model(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()

        s = timed(step)
        name = "bf16" if bf16 else "fp32"
        out[f"train_step_s_{name}"] = s
        out[f"train_frames_per_s_{name}"] = frames / s
    out["train_frames_per_step"] = frames
    return out


def main() -> None:
    torch.set_num_threads(1)  # as the presets train (reward.train.threads: 1)
    results = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": 1},
        "native_bf16": cpu_has_bf16(),
        "rewards": [measure(kind) for kind in CONFIGS],
    }
    for r in results["rewards"]:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in r.items() if isinstance(v, float))
        print(f"{r['kind']} reward (cpu preset): {shown}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reward_speed.json").write_text(json.dumps(results, indent=1))
    print(f"-> {RESULTS / 'reward_speed.json'}")


if __name__ == "__main__":
    main()
