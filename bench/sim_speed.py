"""Simulator speed: control steps per second with rendering at 64x64 on one CPU core.

Each simulated robot is stepped with seeded random actions inside its action bounds for a
fixed number of 0.2 s control steps (every step renders the 64x64 camera image, as the
driver does); best of 3 repeats. The process is pinned to one core and MuJoCo's software
renderer (Mesa llvmpipe) is kept to the calling thread, so the figure is single-core.
Also reported: the render alone (64x64 and a 256x256 recording frame) and the physics
alone. Targets (issue 3): Push-T >= 300 steps/s, push-cube >= 500 steps/s.
Saves bench/results/sim_speed.{json,png}.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dmo_ros.sim import make_sim

STEPS = 600
REPEATS = 3
TARGETS = {"pusht": 300.0, "go2": 500.0}
RESULTS = Path(__file__).resolve().parent / "results"


def rate(fn, n: int) -> float:
    """Best calls/s of `fn` over REPEATS runs of n calls."""
    best = 0.0
    for _ in range(REPEATS):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = max(best, n / (time.perf_counter() - start))
    return best


def measure(robot: str) -> dict:
    sim = make_sim(robot, seed=0)
    sim.reset()
    low, high = sim.action_space.low, sim.action_space.high
    actions = np.random.default_rng(0).uniform(low, high, size=(STEPS, len(low)))

    def step(i: int) -> None:
        _, _, terminated, _, _ = sim.step(actions[i])
        if terminated:
            sim.reset()

    for i in range(20):  # warm up: renderers, caches
        step(i)
    steps = rate(step, STEPS)
    render_64 = rate(lambda i: sim.render_image(64), STEPS)
    render_256 = rate(lambda i: sim.render_image(256), STEPS // 4)
    sim.close()
    return {
        "steps_per_s": steps,
        "ms_per_step": 1e3 / steps,
        "render_64_per_s": render_64,
        "render_256_per_s": render_256,
        # what is left of a step without its 64x64 render
        "physics_ms_per_step": max(0.0, 1e3 / steps - 1e3 / render_64),
        "target_steps_per_s": TARGETS[robot],
        "meets_target": steps >= TARGETS[robot],
    }


def one_core() -> None:
    """Pin this process to one core; keep Mesa llvmpipe's rasteriser threads out. Before the
    simulators load (make_sim imports them, and MuJoCo's GL, on first use)."""
    os.environ["LP_NUM_THREADS"] = "0"
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def main() -> int:
    one_core()
    results = {robot: measure(robot) for robot in ("pusht", "go2")}
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "cores_used": 1,
        "cores_visible": os.cpu_count(),
        "load_average": os.getloadavg(),
        "steps": STEPS,
        "repeats": REPEATS,
        "image_size": 64,
    }
    for robot, r in results.items():
        verdict = "meets" if r["meets_target"] else "MISSES"
        print(
            f"{robot:6s} {r['steps_per_s']:7.0f} steps/s ({r['ms_per_step']:.2f} ms: "
            f"render {1e3 / r['render_64_per_s']:.2f} ms + physics {r['physics_ms_per_step']:.2f} "
            f"ms) {verdict} the target {r['target_steps_per_s']:.0f}/s; "
            f"256x256 render {r['render_256_per_s']:.0f}/s"
        )
    print(f"load average during the run: {meta['load_average']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim_speed.json").write_text(json.dumps({"meta": meta, **results}, indent=2))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = list(results)
    measured = [results[n]["steps_per_s"] for n in names]
    bars = ax.bar(names, measured, color=["tab:blue", "tab:orange"])
    for bar, name in zip(bars, names):
        target = results[name]["target_steps_per_s"]
        x0, w = bar.get_x(), bar.get_width()
        ax.hlines(target, x0, x0 + w, colors="k", linestyles="--")
        ax.text(x0 + w / 2, target, f"target {target:.0f}", ha="center", va="bottom", fontsize=8)
        ax.text(x0 + w / 2, bar.get_height(), f"{bar.get_height():.0f}/s", ha="center", va="bottom")
    ax.set_ylabel("control steps / s (64x64 render, 1 core)")
    ax.set_title("Simulated robots: step rate")
    ax.set_ylim(0, 1.15 * max(measured))
    fig.tight_layout()
    fig.savefig(RESULTS / "sim_speed.png", dpi=120)
    print(f"saved {RESULTS / 'sim_speed.json'} and sim_speed.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
