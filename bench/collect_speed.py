"""Faster-than-real-time collection: achieved time scale and whether every step survived.

Runs `dmo-ros collect --teleop auto` on each simulated robot at several `--time-scale`
values (the real pipeline: driver, auto-play, intent button and recorder on DDS) and checks
each bag: one image and one action per 0.2 s sim step, every gap exactly one control
period, and one play-data segment. Usage: collect_speed.py [SIM_SECONDS] [SCALES...]
(default 30 s at 1, 4, 8, 12, 16). Saves bench/results/collect_speed.{json,png}.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dmo_ros.data.bag_reader import open_bag
from dmo_ros.data.play_data import load_play_data
from dmo_ros.task import task_for_robot

RESULTS = Path(__file__).resolve().parent / "results"


def check(bag: Path, robot: str) -> dict:
    task = task_for_robot(robot)
    opened = open_bag(bag)
    steps = task.control_period * 1e9
    out = {}
    for name, topic in (("images", task.image_topic), ("actions", task.action_topic)):
        t = opened.timestamps(opened.find_topic(topic))
        gaps = np.diff(t)
        out[name] = len(t)
        out[f"{name}_off_period"] = int(np.sum(np.abs(gaps - steps) > 1e6))
    sequences = load_play_data([bag], task, cache_dir=bag.parent / "cache")
    out["segments"] = int(sum(len(np.unique(s.segment)) for s in sequences))
    out["ok"] = out["images_off_period"] == 0 and out["segments"] == 1
    return out


def main() -> None:
    sim_seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    scales = [float(x) for x in sys.argv[2:]] or [1.0, 4.0, 8.0, 12.0, 16.0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for robot in ("pusht", "go2"):
            for scale in scales:
                bag = Path(tmp) / f"{robot}_{scale:g}"
                start = time.monotonic()
                run = subprocess.run(
                    [sys.executable, "-m", "dmo_ros.cli", "collect", "--robot", robot,
                     "--duration", f"{sim_seconds:g}", "--time-scale", f"{scale:g}",
                     "--out", str(bag), "--seed", "7"],
                    capture_output=True, text=True, timeout=600,
                )  # fmt: skip
                wall = time.monotonic() - start
                m = re.search(r"\(([\d.]+)x real time\)", run.stdout)
                row = {
                    "robot": robot,
                    "asked": scale,
                    "achieved": float(m.group(1)) if m else None,
                    "wall_s_with_startup": round(wall, 1),
                    "load": round(os.getloadavg()[0], 2),
                    **(check(bag, robot) if run.returncode == 0 else {"ok": False}),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "collect_speed.json").write_text(json.dumps(rows, indent=1))
    fig, ax = plt.subplots(figsize=(6, 4))
    for robot in ("pusht", "go2"):
        mine = [r for r in rows if r["robot"] == robot]
        ax.plot([r["asked"] for r in mine], [r["achieved"] or 0 for r in mine], "o-", label=robot)
        for r in mine:
            if not r["ok"]:
                ax.plot(r["asked"], r["achieved"] or 0, "rx", markersize=12)
    ax.plot(scales, scales, "k:", label="asked = achieved")
    ax.set_xlabel("--time-scale asked")
    ax.set_ylabel("achieved (sim s / wall s)")
    ax.set_title(f"collect with auto-play + recorder, {sim_seconds:g} s sim (x: a lost step)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "collect_speed.png", dpi=100)
    print(f"saved {RESULTS / 'collect_speed.json'} and .png")


if __name__ == "__main__":
    main()
