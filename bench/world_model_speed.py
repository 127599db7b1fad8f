"""Global world model: imagination throughput and peak memory (64x64, batch 32, 3 steps).

For the `cpu` and `paper` presets, side by side in one run: fp32 (NCHW), channels-last,
bf16 autocast + channels-last, torch.compile + channels-last, and one thread instead of
all cores (the machine is often shared); plus a training step of each preset. Each
variant runs in a fresh process so its peak memory is its own (CPU: peak RSS above the
process's size before the model is built; CUDA: torch's peak allocation). A variant that
fails or outlasts its time limit is recorded as such.

    python bench/world_model_speed.py        # -> bench/results/world_model_speed.{json,png}
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, SIZE, STEPS = 32, 64, 3
VARIANTS = {
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"channels_last": True, "bf16": True},
    "compile+channels_last": {"channels_last": True, "compile": True},
    "channels_last, 1 thread": {"channels_last": True, "threads": 1},
    "train step (channels_last)": {"channels_last": True, "train": True},
}
LIMIT_S = {"cpu": 420, "paper": 600}


def measure(preset: str, variant: str) -> dict:
    """Runs in the child process: one (preset, variant) measurement."""
    import torch

    from dmo_ros.training.device import autocast, pick_device
    from dmo_ros.worldmodels.train import resolve_config

    opts = VARIANTS[variant]
    if opts.get("threads"):
        torch.set_num_threads(opts["threads"])
    device = pick_device("auto")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from dmo_ros.worldmodels.diamond import DiamondWorldModel

    r = resolve_config("pusht.yaml", preset, [f"world_model.sampler.steps={STEPS}"])
    torch.manual_seed(0)
    model = DiamondWorldModel(r.section.model_config(r.task)).to(device)
    if opts.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    compile_s = None
    if opts.get("compile"):
        model.denoiser.net = torch.compile(model.denoiser.net)
    frames = torch.rand(BATCH, 4, 3, SIZE, SIZE, device=device) * 2 - 1
    actions = torch.rand(BATCH, 4, 2, device=device) * 2 - 1
    bf16 = bool(opts.get("bf16"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    if opts.get("train"):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = {
            "frames": torch.randint(0, 256, (BATCH, 5, SIZE, SIZE, 3), dtype=torch.uint8),
            "actions": torch.rand(BATCH, 5, 2) * 2 - 1,
        }
        batch = {k: v.to(device) for k, v in batch.items()}

        def once():
            with autocast(device, bf16):
                loss, _ = model(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        model.eval()
        state = model.init(frames, actions)
        action = torch.zeros(BATCH, 2, device=device)

        def once():
            with torch.no_grad(), autocast(device, bf16):
                model.step(state, action)

    t = time.perf_counter()
    once()  # warm-up (and compilation)
    sync()
    first_s = time.perf_counter() - t
    if opts.get("compile"):
        compile_s = first_s
    times = []
    budget = time.perf_counter() + 40.0
    while len(times) < 3 or (len(times) < 10 and time.perf_counter() < budget):
        t = time.perf_counter()
        once()
        sync()
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    out = {
        "preset": preset,
        "variant": variant,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "median_s": step_s,
        "best_s": min(times),
        "repeats": len(times),
        "compile_s": compile_s,
    }
    if opts.get("train"):
        out["train_steps_per_s"] = 1.0 / step_s
        out["train_frames_per_s"] = BATCH / step_s
    else:
        out["frames_per_s"] = BATCH / step_s
        out["best_frames_per_s"] = BATCH / min(times)
    if device.type == "cuda":
        out["peak_mem_MiB"] = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is in KiB on Linux
        out["peak_mem_MiB"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return out


def child(preset: str, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--one", preset, variant]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT_S[preset])
    except subprocess.TimeoutExpired:
        return {"preset": preset, "variant": variant, "error": f"over {LIMIT_S[preset]} s"}
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"preset": preset, "variant": variant, "error": last[:200]}
    return json.loads(lines[-1])


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = ["cpu", "paper"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, preset in zip(axes, presets):
        sub = [r for r in rows if r["preset"] == preset and "train" not in r["variant"]]
        names = [r["variant"] for r in sub]
        vals = [r.get("frames_per_s", 0.0) for r in sub]
        bars = ax.barh(names, vals, color=["C0" if "error" not in r else "C3" for r in sub])
        for bar, r in zip(bars, sub):
            text = r["error"][:40] if "error" in r else f"{r['frames_per_s']:.1f}"
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + text, va="center")
        ax.set_title(f"{preset}: imagined frames/s (batch {BATCH}, {STEPS} steps)")
        ax.set_xlabel("frames/s")
        if preset == "cpu":
            ax.axvline(200, color="k", ls="--", lw=1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure(sys.argv[2], sys.argv[3])), flush=True)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    load_before = os.getloadavg()
    for preset in ("cpu", "paper"):
        for variant in VARIANTS:
            row = child(preset, variant)
            rows.append(row)
            shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
            print(json.dumps(shown), flush=True)
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "setting": {"batch": BATCH, "image": SIZE, "denoising_steps": STEPS},
        "rows": rows,
    }
    (RESULTS / "world_model_speed.json").write_text(json.dumps(result, indent=1))
    plot(rows, RESULTS / "world_model_speed.png")
    print(f"saved {RESULTS / 'world_model_speed.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
