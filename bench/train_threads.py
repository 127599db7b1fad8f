"""World-model training speed by CPU thread setting, on a quiet and on a shared machine.

cpu-preset training steps/s (64x64, batch 32, AdamW + EMA, bf16 as the config's `auto`
resolves here) for torch threads 1, 2 and 0 (torch's default: all cores), plus one
inter-op thread and OpenMP's passive wait, each measured with and without a competing
busy process (a Python spin loop, one core), side by side in one run (two rounds, the
second in reverse order; the plot and table show the median). Each measurement
runs in a fresh process (thread pools are fixed once torch starts them); the competitor
starts before it and ends after it. Other load on the machine (other users, background
training) is not controlled: the load average around each measurement is recorded.

    python bench/train_threads.py      # -> bench/results/train_threads.{json,png}
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MEASURE_S = 8.0  # timed steps per measurement: until this long, at least MIN_STEPS
ROUNDS = 2  # the second in reverse order: drifting background load hits every variant
MIN_STEPS, MAX_STEPS, WARMUP = 3, 120, 2
LIMIT_S = 150  # one measurement, including start-up
VARIANTS = {
    "threads 1": {"threads": 1},
    "threads 1, interop 1": {"threads": 1, "interop": 1},
    "threads 2": {"threads": 2},
    "threads 0 (all)": {"threads": 0},
    "threads 2, OMP passive wait": {"threads": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
}
SPIN = "while True: pass"


def measure(variant: str) -> dict:
    """In the child process: timed training steps of the cpu preset under `variant`."""
    import torch

    opts = VARIANTS[variant]
    if opts["threads"] > 0:
        torch.set_num_threads(opts["threads"])
    if opts.get("interop"):
        torch.set_num_interop_threads(opts["interop"])

    from dmo_ros.training.device import autocast, use_bf16
    from dmo_ros.training.ema import EMA
    from dmo_ros.worldmodels.diamond import DiamondWorldModel
    from dmo_ros.worldmodels.train import resolve_config

    r = resolve_config("pusht.yaml", "cpu")
    cfg, device = r.section.train, torch.device("cpu")
    bf16 = use_bf16(cfg.bf16, device)
    torch.manual_seed(0)
    model = DiamondWorldModel(r.section.model_config(r.task)).to(memory_format=torch.channels_last)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    size, length = r.task.image_size, r.section.context + 1
    g = torch.Generator().manual_seed(0)
    batch = {
        "frames": torch.randint(0, 256, (cfg.batch_size, length, size, size, 3), generator=g).to(
            torch.uint8
        ),
        "actions": torch.rand(cfg.batch_size, length, r.task.action_dim, generator=g) * 2 - 1,
    }

    def step() -> None:  # the body of training/loop._fit's loop, without data loading and logging
        with autocast(device, bf16):
            loss, _ = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(model)

    for _ in range(WARMUP):
        step()
    times: list[float] = []
    end = time.perf_counter() + MEASURE_S
    while len(times) < MIN_STEPS or (len(times) < MAX_STEPS and time.perf_counter() < end):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "bf16": bf16,
        "batch": cfg.batch_size,
        "steps_timed": len(times),
        "median_step_s": median,
        "steps_per_s": 1.0 / median,
        "slowest_step_s": max(times),
    }


def child(variant: str, busy: bool) -> dict:
    env = {**os.environ, **VARIANTS[variant].get("env", {})}
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    load_before = os.getloadavg()[0]
    try:
        p = subprocess.run(
            [sys.executable, __file__, "--one", variant],
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {LIMIT_S} s"}
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return {**json.loads(lines[-1]), "loadavg_1min_before": load_before}


def busy_processes(threshold: float = 20.0) -> list[str]:
    """Other processes using more than `threshold` % of a core now (top's view), as text."""
    try:
        out = subprocess.run(
            ["top", "-b", "-n", "1", "-o", "%CPU", "-w", "200", "-c"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return ["(top not available)"]
    head = next((i for i, line in enumerate(out) if line.split()[:1] == ["PID"]), None)
    rows = []
    for line in out[head + 1 :] if head is not None else []:
        f = line.split(None, 11)
        if len(f) == 12 and float(f[8]) > threshold and int(f[0]) != os.getpid():
            rows.append(f"{f[8]}% {f[11][:120]}")
    return rows


def summary(rows: list[dict], variant: str, busy: bool) -> float:
    """Median steps/s over the rounds (0 where every round failed)."""
    got = [r["steps_per_s"] for r in rows if (r["variant"], r["busy"]) == (variant, busy)]
    return statistics.median([v for v in got if v is not None] or [0.0])


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(VARIANTS)
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.38
    for k, (busy, label) in enumerate(((False, "no competitor"), (True, "+1 busy process"))):
        vals = [summary(rows, n, busy) for n in names]
        bars = ax.barh([i + (k - 0.5) * width for i in range(len(names))], vals, width, label=label)
        for bar, v in zip(bars, vals):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.2f}", va="center")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"training steps/s, median of {ROUNDS} rounds (cpu preset, batch 32, 64x64)")
    ax.set_title(f"World-model training vs CPU threads ({os.cpu_count()} cores, already shared)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure(sys.argv[2])), flush=True)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    others = busy_processes()
    print("already busy:", others or "nothing", flush=True)
    rows = []
    for rnd in range(ROUNDS):
        order = list(VARIANTS) if rnd % 2 == 0 else list(VARIANTS)[::-1]
        for variant in order:  # quiet and busy back to back
            for busy in (False, True):
                row = {"round": rnd, "variant": variant, "busy": busy, **child(variant, busy)}
                row.setdefault("steps_per_s", None)
                rows.append(row)
                shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
                print(json.dumps(shown), flush=True)
    table = {
        v: {"no_competitor": summary(rows, v, False), "one_busy_process": summary(rows, v, True)}
        for v in VARIANTS
    }
    print("median steps/s over rounds (no competitor / +1 busy process):")
    for v, t in table.items():
        print(f"  {v:30s} {t['no_competitor']:6.2f} / {t['one_busy_process']:6.2f}")
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "busy_processes_before": others,
            "note": "'no competitor' is the machine as found (see busy_processes_before and the "
            "load averages); 'busy' adds one more spinning process",
        },
        "setting": {
            "preset": "cpu",
            "measure_s": MEASURE_S,
            "warmup_steps": WARMUP,
            "rounds": ROUNDS,
        },
        "median_steps_per_s": table,
        "rows": rows,
    }
    (RESULTS / "train_threads.json").write_text(json.dumps(result, indent=1))
    plot(rows, RESULTS / "train_threads.png")
    print(f"saved {RESULTS / 'train_threads.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
