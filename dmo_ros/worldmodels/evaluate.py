"""`dmo-ros eval world-model`: open-loop rollouts of the global model on held-out play data.

From held-out contexts of L real frames, the model is driven by the recorded actions for
`horizon` steps (60 = 12 s); each generated frame is scored against the real one (PSNR,
SSIM), beside the "repeat the last context frame" baseline. Then the action-response
check (action_response.py). Written to <model>/eval/: world_model.json,
world_model_metrics.png and world_model_strip.png (rows real / model at t = 0, 5, ...).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmo_ros.config import build
from dmo_ros.errors import UserError
from dmo_ros.task import TaskConfig
from dmo_ros.training.checkpoint import load_checkpoint, resolve_checkpoint
from dmo_ros.training.device import autocast, pick_device, use_bf16
from dmo_ros.worldmodels import action_response
from dmo_ros.worldmodels.diamond import KIND, DiamondConfig, DiamondWorldModel, frames_to_model
from dmo_ros.worldmodels.image_metrics import psnr, ssim
from dmo_ros.worldmodels.train import SECTION, EvalConfig, WorldModelSection

STRIP_EVERY = 5
SUMMARY_STEPS = 20  # "beats repeat-last on mean PSNR over steps 1-20"


def load_model(path: str | Path, device: torch.device) -> tuple[DiamondWorldModel, dict, Path]:
    """The EMA weights of a trained run (folder or checkpoint) -> (model, checkpoint, file)."""
    file = resolve_checkpoint(path)
    ckpt = load_checkpoint(file, kind=KIND)
    try:
        cfg = DiamondConfig.from_dict(ckpt["model_config"], str(file))
        model = DiamondWorldModel(cfg)
        model.load_state_dict(ckpt["ema"]["module"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise UserError(f"{file}: checkpoint does not fit its model ({str(exc)[:120]})") from None
    return model.to(device).eval(), ckpt, file


def windows(sequences: list, length: int, count: int) -> list[tuple[int, int]]:
    """`count` (sequence, start) pairs evenly spread over all windows inside one segment."""
    starts = []
    for si, seq in enumerate(sequences):
        seg = np.asarray(seq.segment)
        ok = np.ones(max(0, len(seg) - length + 1), bool)
        for k in range(1, length):
            ok &= seg[k : k + len(ok)] == seg[: len(ok)]
        starts.extend((si, int(t)) for t in np.flatnonzero(ok))
    if not starts:
        raise UserError(f"held-out data has no segment of {length} steps to roll out from")
    pick = np.linspace(0, len(starts) - 1, min(count, len(starts))).round().astype(int)
    return [starts[i] for i in pick]


def gather(sequences: list, spans: list[tuple[int, int]], length: int):
    """Frames [N,T,3,H,W] in [-1, 1] and actions [N,T,A] of the chosen windows."""
    frames = np.stack([sequences[s].frames[t : t + length] for s, t in spans])
    actions = np.stack([sequences[s].actions[t : t + length] for s, t in spans])
    return frames_to_model(torch.from_numpy(frames)), torch.from_numpy(actions).float()


@torch.no_grad()
def open_loop(
    model: DiamondWorldModel,
    frames: torch.Tensor,
    actions: torch.Tensor,
    horizon: int,
    batch_size: int,
    seed: int,
    bf16: bool,
) -> torch.Tensor:
    """Generated frames [N,horizon,3,H,W] driven by the recorded actions after the context."""
    L = model.cfg.context
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(frames), batch_size):
        f = frames[i : i + batch_size].to(device)
        a = actions[i : i + batch_size].to(device)
        generator = torch.Generator(device=device).manual_seed(seed + i)
        state = model.init(f[:, :L], a[:, :L])
        steps = []
        with autocast(device, bf16):
            for t in range(horizon):
                frame, state = model.step(state, a[:, L - 1 + t], generator=generator)
                steps.append(frame.float().cpu())
        out.append(torch.stack(steps, dim=1))
    return torch.cat(out)


def step_metrics(pred: torch.Tensor, real: torch.Tensor) -> dict[str, list[float]]:
    """Per-step PSNR and SSIM averaged over rollouts; pred, real [N,T,3,H,W]."""
    n, t = pred.shape[:2]
    p = psnr(pred.flatten(0, 1), real.flatten(0, 1)).view(n, t).mean(0)
    s = ssim(pred.flatten(0, 1), real.flatten(0, 1)).view(n, t).mean(0)
    return {"psnr": p.tolist(), "ssim": s.tolist()}


def evaluate(
    model: DiamondWorldModel,
    sequences: list,
    cfg: EvalConfig,
    out: str | Path,
    bf16: bool = False,
) -> dict[str, Any]:
    """Rollout metrics, baseline, strip image and action-response check; files in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L, horizon = model.cfg.context, cfg.horizon
    spans = windows(sequences, L + horizon, cfg.rollouts)
    frames, actions = gather(sequences, spans, L + horizon)
    real = frames[:, L:]  # the frames after each context, step 1..horizon
    pred = open_loop(model, frames, actions, horizon, cfg.batch_size, cfg.seed, bf16)
    repeat = frames[:, L - 1 : L].expand_as(real)
    model_m, base_m = step_metrics(pred, real), step_metrics(repeat, real)
    k = min(SUMMARY_STEPS, horizon)
    summary = {
        f"psnr_mean_1_{k}": float(np.mean(model_m["psnr"][:k])),
        f"baseline_psnr_mean_1_{k}": float(np.mean(base_m["psnr"][:k])),
        f"ssim_mean_1_{k}": float(np.mean(model_m["ssim"][:k])),
        f"baseline_ssim_mean_1_{k}": float(np.mean(base_m["ssim"][:k])),
        "psnr_mean_all": float(np.mean(model_m["psnr"])),
        "baseline_psnr_mean_all": float(np.mean(base_m["psnr"])),
    }
    summary["beats_repeat_last"] = (
        summary[f"psnr_mean_1_{k}"] > summary[f"baseline_psnr_mean_1_{k}"]
    )

    device = next(model.parameters()).device
    calib = action_response.calibrate(sequences)
    ctx = windows(sequences, L, cfg.response_contexts)
    cf, ca = gather(sequences, ctx, L)
    response = action_response.check(
        model,
        cf.to(device),
        ca.to(device),
        calib["matrix"],
        cfg.response_steps,
        cfg.response_magnitude,
        cfg.seed,
        bf16,
    )
    response["calibration"] = {
        "matrix_px_per_action": calib["matrix"].tolist(),
        "r2": calib["r2"],
        "pairs": calib["pairs"],
    }
    response["passed"] = response["sign_agreement"] >= 0.75

    results = {
        "rollouts": len(spans),
        "horizon": horizon,
        "context": L,
        "sampler": {"steps": model.cfg.sampler.steps, "method": model.cfg.sampler.method},
        "summary": summary,
        "model": model_m,
        "repeat_last": base_m,
        "action_response": response,
        "windows": [[sequences[s].bag, t] for s, t in spans],
    }
    (out / "world_model.json").write_text(json.dumps(results, indent=1))
    _plot_metrics(model_m, base_m, out / "world_model_metrics.png")
    _strip(
        frames[0, L - 1 :],
        torch.cat([frames[0, L - 1 : L], pred[0]]),
        out / "world_model_strip.png",
    )
    return results


