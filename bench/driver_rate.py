"""Published image rate of the driver nodes' simulated cameras, measured by a subscriber over DDS.

Each driver (`flexiv_driver`, `go2_driver`, backend sim) runs in a process of its own, as under
`ros2 run`; this process subscribes to camera/image_raw with the sensor-data QoS and, like a
policy, answers each frame with a command, so the simulator really moves. Reported per sim:
image rate against the 5 Hz control rate, inter-arrival jitter, and the latency from the
step's stamp to arrival. Saves bench/results/driver_rate.{json,png}.

    .venv/bin/python bench/driver_rate.py [--seconds 10] [--sizes 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dmo_ros.nodes.dds_env import use_local_dds

RESULTS = Path(__file__).resolve().parent / "results"
DRIVERS = {"pusht": "flexiv_driver", "push_cube": "go2_driver"}


def measure(robot: str, size: int, seconds: float) -> dict:
    import rclpy
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from dmo_ros.task import load_task

    task = load_task(f"{robot}.yaml")
    node_name = DRIVERS[robot]
    params = ["-p", "backend:=sim", "-p", f"image_size:={size}", "--log-level", "warn"]
    driver = subprocess.Popen(
        [sys.executable, "-m", f"dmo_ros.nodes.{node_name}", "--ros-args", *params]
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("driver_rate_bench", context=context)
    arrivals: list[tuple[float, float]] = []  # (arrival, stamp) in s, both on the system clock
    rng = np.random.default_rng(0)
    if task.robot == "flexiv":
        pub = node.create_publisher(PoseStamped, task.action_topic, 10)
    else:
        pub = node.create_publisher(TwistStamped, task.action_topic, 10)
    low, high = np.asarray(task.action_low), np.asarray(task.action_high)

    def on_image(msg: Image) -> None:
        assert (msg.height, msg.width, msg.encoding) == (size, size, "rgb8")
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        arrivals.append((time.time(), stamp))
        a = rng.uniform(low, high) * 0.5  # a wandering command, answered to each frame
        if task.robot == "flexiv":
            cmd = PoseStamped()
            cmd.pose.position.x, cmd.pose.position.y = float(a[0]), float(a[1])
        else:
            cmd = TwistStamped()
            cmd.twist.linear.x, cmd.twist.linear.y = float(a[0]), float(a[1])
            cmd.twist.angular.z = float(a[2])
        pub.publish(cmd)

    node.create_subscription(Image, task.image_topic, on_image, qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        start = time.monotonic()
        while not arrivals and time.monotonic() - start < 60:  # driver start-up
            executor.spin_once(timeout_sec=0.05)
        if not arrivals:
            raise SystemExit(f"{node_name}: no image within 60 s")
        arrivals.clear()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        driver.terminate()
        driver.wait(timeout=30)
    t = np.array([a for a, _ in arrivals])
    stamps = np.array([s for _, s in arrivals])
    intervals = np.diff(t) * 1e3
    latency = (t - stamps) * 1e3
    return {
        "robot": task.robot,
        "task": robot,
        "image_size": size,
        "images": len(t),
        "seconds": float(t[-1] - t[0]),
        "rate_hz": float((len(t) - 1) / (t[-1] - t[0])),
        "control_rate_hz": 1.0 / task.control_period,
        "interval_ms": {
            "mean": float(intervals.mean()),
            "std": float(intervals.std()),
            "p5": float(np.percentile(intervals, 5)),
            "p95": float(np.percentile(intervals, 95)),
            "max": float(intervals.max()),
        },
        "latency_ms": {
            "median": float(np.median(latency)),
            "p95": float(np.percentile(latency, 95)),
        },
        "_intervals": intervals.tolist(),
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        label = f"{r['task']} {r['image_size']}px: {r['rate_hz']:.2f} Hz"
        ax.hist(r["_intervals"], bins=40, alpha=0.6, label=label)
    ax.axvline(200.0, color="k", linestyle="--", label="control period (200 ms)")
    ax.set_xlabel("inter-arrival time of camera/image_raw at a DDS subscriber (ms)")
    ax.set_ylabel("images")
    ax.set_title("driver nodes, sim backend: published image rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per sim")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64], help="image sizes (px)")
    args = parser.parse_args()
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("MUJOCO_GL", "egl")
    domain = use_local_dds()
    results = [measure(robot, size, args.seconds) for size in args.sizes for robot in DRIVERS]
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / "driver_rate.png")
    summary = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    (RESULTS / "driver_rate.json").write_text(
        json.dumps({"ros_domain_id": domain, "results": summary}, indent=2)
    )
    for r in summary:
        iv, lat = r["interval_ms"], r["latency_ms"]
        print(
            f"{r['task']:>9} {r['image_size']:>4}px: {r['rate_hz']:.3f} Hz published "
            f"({r['rate_hz'] / r['control_rate_hz']:.3f} x the {r['control_rate_hz']:g} Hz control "
            f"rate), interval {iv['mean']:.1f} +- {iv['std']:.1f} ms (p95 {iv['p95']:.1f}), "
            f"stamp->arrival median {lat['median']:.1f} ms (p95 {lat['p95']:.1f})"
        )
    print(f"saved {RESULTS / 'driver_rate.json'} and driver_rate.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
