"""Deployed policy latency (issue 11): inference alone, and image-to-command through DDS.

1. Inference: the Agent's `act` on one 64x64 frame (RSSM posterior + actor, no_grad, as the
   policy node runs it), on one thread, for untrained policies at the RSSM sizes of the `cpu`
   preset (deter 256) and of the paper (deter 512), or a trained run (--checkpoint).
   Aim: p99 <= 5 ms.
2. Image to command: flexiv_driver (sim) and the policy node composed in one process on one
   executor, as `dmo-ros deploy` runs them (real DDS topics, sim time at --time-scale): wall
   time from the driver publishing a step's camera frame to the driver receiving the policy's
   command for that frame (both instrumented inside the driver).

Prints and saves bench/results/policy_latency.json.

    .venv/bin/python bench/policy_latency.py [--iterations 500] [--steps 300] [--checkpoint RUN]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dmo_ros.nodes.dds_env import use_local_dds

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {"cpu": {"deter": 256, "hidden": 256, "cnn_depth": 16}, "paper": {}}  # RSSMConfig


def hand_policy(path: Path, rssm_sizes: dict) -> Path:
    """An untrained Push-T policy checkpoint of the given RSSM size."""
    from dmo_ros.rl.agent import save_untrained_policy
    from dmo_ros.task import task_for_robot

    return save_untrained_policy(path, task_for_robot("pusht"), **rssm_sizes)


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {
        "n": len(a),
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def inference(checkpoint: Path, iterations: int) -> dict:
    from dmo_ros.rl.agent import load_agent
    from dmo_ros.task import task_for_robot

    task = task_for_robot("pusht")
    agent, _ = load_agent(checkpoint, task, torch.device("cpu"))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (iterations + 20, 1, 64, 64, 3), dtype=np.uint8)
    agent.reset(1)
    times = []
    for i, frame in enumerate(frames):
        start = time.perf_counter()
        agent.act(torch.from_numpy(frame))
        if i >= 20:  # warm-up: allocator and first-call costs
            times.append(1e3 * (time.perf_counter() - start))
    return percentiles(times)


def image_to_command(checkpoint: Path, steps: int, time_scale: float) -> dict:
    import rclpy

    from dmo_ros.config import config_path
    from dmo_ros.nodes.flexiv_driver import FlexivDriver
    from dmo_ros.nodes.policy import PolicyNode
    from dmo_ros.nodes.runtime import destroy, parameter_overrides, spin

    params = config_path("flexiv_nodes.yaml")
    rclpy.init()
    published: dict[int, float] = {}  # frame stamp (sim ns) -> wall time of its publish
    latencies: list[float] = []
    driver = FlexivDriver(
        parameter_overrides=parameter_overrides(
            params, "flexiv_driver", backend="sim", time_scale=time_scale, use_sim_time=True
        )
    )
    sim = driver._sim  # instrumented from inside: what the driver itself sees
    image_pub, command = sim._image.publish, sim.command

    def publish_image(msg) -> None:
        published[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = (
            time.perf_counter()
        )
        image_pub(msg)

    def receive_command(action) -> None:
        sent = published.get(sim.now_ns)  # the command answers the frame of the current step
        if sent is not None and sim.steps > 5:
            latencies.append(1e3 * (time.perf_counter() - sent))
        command(action)

    sim._image.publish, sim.command = publish_image, receive_command
    policy = PolicyNode(
        parameter_overrides=parameter_overrides(
            params, "policy", checkpoint=str(checkpoint), enable=True, use_sim_time=True
        )
    )
    nodes = [policy, driver]
    try:
        spin(nodes, duration=steps / time_scale * 0.2 + 60.0, until=lambda: sim.steps >= steps)
    finally:
        destroy(nodes)
        rclpy.try_shutdown()
    return {"time_scale": time_scale, "steps": sim.steps, **percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500, help="act calls per policy size")
    parser.add_argument("--steps", type=int, default=300, help="sim steps through DDS")
    parser.add_argument("--time-scale", type=float, default=10.0, help="sim speed (x real time)")
    parser.add_argument("--checkpoint", help="a trained policy run (default: untrained, 2 sizes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("MUJOCO_GL", "egl")
    domain = use_local_dds()
    result: dict = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "ros_domain_id": domain,
        "inference": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            checkpoints = {"checkpoint": Path(args.checkpoint)}
        else:
            checkpoints = {k: hand_policy(Path(tmp) / f"{k}.pt", v) for k, v in SIZES.items()}
        for name, path in checkpoints.items():
            result["inference"][name] = r = inference(path, args.iterations)
            print(
                f"inference ({name}, 64x64, 1 thread): p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms over {r['n']}",
                flush=True,
            )
        dds_policy = "checkpoint" if args.checkpoint else "cpu"
        r = image_to_command(checkpoints[dds_policy], args.steps, args.time_scale)
        result["image_to_command"] = {"policy": dds_policy, **r}
    print(
        f"image -> command through DDS ({dds_policy} policy, {args.time_scale:g}x): "
        f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms "
        f"over {r['n']} steps",
        flush=True,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "policy_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {RESULTS / 'policy_latency.json'}")


if __name__ == "__main__":
    main()
