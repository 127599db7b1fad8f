"""Candidate `cpu`-preset world models for issue 9: imagination speed and training step time.

The speed side of the fidelity-vs-speed plot. Each variant is the `cpu` preset plus `--set`
overrides (VARIANTS, the one place the training session takes them from); for each, in a
fresh process (its own peak RSS, a time limit):

* imagination: a 32-step open-loop rollout at batch 32 (64x64, 4 context frames, 3 Euler
  steps per frame, the variant's sampler otherwise) under no_grad, channels-last, bf16
  autocast where the CPU has it natively (`use_bf16("auto")`, reported); frames/s =
  32 x 32 / rollout time, median over rollouts; with 1 and with 2 torch threads;
* training: one optimiser step at batch 32 as `training/loop.py` takes it (bf16 autocast
  as `train.bf16: auto`, channels-last, AdamW, grad clip, EMA update; random uint8
  windows, so data loading is not included), 1 thread; and from it the time of 12,000
  steps. The cpu preset's own run (models/demo-cpu.log) took 23.7 min for 12,000 steps
  on one thread, all included; the estimate scales that by the variant's step time
  relative to the cpu preset's measured here, so it carries the loop's overhead.

The issue's floor for DMO-SAPO: >= 100 imagined frames/s at batch 32 on 2 cores.

    python bench/world_model_variants.py                 # 1 thread, all variants
    python bench/world_model_variants.py --threads 2     # the 2-thread column (quiet cores!)
    python bench/world_model_variants.py --commands      # print the training commands only
    python bench/world_model_variants.py --report --note2 "..."  # rewrite table/JSON/PNG

Rows merge into bench/results/world_model_variants.json (a rerun replaces the rows it
measures), then the table, the PNG and the commands are written from all rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
JSON = RESULTS / "world_model_variants.json"
BATCH, SIZE, CONTEXT, HORIZON, STEPS = 32, 64, 4, 32, 3
TRAIN_STEPS = 12000  # the cpu preset's train.steps
# models/demo-cpu.log: the cpu preset, 12,000 steps in 23 min 44 s on one thread (loop,
# data, EMA, logging, checkpoints and validation included).
DEMO_CPU_MIN = 23.0 + 44.0 / 60.0
FLOOR = 100.0  # imagined frames/s at batch 32 on 2 cores (issue 9)
LIMIT_S = 300

STEM2 = ["world_model.unet.stem_stride=2"]
WIDE = ["world_model.unet.channels=[48, 96, 144]"]
DEEP = ["world_model.unet.depths=[2, 2, 2]"]
ATTN = ["world_model.unet.mid_attention=true"]
ATTN_LOW = [
    "world_model.unet.mid_attention=true",
    "world_model.unet.attention=[false, false, true]",
]
NOISE = ["world_model.edm.context_noise_max=0.3", "world_model.sampler.context_noise=0.1"]
# 32x32 at the cost of 16x16: 16 channels at 32x32 cost what 32 do at 16x16 (H W C^2)
NARROW = ["world_model.unet.channels=[16, 32, 64, 96]", "world_model.unet.depths=[1, 1, 1, 1]"]
LEAN = ["world_model.unet.channels=[16, 32, 64]", "world_model.unet.depths=[1, 1, 1]"]
# The candidates: `--set` overrides of the cpu preset (3 Euler steps each, as the preset).
VARIANTS: dict[str, list[str]] = {
    "cpu": [],  # today's preset: stem 4 (16x16), [32, 64, 96], depths 1
    "stem2": STEM2,  # the network at 32x32: the T 5-6 cells wide
    "wide": WIDE,
    "deep": DEEP,
    "attn": ATTN,  # self-attention in the two mid blocks (4x4)
    "attn+noise": ATTN + NOISE,  # and context-noise augmentation
    "stem2+attn": STEM2 + ATTN,  # mid attention at 8x8
    "stem2+attn+noise": STEM2 + ATTN + NOISE,
    "stem2+attn-low": STEM2 + ATTN_LOW,  # also after the lowest level's blocks
    "wide+attn": WIDE + ATTN,
    "stem2+wide+attn": STEM2 + WIDE + ATTN,
    "stem2-narrow": STEM2 + NARROW,  # the cpu preset (attention, noise) at 32x32, 4 levels
    "stem2-lean": STEM2 + LEAN,  # 3 levels down to 8x8, attention there
}
COMMON = [f"world_model.sampler.steps={STEPS}"]


def overrides(variant: str) -> list[str]:
    return COMMON + VARIANTS[variant]


def command(variant: str, bags: str = "rosbags/<play bags>") -> str:
    sets = " ".join(f"--set {shlex.quote(s)}" for s in VARIANTS[variant])
    out = f"models/wm-{variant.replace('+', '-')}"
    return f"dmo-ros train world-model --preset cpu --bags {bags} --out {out} {sets}".strip()


def measure(variant: str, mode: str, threads: int) -> dict:
    """Runs in the child process: one (variant, mode, threads) measurement."""
    import torch

    torch.set_num_threads(threads)
    from dmo_ros.training.device import autocast, use_bf16
    from dmo_ros.worldmodels.diamond import DiamondWorldModel
    from dmo_ros.worldmodels.train import resolve_config

    device = torch.device("cpu")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = resolve_config("pusht.yaml", "cpu", overrides(variant))
    torch.manual_seed(0)
    model = DiamondWorldModel(r.section.model_config(r.task)).to(device)
    model = model.to(memory_format=torch.channels_last)
    # --fp32: the numeric path of CPUs without native bf16, measured on one that has it
    bf16 = use_bf16("auto", device) and not os.environ.get("DMO_BENCH_FP32")
    load = os.getloadavg()[0]
    out = {
        "variant": variant,
        "mode": mode,
        "threads": torch.get_num_threads(),
        "bf16": bf16,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "sets": VARIANTS[variant],
    }
    if mode == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)
        ema = [p.detach().clone() for p in model.parameters()]
        g = torch.Generator().manual_seed(0)
        batch = {
            "frames": torch.randint(
                0, 256, (BATCH, CONTEXT + 1, SIZE, SIZE, 3), dtype=torch.uint8, generator=g
            ),
            "actions": torch.rand(BATCH, CONTEXT + 1, 2, generator=g) * 2 - 1,
        }

        def once():
            with autocast(device, bf16):
                loss, _ = model(batch, generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1e-3)

        for _ in range(3):  # warm-up
            once()
        times = []
        budget = time.perf_counter() + 30.0
        while len(times) < 5 or (len(times) < 40 and time.perf_counter() < budget):
            t = time.perf_counter()
            once()
            times.append(time.perf_counter() - t)
        out["step_s"] = statistics.median(times)
        out["best_step_s"] = min(times)
    else:
        model.eval()
        g = torch.Generator().manual_seed(0)
        frames = torch.rand(BATCH, CONTEXT, 3, SIZE, SIZE, generator=g) * 2 - 1
        actions = torch.rand(BATCH, CONTEXT, 2, generator=g) * 2 - 1
        steer = torch.rand(BATCH, HORIZON, 2, generator=g) * 2 - 1

        def rollout(n: int) -> None:
            state = model.init(frames, actions)
            with torch.no_grad(), autocast(device, bf16):
                for t in range(n):
                    _, state = model.step(state, steer[:, t], generator=g)

        rollout(2)  # warm-up
        times = []
        budget = time.perf_counter() + 60.0
        while len(times) < 2 or (len(times) < 5 and time.perf_counter() < budget):
            t = time.perf_counter()
            rollout(HORIZON)
            times.append(time.perf_counter() - t)
        out["rollout_s"] = statistics.median(times)
        out["frames_per_s"] = BATCH * HORIZON / statistics.median(times)
        out["best_frames_per_s"] = BATCH * HORIZON / min(times)
    out["repeats"] = len(times)
    out["loadavg_1min"] = [load, os.getloadavg()[0]]
    out["peak_rss_MiB"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return out


def child(variant: str, mode: str, threads: int, fp32: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--one", variant, mode, str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if fp32:
        env["DMO_BENCH_FP32"] = "1"
    row = {"variant": variant, "mode": mode, "threads": threads}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT_S, env=env)
    except subprocess.TimeoutExpired:
        return {**row, "error": f"over {LIMIT_S} s"}
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {**row, "error": last[:200]}
    return json.loads(lines[-1])


def find(rows: list[dict], variant: str, mode: str, threads: int) -> dict | None:
    for r in rows:
        if (r["variant"], r["mode"], r["threads"]) == (variant, mode, threads):
            return r
    return None


def estimates(rows: list[dict]) -> dict[str, dict]:
    """Per variant: the table's numbers (None where not measured)."""
    base = find(rows, "cpu", "train", 1)
    base_s = base.get("step_s") if base else None
    table = {}
    for v in VARIANTS:
        r1, r2, tr = (
            find(rows, v, "imagine", 1),
            find(rows, v, "imagine", 2),
            find(rows, v, "train", 1),
        )
        step_s = tr.get("step_s") if tr else None
        e = {
            "frames_per_s_1thread": r1.get("frames_per_s") if r1 else None,
            "frames_per_s_2threads": r2.get("frames_per_s") if r2 else None,
            "train_step_s_1thread": step_s,
            "params_M": (tr or r1 or {}).get("params_M"),
            "bf16": (tr or r1 or {}).get("bf16"),
            "min_12000_steps_model_only": step_s * TRAIN_STEPS / 60 if step_s else None,
            "min_12000_steps_est": (DEMO_CPU_MIN * step_s / base_s if step_s and base_s else None),
        }
        fps = e["frames_per_s_2threads"]
        e["meets_floor_2threads"] = None if fps is None else fps >= FLOOR
        table[v] = e
    return table


