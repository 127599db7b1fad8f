"""Recorder under load: 640x480 rgb8 images at 30 Hz plus 100 Hz commands, from another process.

Runs the recorder node as its own process (`python -m dmo_ros.nodes.recorder`, as `ros2 run`
does) and a publisher process; counts what was published against what is in the bag.
Reports messages dropped per topic (target 0), throughput (MB/s into the bag) and the
recorder process's CPU use over the publishing window. Saves bench/results/recorder_load.json
and .png.

    .venv/bin/python bench/recorder_load.py [--duration 60]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE_HZ, COMMAND_HZ, WIDTH, HEIGHT = 30.0, 100.0, 640, 480

PUBLISHER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import rclpy
    from geometry_msgs.msg import TwistStamped
    from sensor_msgs.msg import Image

    duration, image_hz, command_hz, w, h = (float(a) for a in sys.argv[1:6])
    rclpy.init()
    node = rclpy.create_node("load_publisher")
    images = node.create_publisher(Image, "camera/image_raw", 10)
    commands = node.create_publisher(TwistStamped, "cmd_vel", 10)
    while images.get_subscription_count() == 0 or commands.get_subscription_count() == 0:
        time.sleep(0.05)  # wait for the recorder
    time.sleep(0.5)
    frames = [np.full((int(h), int(w), 3), k * 40, np.uint8).tobytes() for k in range(6)]
    sent = {"/camera/image_raw": 0, "/cmd_vel": 0}
    late = 0.0  # the publisher's own worst lateness: a descheduled publisher, not the recorder
    print("start", flush=True)
    t0 = time.monotonic()
    next_image = next_command = t0
    while time.monotonic() - t0 < duration:
        now = time.monotonic()
        if now >= next_image:
            msg = Image(height=int(h), width=int(w), encoding="rgb8", step=int(w) * 3)
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.data = frames[sent["/camera/image_raw"] % len(frames)]
            images.publish(msg)
            sent["/camera/image_raw"] += 1
            late = max(late, now - next_image)
            # A late publisher skips the missed slots rather than bursting to catch up.
            next_image = max(next_image + 1.0 / image_hz, now)
        if now >= next_command:
            msg = TwistStamped()
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = str(sent["/cmd_vel"])  # sequence number: which ones got lost
            msg.twist.linear.x = 0.1
            commands.publish(msg)
            sent["/cmd_vel"] += 1
            late = max(late, now - next_command)
            next_command = max(next_command + 1.0 / command_hz, now)
        time.sleep(max(0.0, min(next_image, next_command) - time.monotonic()))
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - t0, "late": late}), flush=True)
    time.sleep(1.0)  # let the last messages arrive before the publisher goes away
    node.destroy_node()
    rclpy.shutdown()
    """
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (no psutil needed)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of publishing")
    args = parser.parse_args()

    from dmo_ros.nodes.dds_env import use_local_dds

    domain = use_local_dds()  # inherited by both child processes
    workdir = Path(tempfile.mkdtemp(prefix="recorder_load_"))
    bag_path = workdir / "bag"
    params = {
        "task_config": "push_cube.yaml",
        "out": str(bag_path),
        "sim": "false",
        "camera_real": f"[{WIDTH}.0, {HEIGHT}.0, {IMAGE_HZ}]",
        "duration_s": str(args.duration + 120),  # a limit only; SIGINT ends it
    }
    ros_args = [x for k, v in params.items() for x in ("-p", f"{k}:={v}")]
    recorder = subprocess.Popen(
        [sys.executable, "-m", "dmo_ros.nodes.recorder", "--ros-args", *ros_args],
        stderr=subprocess.PIPE,
        text=True,
    )
    rates = (args.duration, IMAGE_HZ, COMMAND_HZ, WIDTH, HEIGHT)
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, *(str(v) for v in rates)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert publisher.stdout.readline().strip() == "start", "publisher did not start"
        cpu0, t0 = cpu_seconds(recorder.pid), time.monotonic()
        report = json.loads(publisher.stdout.readline())
        time.sleep(0.5)  # the last messages in flight
        cpu1, t1 = cpu_seconds(recorder.pid), time.monotonic()
        publisher.wait(timeout=30)
        recorder.send_signal(signal.SIGINT)
        _, recorder_log = recorder.communicate(timeout=60)
    finally:
        for proc in (publisher, recorder):
            if proc.poll() is None:
                proc.kill()
    if recorder.returncode != 0:
        print(recorder_log, file=sys.stderr)
        return 1

    from dmo_ros.data.bag_reader import open_bag

    bag = open_bag(bag_path)
    recorded = {topic: count for topic, (_, count) in bag.topics.items()}
    bag_bytes = sum(f.stat().st_size for f in bag.files)
    seconds = report["seconds"]
    image_times = bag.timestamps("camera/image_raw")
    per_second = (image_times - image_times[0]) // 1_000_000_000
    commands = bag.timestamps("cmd_vel")
    seqs, latency = set(), []
    for _, t_ns, data in bag.messages(["cmd_vel"]):
        msg = bag.decode("cmd_vel", data)
        seqs.add(int(msg.header.frame_id))
        latency.append(t_ns - (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec))
    latency_ms = np.array(latency) / 1e6
    lost = sorted(set(range(report["sent"]["/cmd_vel"])) - seqs)
    result = {
        "duration_s": seconds,
        "image": f"{WIDTH}x{HEIGHT} rgb8 at {IMAGE_HZ:g} Hz",
        "commands_hz": COMMAND_HZ,
        "published": report["sent"],
        "recorded": recorded,
        "dropped": {t: report["sent"][t] - recorded.get(t, 0) for t in report["sent"]},
        "bag_mb": bag_bytes / 1e6,
        "throughput_mb_s": bag_bytes / 1e6 / seconds,
        "recorder_cpu_percent": 100.0 * (cpu1 - cpu0) / (t1 - t0),
        # A stall of the recorder longer than the publisher's queue (10 commands = 0.1 s)
        # loses commands; these say when and how long.
        "lost_commands": len(lost),
        "lost_command_seqs": lost,
        "longest_command_gap_ms": float(np.diff(commands).max() / 1e6) if len(commands) > 1 else 0,
        "command_latency_ms": {
            "p50": float(np.percentile(latency_ms, 50)),
            "p99": float(np.percentile(latency_ms, 99)),
            "max": float(latency_ms.max()),
        },
        "publisher_worst_lateness_ms": 1e3 * report["late"],
        "load_average_1min": os.getloadavg()[0],
        "clean_close": bag.recovered == [],
        "ros_domain_id": domain,
        "cpu_cores": os.cpu_count(),
        "note": "recorder and publisher share this machine's cores with everything else running",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "recorder_load.json").write_text(json.dumps(result, indent=2))
    plot(result, per_second)
    print(json.dumps(result, indent=2))
    for p in bag.files:
        p.unlink()
    return 0


def plot(result: dict, per_second) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    seconds, counts = np.unique(per_second, return_counts=True)
    left.plot(seconds, counts, drawstyle="steps-mid", label="images recorded per second")
    left.axhline(IMAGE_HZ, color="grey", ls="--", label=f"published ({IMAGE_HZ:g} Hz)")
    left.set_xlabel("time (s)")
    left.set_ylabel("images / s")
    left.set_ylim(0, IMAGE_HZ * 1.3)
    left.legend(loc="lower right")
    topics = list(result["published"])
    x = np.arange(len(topics))
    right.bar(x - 0.2, [result["published"][t] for t in topics], 0.4, label="published")
    right.bar(x + 0.2, [result["recorded"].get(t, 0) for t in topics], 0.4, label="recorded")
    right.set_xticks(x, topics)
    right.set_ylabel("messages")
    right.legend()
    fig.suptitle(
        f"recorder: {result['image']} + {result['commands_hz']:g} Hz commands, "
        f"{result['duration_s']:.0f} s: dropped {sum(result['dropped'].values())}, "
        f"{result['throughput_mb_s']:.1f} MB/s, CPU {result['recorder_cpu_percent']:.0f} %"
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "recorder_load.png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