def _plot_metrics(model_m: dict, base_m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    steps = np.arange(1, len(model_m["psnr"]) + 1)
    for ax, key, unit in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        ax.plot(steps, model_m[key], label="world model")
        ax.plot(steps, base_m[key], "--", label="repeat last frame")
        ax.set_xlabel("open-loop step (0.2 s)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Global world model: held-out open-loop rollouts")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _strip(real: torch.Tensor, model: torch.Tensor, path: Path) -> None:
    """Rows real / model at t = 0, 5, ..., horizon (like the paper's Fig. 2a)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = list(range(0, len(real), STRIP_EVERY))
    fig, axes = plt.subplots(2, len(ts), figsize=(1.1 * len(ts), 2.6), squeeze=False)
    for col, t in enumerate(ts):
        for row, (name, seq) in enumerate((("real", real), ("model", model))):
            ax = axes[row, col]
            ax.imshow(seq[t].clamp(-1, 1).add(1).div(2).permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t={t}", fontsize=8)
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def held_out(ckpt: dict, bags: list[str], task: TaskConfig) -> list:
    """Sequences of `bags`, or (none given) the validation part of the bags it was trained on."""
    from dmo_ros.data.play_data import load_play_data, split_sequences

    if bags:
        return load_play_data(bags, task)
    data = ckpt.get("config", {}).get("data")
    if not data:
        raise UserError("--bags: give held-out bags (the run does not record its own)")
    _, val = split_sequences(load_play_data(data["bags"], task), data["val_fraction"], data["seed"])
    if not val:
        raise UserError("--bags: the run held out no data; give held-out bags")
    return val


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    model, ckpt, file = load_model(args.model, device)
    config = ckpt.get("config", {})
    source = str(file)
    try:
        task = build(TaskConfig, config["task"], source, "task.")
        section = build(WorldModelSection, config[SECTION], source, f"{SECTION}.")
    except KeyError:
        raise UserError(f"{file}: checkpoint lacks its training config") from None
    if task.image_size != model.cfg.image_size:
        raise UserError(
            f"{file}: task image size {task.image_size} != model's {model.cfg.image_size}"
        )
    sequences = held_out(ckpt, list(args.bags), task)
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    out = Path(args.out) if args.out else run_dir / "eval"
    bf16 = use_bf16(section.train.bf16, device)
    if section.train.threads > 0:
        torch.set_num_threads(section.train.threads)
    results = evaluate(model, sequences, section.eval, out, bf16)
    s, r = results["summary"], results["action_response"]
    k = min(SUMMARY_STEPS, results["horizon"])
    print(
        f"world model ({results['rollouts']} rollouts x {results['horizon']} steps): "
        f"PSNR 1-{k} {s[f'psnr_mean_1_{k}']:.2f} dB vs repeat-last "
        f"{s[f'baseline_psnr_mean_1_{k}']:.2f} dB; action response "
        f"{r['sign_agreement']:.0%} sign agreement ({'pass' if r['passed'] else 'FAIL'}) -> {out}"
    )
    return 0
