"""Local model (RSSM): imagination throughput and peak memory at the paper's size.

Batch 256, deter 512, 32 x 32 latents, a 32-step horizon of random policy actions (2-D,
as Push-T): prior steps under no_grad, and forward + backward of the summed rewards into
the actions and the weights (the gradient DMO takes from the local model); each eagerly,
under bf16 autocast and with `torch.compile` of one step; plus the encoder's frames/s at
batch 256 (64x64).
Each variant runs in a fresh process so its peak memory is its own: CPU, peak RSS above
the process's size before the model is built (`ru_maxrss`); CUDA, torch's peak
allocation. A variant that fails or outlasts its time limit is recorded as such.

    python bench/rssm_speed.py [--threads N]   # -> bench/results/rssm_speed.{json,png}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, HORIZON, ACTION_DIM, SIZE = 256, 32, 2, 64
VARIANTS = {
    "imagine, no_grad": {},
    "imagine, fwd+bwd": {"backward": True},
    "imagine bf16, no_grad": {"bf16": True},
    "imagine bf16, fwd+bwd": {"bf16": True, "backward": True},
    "compile imagine, no_grad": {"compile": True},
    "compile imagine, fwd+bwd": {"compile": True, "backward": True},
    "encoder, no_grad": {"encoder": True},
}
LIMIT_S = 240


def measure(variant: str, threads: int) -> dict:
    """Runs in the child process: one variant."""
    import torch

    from dmo_ros.worldmodels.rssm import RSSM, RSSMConfig

    opts = VARIANTS[variant]
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    model = RSSM(RSSMConfig(action_dim=ACTION_DIM, image_size=SIZE)).to(device)
    # A trained reward head: the zero-initialised output would hand back zero gradients.
    torch.nn.init.normal_(model.reward_head[-1].weight, std=0.01)

    def step(state, action):
        state = model.imagine(state, action)
        return state, model.reward(model.features(state))

    if opts.get("compile"):
        step = torch.compile(step)

    if opts.get("encoder"):
        frames = torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8, device=device)

        def once():
            with torch.no_grad():
                model.encode(frames)
    else:
        actions = torch.rand(HORIZON, BATCH, ACTION_DIM, device=device) * 2 - 1
        backward, bf16 = bool(opts.get("backward")), bool(opts.get("bf16"))
        actions.requires_grad_(backward)

        def once():
            model.zero_grad(set_to_none=True)
            actions.grad = None
            with (
                torch.set_grad_enabled(backward),
                torch.autocast(device.type, torch.bfloat16, enabled=bf16),
            ):
                state, total = model.initial(BATCH), 0.0
                for t in range(HORIZON):
                    state, reward = step(state, actions[t])
                    total = total + reward.sum()
                if backward:
                    total.backward()

    t = time.perf_counter()
    once()  # warm-up (and compilation)
    sync()
    first_s = time.perf_counter() - t
    times = []
    budget = time.perf_counter() + 20.0
    while len(times) < 3 or (len(times) < 10 and time.perf_counter() < budget):
        t = time.perf_counter()
        once()
        sync()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    out = {
        "variant": variant,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "median_s": median,
        "best_s": min(times),
        "repeats": len(times),
        "first_call_s": first_s,
    }
    if opts.get("encoder"):
        out["frames_per_s"] = BATCH / median
        out["best_frames_per_s"] = BATCH / min(times)
    else:  # one imagination step = one prior step of the whole batch (and its reward)
        out["steps_per_s"] = HORIZON / median
        out["best_steps_per_s"] = HORIZON / min(times)
        out["state_steps_per_s"] = HORIZON * BATCH / median
    if device.type == "cuda":
        out["peak_mem_MiB"] = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is in KiB on Linux
        out["peak_mem_MiB"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return out


def child(variant: str, threads: int, cache: str) -> dict:
    cmd = [sys.executable, __file__, "--one", variant, "--threads", str(threads)]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}  # a cold compile, timed honestly
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT_S, env=env)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "error": f"over {LIMIT_S} s"}
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"variant": variant, "error": last[:200]}
    return json.loads(lines[-1])


def table(rows: list[dict]) -> str:
    """Median (best) of the repeats; the machine is often shared, so both are shown."""
    head = f"{'variant':28} {'steps/s':>15} {'frames/s':>13} {'peak MiB':>9} {'1st call s':>10}"
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['variant']:28} error: {r['error']}")
            continue
        steps, frames = "-", "-"
        if "steps_per_s" in r:
            steps = f"{r['steps_per_s']:.1f} ({r['best_steps_per_s']:.1f})"
        if "frames_per_s" in r:
            frames = f"{r['frames_per_s']:.0f} ({r['best_frames_per_s']:.0f})"
        lines.append(
            f"{r['variant']:28} {steps:>15} {frames:>13} {r['peak_mem_MiB']:>9.0f} "
            f"{r['first_call_s']:>10.1f}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    imag = [r for r in rows if "encoder" not in r["variant"]]
    for ax, key, title in (
        (axes[0], "steps_per_s", f"imagination steps/s (batch {BATCH}, horizon {HORIZON})"),
        (axes[1], "peak_mem_MiB", "peak memory above start (MiB)"),
    ):
        sub = imag if key == "steps_per_s" else rows
        names = [r["variant"] for r in sub]
        vals = [r.get(key, 0.0) for r in sub]
        bars = ax.barh(names, vals, color=["C0" if "error" not in r else "C3" for r in sub])
        for bar, r in zip(bars, sub):
            text = r["error"][:40] if "error" in r else f"{r[key]:.1f}"
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + text, va="center")
        ax.set_title(f"{title}, {threads} thread(s)")
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--one", metavar="VARIANT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.threads)), flush=True)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for variant in VARIANTS:
            rows.append(child(variant, args.threads, cache))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "setting": {
            "batch": BATCH,
            "horizon": HORIZON,
            "action_dim": ACTION_DIM,
            "image": SIZE,
            "model": "RSSMConfig defaults: deter 512, hidden 512, stoch 32 x 32, cnn_depth 32",
            "threads": args.threads,
            "memory": "CPU: peak ru_maxrss above the child's size before the model is built",
        },
        "rows": rows,
    }
    print(table(rows))
    (RESULTS / "rssm_speed.json").write_text(json.dumps(result, indent=1))
    plot(rows, RESULTS / "rssm_speed.png", args.threads)
    print(f"saved {RESULTS / 'rssm_speed.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