def fmt(x, spec: str) -> str:
    return "-".rjust(int(spec.split(".")[0])) if x is None else format(x, spec)


def print_table(table: dict[str, dict], note2: str) -> None:
    head = (
        f"{'variant':18s} {'params':>7s} {'fps 1t':>7s} {'fps 2t':>7s} {'s/step':>7s} "
        f"{'12k min':>8s} {'(model)':>8s}"
    )
    print(head)
    print("-" * len(head))
    for v, e in table.items():
        print(
            f"{v:18s} {fmt(e['params_M'], '7.2f')} {fmt(e['frames_per_s_1thread'], '7.1f')} "
            f"{fmt(e['frames_per_s_2threads'], '7.1f')} {fmt(e['train_step_s_1thread'], '7.3f')} "
            f"{fmt(e['min_12000_steps_est'], '8.1f')} "
            f"{fmt(e['min_12000_steps_model_only'], '8.1f')}"
        )
    print(
        f"fps: imagined frames/s at batch {BATCH}, {HORIZON}-step rollout, {STEPS} Euler steps; "
        f"floor {FLOOR:.0f} on 2 cores. 12k min: scaled from models/demo-cpu.log "
        f"({DEMO_CPU_MIN:.1f} min for the cpu preset); (model): step time x 12,000 only."
    )
    if note2:
        print(f"fps 2t: {note2}")


