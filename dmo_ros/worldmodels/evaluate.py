"""`dmo-ros eval world-model`: open-loop rollouts of the global model on held-out play data.

From held-out contexts of L real frames, the model is driven by the recorded actions for
`horizon` steps (60 = 12 s); each generated frame is scored against the real one (PSNR,
SSIM on frames in [0, 1]), beside the "repeat the last context frame" baseline. Then the
action-response check (action_response.py). Written to <model>/eval/: world_model.json
(its "definitions" say how each number is computed), world_model_metrics.png and
world_model_strip.png (rows real / model at t = 0, 5, ...).

PSNR is taken of the mean squared error (per step over rollouts, or over a range of
steps), never averaged in dB: one unchanged frame would otherwise score the cap and
outweigh every other step.
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
from dmo_ros.worldmodels.image_metrics import PSNR_MAX_DB, mse, psnr_of_mse, ssim, to_unit
from dmo_ros.worldmodels.train import SECTION, EvalConfig, WorldModelSection

STRIP_EVERY = 5
SUMMARY_STEPS = 20  # "beats repeat-last on PSNR over steps 1-20"
DEFINITIONS = {
    "frames": "compared in [0, 1] (uint8 / 255); model frames clamped to [-1, 1] first",
    "mse": "mean squared error of one step, over rollouts, pixels and channels",
    "psnr": f"10 log10(1 / mse) in dB of that step's mse, capped at {PSNR_MAX_DB:g} dB",
    "psnr_max_db": PSNR_MAX_DB,
    "ssim": "mean SSIM of one step over rollouts (Wang et al. 2004: 11x11 Gaussian window, "
    "sigma 1.5, K1 0.01, K2 0.03, data range 1, valid windows, channels averaged)",
    "summary.psnr_1_K": "PSNR of the mse over steps 1..K and all rollouts (not a mean of dB)",
    "summary.ssim_mean_1_K": "mean of the per-step SSIM over steps 1..K",
    "summary.beats_repeat_last": "psnr_1_K above baseline_psnr_1_K (a lower mse)",
}


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
    """Per-step MSE, PSNR of that MSE and mean SSIM over rollouts; pred, real [N,T,3,H,W]
    in [-1, 1]."""
    n, t = pred.shape[:2]
    a, b = to_unit(pred.clamp(-1, 1).flatten(0, 1)), to_unit(real.flatten(0, 1))
    err = mse(a, b).view(n, t).mean(0)
    s = ssim(a, b).view(n, t).mean(0)
    return {"mse": err.tolist(), "psnr": psnr_of_mse(err).tolist(), "ssim": s.tolist()}


def summarize(model_m: dict, base_m: dict, k: int) -> dict[str, float | bool]:
    """Steps 1..k and all steps: PSNR of the mean MSE, mean SSIM; model and repeat-last."""
    out: dict[str, float | bool] = {}
    for prefix, m in (("", model_m), ("baseline_", base_m)):
        out[f"{prefix}psnr_1_{k}"] = float(psnr_of_mse(float(np.mean(m["mse"][:k]))))
        out[f"{prefix}ssim_mean_1_{k}"] = float(np.mean(m["ssim"][:k]))
        out[f"{prefix}psnr_all"] = float(psnr_of_mse(float(np.mean(m["mse"]))))
    out["beats_repeat_last"] = bool(np.mean(model_m["mse"][:k]) < np.mean(base_m["mse"][:k]))
    return out


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
    summary = summarize(model_m, base_m, k)

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
        "definitions": DEFINITIONS,
        "summary_steps": k,
        "summary": summary,
        "model": model_m,
        "repeat_last": base_m,
        "action_response": response,
        "windows": [[sequences[s].bag, t] for s, t in spans],
    }
    (out / "world_model.json").write_text(json.dumps(results, indent=1))
    _plot_metrics(model_m, base_m, out / "world_model_metrics.png")
    context = frames[0, L - 1 : L]
    rows = [("real", frames[0, L - 1 :]), ("model", torch.cat([context, pred[0]]))]
    strip(rows, out / "world_model_strip.png")
    return results


def _plot_metrics(model_m: dict, base_m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    steps = np.arange(1, len(model_m["psnr"]) + 1)
    labels = (f"PSNR of the step's MSE (dB, cap {PSNR_MAX_DB:g})", "SSIM (frames in [0, 1])")
    for ax, key, unit in zip(axes, ("psnr", "ssim"), labels):
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


def strip(rows: list[tuple[str, torch.Tensor]], path: Path) -> None:
    """Named rows of frames [T,3,H,W] in [-1, 1] (e.g. real / model) at t = 0, 5, ...,
    like the paper's Fig. 2a."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = list(range(0, len(rows[0][1]), STRIP_EVERY))
    fig, axes = plt.subplots(
        len(rows), len(ts), figsize=(1.1 * len(ts), 0.3 + 1.15 * len(rows)), squeeze=False
    )
    for col, t in enumerate(ts):
        for row, (name, seq) in enumerate(rows):
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
        f"PSNR 1-{k} {s[f'psnr_1_{k}']:.2f} dB vs repeat-last "
        f"{s[f'baseline_psnr_1_{k}']:.2f} dB; action response "
        f"{r['sign_agreement']:.0%} sign agreement ({'pass' if r['passed'] else 'FAIL'}) -> {out}"
    )
    return 0
