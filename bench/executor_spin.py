"""rclpy's executors side by side: why every node here spins on a single-threaded one.

A simulated Push-T driver (`use_sim_time`, time_scale 5: 25 steps a second wanted) and a probe
node listening to its /clock and camera run in one process, each on an executor of its own in
a thread of its own (as the tests and a composed launch do), first with rclpy's
SingleThreadedExecutor, then with its MultiThreadedExecutor. Reported per executor: callbacks
the executors dispatched per /clock message, steps achieved, the slowest simulator step in wall
time, and the process's CPU time per step. Saves bench/results/executor_spin.{json,png}.

    .venv/bin/python bench/executor_spin.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from dmo_ros.nodes.dds_env import use_local_dds

RESULTS = Path(__file__).resolve().parent / "results"


def measure(kind: str, seconds: float) -> dict:
    import rclpy
    import rclpy.executors as executors
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    import dmo_ros.nodes.sim_driver as sim_driver
    from dmo_ros.nodes.flexiv_driver import FlexivDriver
    from dmo_ros.nodes.runtime import parameter_overrides

    make = {"single": executors.SingleThreadedExecutor, "multi": executors.MultiThreadedExecutor}
    dispatched: Counter = Counter()
    wait = executors.Executor.wait_for_ready_callbacks

    def counted(self, *args, **kwargs):
        got = wait(self, *args, **kwargs)
        dispatched[kind] += 1
        return got

    steps: list[float] = []  # wall time of each simulator step
    step = sim_driver.SimDriver._step

    def timed(self):
        t = time.monotonic()
        step(self)
        steps.append(time.monotonic() - t)

    executors.Executor.wait_for_ready_callbacks = counted
    sim_driver.SimDriver._step = timed
    contexts, spinners, ticks = [], [], []
    try:
        for _ in range(2):
            context = rclpy.Context()
            rclpy.init(context=context)
            contexts.append(context)
        overrides = parameter_overrides(
            "flexiv_nodes.yaml", "flexiv_driver", backend="sim", time_scale=5.0, use_sim_time=True
        )
        driver = FlexivDriver(context=contexts[0], parameter_overrides=overrides)
        probe = rclpy.create_node("probe", context=contexts[1])
        probe.create_subscription(Clock, "/clock", lambda m: ticks.append(m), 10)
        probe.create_subscription(
            Image, "camera/image_raw", lambda m: None, qos_profile_sensor_data
        )
        for node, context in ((driver, contexts[0]), (probe, contexts[1])):
            executor = make[kind](context=context)
            executor.add_node(node)
            threading.Thread(target=executor.spin, daemon=True).start()
            spinners.append(executor)
        time.sleep(1.0)  # discovery
        n0, d0, s0, cpu0 = len(ticks), dispatched[kind], len(steps), os.times()
        time.sleep(seconds)
        n, d, s, cpu = len(ticks) - n0, dispatched[kind] - d0, len(steps) - s0, os.times()
        during = steps[s0 : s0 + s]
    finally:
        executors.Executor.wait_for_ready_callbacks = wait
        sim_driver.SimDriver._step = step
        for executor in spinners:
            executor.shutdown()
        driver.destroy_node()
        probe.destroy_node()
        for context in contexts:
            rclpy.try_shutdown(context=context)
    used = (cpu.user + cpu.system) - (cpu0.user + cpu0.system)
    return {
        "executor": kind,
        "clock_messages": n,
        "dispatches_per_clock_message": d / max(n, 1),
        "steps_per_s": s / seconds,
        "wanted_steps_per_s": 25.0,
        "slowest_step_s": max(during, default=float("nan")),
        "cpu_s_per_step": used / max(s, 1),
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["executor"] for r in rows]
    keys = [
        ("dispatches_per_clock_message", "dispatches per /clock message"),
        ("steps_per_s", "simulator steps/s (25 wanted)"),
        ("slowest_step_s", "slowest step (s of wall time)"),
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(11, 3.2))
    for ax, (key, label) in zip(axes, keys):
        ax.bar(names, [r[key] for r in rows], color=["tab:blue", "tab:orange"])
        ax.set_title(label, fontsize=10)
    fig.suptitle("rclpy executors: sim driver + probe in one process, time_scale 5")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    use_local_dds()
    rows = [measure(kind, args.seconds) for kind in ("single", "multi")]
    for r in rows:
        print(
            f"{r['executor']:>6}: {r['dispatches_per_clock_message']:7.1f} dispatches per /clock "
            f"message, {r['steps_per_s']:5.1f} steps/s (25 wanted), slowest step "
            f"{r['slowest_step_s'] * 1e3:6.1f} ms, {r['cpu_s_per_step'] * 1e3:5.1f} ms CPU per step"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"cores": os.cpu_count(), "loadavg": os.getloadavg()}, "rows": rows}
    (RESULTS / "executor_spin.json").write_text(json.dumps(result, indent=1))
    plot(rows, RESULTS / "executor_spin.png")
    print(f"saved {RESULTS / 'executor_spin.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