def plot(table: dict[str, dict], path: Path, note2: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(table)
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 1.8))
    ax = axes[0]
    for k, (key, label, dy) in enumerate(
        [("frames_per_s_1thread", "1 thread", -0.2), ("frames_per_s_2threads", "2 threads", 0.2)]
    ):
        vals = [table[n][key] or 0.0 for n in names]
        bars = ax.barh(y + dy, vals, height=0.38, color=f"C{k}", label=label)
        for bar, n in zip(bars, names):
            v = table[n][key]
            text = f" {v:.0f}" if v is not None else " not measured"
            ax.text(
                bar.get_width(), bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8
            )
    ax.axvline(FLOOR, color="k", ls="--", lw=1, label=f"floor {FLOOR:.0f} (2 cores)")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"imagined frames/s (batch {BATCH}, {HORIZON}-step rollout, {STEPS} steps)")
    title = "imagination speed"
    if note2:
        title += f"\n2 threads: {note2}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    vals = [table[n]["train_step_s_1thread"] or 0.0 for n in names]
    bars = ax.barh(y, vals, color="C2")
    for bar, n in zip(bars, names):
        m = table[n]["min_12000_steps_est"]
        text = f" {bar.get_width():.3f} s, ~{m:.0f} min / 12k" if m else " -"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"training s/step (batch {BATCH}, 1 thread)")
    ax.set_title("training step (min for 12,000 steps scaled from demo-cpu's run)", fontsize=9)
    ax.set_xlim(0, max([*vals, 0.1]) * 1.6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, choices=(1, 2), default=1)
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), help="these variants only")
    p.add_argument("--no-train", action="store_true", help="imagination only")
    p.add_argument("--fp32", action="store_true", help="no bf16 even where the CPU has it")
    p.add_argument("--commands", action="store_true", help="print the training commands, exit")
    p.add_argument("--note2", help="why the 2-thread column is missing (kept in the JSON)")
    p.add_argument("--report", action="store_true", help="measure nothing: table, JSON, PNG")
    args = p.parse_args()
    if args.commands:
        for v in VARIANTS:
            print(command(v))
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    old = json.loads(JSON.read_text()) if JSON.exists() else {}
    rows = old.get("rows", [])
    modes = ["imagine"] + ([] if args.no_train or args.threads != 1 else ["train"])
    for v in [] if args.report else args.only or VARIANTS:
        for mode in modes:
            row = child(v, mode, args.threads, args.fp32)
            row["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            rows = [
                r
                for r in rows
                if (r["variant"], r["mode"], r["threads"]) != (v, mode, args.threads)
            ]
            rows.append(row)
            shown = {k: (round(x, 3) if isinstance(x, float) else x) for k, x in row.items()}
            print(json.dumps(shown), flush=True)
    note2 = ""
    if not all(find(rows, v, "imagine", 2) for v in VARIANTS):
        note2 = args.note2 or old.get("note_2threads") or "not measured: core busy"
    table = estimates(rows)
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_capability": _capability(),
        },
        "setting": {
            "batch": BATCH,
            "image": SIZE,
            "context": CONTEXT,
            "horizon": HORIZON,
            "denoising_steps": STEPS,
            "preset": "cpu",
            "floor_frames_per_s_2cores": FLOOR,
            "demo_cpu_min_12000_steps": DEMO_CPU_MIN,
        },
        "variants": {v: VARIANTS[v] for v in VARIANTS},
        "commands": {v: command(v) for v in VARIANTS},
        "note_2threads": note2,
        "table": table,
        "rows": rows,
    }
    JSON.write_text(json.dumps(result, indent=1))
    plot(table, JSON.with_suffix(".png"), note2)
    print()
    print_table(table, note2)
    print()
    for v in VARIANTS:
        print(command(v))
    print(f"saved {JSON} and .png")
    return 0


def _capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


if __name__ == "__main__":
    sys.exit(main())
