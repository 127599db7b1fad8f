"""Dataset read speed: frames/s of a training epoch from the memory-mapped play-data cache.

Writes a synthetic Push-T play bag through BagWriter (2,000 control steps = 400 s:
camera 10 Hz 128x96 rgb8, commands 5 Hz, intent, milestones), builds the cache
(timed), then reads WindowDataset epochs through a DataLoader (batch 32,
num_workers 0, shuffled, 64x64 frames; median of 3 epochs) for several window lengths.
Target (issue 4): >= 5,000 frames/s. Saves bench/results/dataset_speed.{json,png}.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import DataLoader

from dmo_ros.data.bag_writer import BagWriter, typestore
from dmo_ros.data.images import fill_image
from dmo_ros.data.play_data import load_play_data
from dmo_ros.data.windows import WindowDataset
from dmo_ros.task import task_for_robot

STEPS = 2000
TARGET = 5000.0
LENGTHS = (1, 8, 16, 32)
RESULTS = Path(__file__).resolve().parent / "results"


def write_bag(path: Path) -> float:
    """A play bag with moving content; returns the seconds the writer took."""
    ts = typestore()
    types = ts.types
    stamp = types["builtin_interfaces/msg/Time"](0, 0)
    head = types["std_msgs/msg/Header"](stamp, "camera")
    img = types["sensor_msgs/msg/Image"](head, 0, 0, "", 0, 0, np.zeros(0, np.uint8))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    t0 = time.time_ns()
    start = time.perf_counter()
    with BagWriter(path, metadata={"dmo_ros.robot": "flexiv", "dmo_ros.task": "pusht"}) as w:
        w.add_topic("camera/image_raw", "sensor_msgs/msg/Image")
        w.add_topic("ee_delta", "geometry_msgs/msg/PoseStamped")
        w.add_topic("intent", "std_msgs/msg/Bool")
        w.add_topic("milestone", "std_msgs/msg/Empty")
        pt, q = types["geometry_msgs/msg/Point"], types["geometry_msgs/msg/Quaternion"]
        for i in range(2 * STEPS):
            t = t0 + i * 100_000_000
            fill_image(img, np.roll(base, i, axis=1))
            w.write("camera/image_raw", t, bytes(ts.serialize_cdr(img, "sensor_msgs/msg/Image")))
            if i % 2 == 0:
                a = rng.uniform(-0.04, 0.04, 2)
                pose = types["geometry_msgs/msg/Pose"](pt(a[0], a[1], 0.0), q(0.0, 0.0, 0.0, 1.0))
                msg = types["geometry_msgs/msg/PoseStamped"](head, pose)
                w.write(
                    "ee_delta", t, bytes(ts.serialize_cdr(msg, "geometry_msgs/msg/PoseStamped"))
                )
            if i % 100 == 0:
                on = types["std_msgs/msg/Bool"](bool((i // 100) % 3 == 0))
                w.write("intent", t, bytes(ts.serialize_cdr(on, "std_msgs/msg/Bool")))
    return time.perf_counter() - start


def epoch(ds: WindowDataset) -> tuple[float, int]:
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=0)
    frames = 0
    start = time.perf_counter()
    for batch in loader:
        frames += batch["frames"].shape[0] * batch["frames"].shape[1]
    return time.perf_counter() - start, frames


def main() -> int:
    torch.manual_seed(0)
    task = task_for_robot("pusht")
    with tempfile.TemporaryDirectory(prefix="dmo_dataset_speed_") as tmp:
        bag = Path(tmp) / "play"
        write_s = write_bag(bag)
        bag_mb = sum(f.stat().st_size for f in bag.glob("*.mcap")) / 1e6
        start = time.perf_counter()
        (seq,) = load_play_data(bag, task)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        seqs = load_play_data(bag, task)
        open_s = time.perf_counter() - start
        rows = []
        for length in LENGTHS:
            ds = WindowDataset(seqs, length=length)
            epoch(ds)  # warm the page cache, as any epoch after the first
            runs = [epoch(ds) for _ in range(3)]
            secs, frames = sorted(runs)[1]  # the median epoch
            rows.append(
                {
                    "length": length,
                    "windows": len(ds),
                    "frames": frames,
                    "seconds": secs,
                    "frames_per_s": frames / secs,
                }
            )
    result = {
        "bench": "dataset_speed",
        "machine": f"{platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, python {sys.version.split()[0]}",
        "steps": len(seq),
        "image_size": task.image_size,
        "bag_mb": bag_mb,
        "bag_write_s": write_s,
        "bag_write_mb_per_s": bag_mb / write_s,
        "cache_build_s": build_s,
        "cache_build_steps_per_s": len(seq) / build_s,
        "cache_open_s": open_s,
        "target_frames_per_s": TARGET,
        "epochs": rows,
    }
    print(f"bag: {bag_mb:.0f} MB written in {write_s:.2f} s ({bag_mb / write_s:.0f} MB/s)")
    print(
        f"cache: built in {build_s:.2f} s ({len(seq) / build_s:.0f} steps/s), "
        f"reopened in {1000 * open_s:.1f} ms"
    )
    for r in rows:
        ok = "ok" if r["frames_per_s"] >= TARGET else "BELOW TARGET"
        print(
            f"epoch L={r['length']:>2}: {r['frames_per_s']:>10,.0f} frames/s "
            f"({r['windows']} windows, {r['seconds']:.2f} s)  {ok}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dataset_speed.json").write_text(json.dumps(result, indent=2))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([str(r["length"]) for r in rows], [r["frames_per_s"] for r in rows], color="tab:blue")
    ax.axhline(TARGET, color="tab:red", ls="--", label=f"target {TARGET:,.0f} frames/s")
    ax.set_xlabel("window length L (batch 32, num_workers 0, 64x64)")
    ax.set_ylabel("frames / s")
    ax.set_title("WindowDataset epoch read speed (memory-mapped cache)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "dataset_speed.png", dpi=120)
    print(f"saved {RESULTS / 'dataset_speed.json'} and .png")
    return 0 if all(r["frames_per_s"] >= TARGET for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
