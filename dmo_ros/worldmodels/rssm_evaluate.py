"""`dmo-ros eval rssm`: the local model on held-out play data.

* One step (what DMO needs): along held-out windows the RSSM filters the real frames; at
  each step the prior (imagined from the previous posterior and action) is compared with
  the posterior on the real frame (KL and squared distance of their class probabilities),
  and the reward head's prediction from the posterior and from the prior features with the
  global reward's label. Baseline: predicting the held-out mean label, the best constant.
* Open loop (paper Fig. 2a): from the held-out contexts that `dmo-ros eval world-model`
  uses (same count and spread), the RSSM filters `context` real frames, then imagines
  `horizon` steps with the recorded actions and decodes them; PSNR/SSIM per step beside
  repeat-last and, given `--world-model`, the diffusion model from the same contexts.
Written to <model>/eval/: rssm.json, rssm_metrics.png and rssm_strip.png (rows real /
diffusion / RSSM).
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
from dmo_ros.training.checkpoint import resolve_checkpoint
from dmo_ros.training.device import autocast, pick_device, use_bf16
from dmo_ros.worldmodels import evaluate as wm_eval
from dmo_ros.worldmodels.image_metrics import PSNR_MAX_DB, psnr_of_mse
from dmo_ros.worldmodels.rssm import RSSM, kl_balance
from dmo_ros.worldmodels.rssm_train import (
    SECTION,
    RSSMSection,
    label_rewards,
    load_rssm,
)

DEFINITIONS = {
    **wm_eval.DEFINITIONS,
    "one_step.kl": "KL(posterior || prior) summed over the stochastic variables, mean over steps",
    "one_step.prob_sq_error": "squared distance of prior and posterior class probabilities, "
    "summed over classes, mean over variables and steps",
    "one_step.reward_mae_posterior": "mean |reward head(posterior features) - global reward|",
    "one_step.reward_mae_prior": "the same from the prior's features (what DMO's actor sees)",
    "one_step.reward_mae_mean": "mean |held-out mean label - label|: the best constant",
}


@torch.no_grad()
def one_step(model: RSSM, sequences, labels, window: int, count: int, bf16: bool) -> dict:
    """Prior-vs-posterior and reward errors along `count` held-out windows (steps 1..)."""
    device = next(model.parameters()).device
    spans = wm_eval.windows(sequences, window, count)
    frames = np.stack([sequences[s].frames[t : t + window] for s, t in spans])
    actions = np.stack([sequences[s].actions[t : t + window] for s, t in spans])
    target = torch.from_numpy(np.stack([labels[s][t : t + window] for s, t in spans]))
    frames = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).to(device)
    with autocast(device, bf16):
        posts, priors = model.observe_sequence(frames, torch.from_numpy(actions).to(device))
        r_post = model.reward(model.features(posts)).float().cpu()
        r_prior = model.reward(model.features(priors)).float().cpu()
    _, _, kl = kl_balance(posts["logits"][:, 1:], priors["logits"][:, 1:], 0.0)
    sq = (posts["logits"].exp() - priors["logits"].exp()).float().square().sum(-1)
    t = target[:, 1:]  # step 0's prior is the initial state's: no previous frame
    return {
        "windows": len(spans),
        "window": window,
        "kl": float(kl),
        "prob_sq_error": float(sq[:, 1:].mean()),
        "reward_mae_posterior": float((r_post[:, 1:] - t).abs().mean()),
        "reward_mae_prior": float((r_prior[:, 1:] - t).abs().mean()),
        "reward_mae_mean": float((t - t.mean()).abs().mean()),
    }


@torch.no_grad()
def open_loop(
    model: RSSM, frames, actions, context: int, horizon: int, batch: int, seed: int, bf16
):
    """Decoded imagined frames [N,horizon,3,H,W]: filter `context` frames, then the prior."""
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    out = []
    for i in range(0, len(frames), batch):
        f, a = frames[i : i + batch].to(device), actions[i : i + batch].to(device)
        with autocast(device, bf16):
            posts, _ = model.observe_sequence(f[:, :context], a[:, :context])
            state = {k: v[:, -1] for k, v in posts.items()}
            steps = []
            for t in range(horizon):
                state = model.imagine(state, a[:, context - 1 + t])
                steps.append(model.decode(model.features(state)).float().clamp(-1, 1).cpu())
        out.append(torch.stack(steps, 1))
    return torch.cat(out)


def evaluate(
    model, sequences, labels, section: RSSMSection, out: Path, bf16: bool, world_model=None
):
    cfg = section.eval
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"definitions": DEFINITIONS}
    if labels is not None:
        results["one_step"] = one_step(
            model, sequences, labels, section.window, cfg.rollouts * 4, bf16
        )
    L, horizon = cfg.context, cfg.horizon
    if world_model is not None:
        L = world_model.cfg.context  # the world model's contexts, exactly
    if model.decoder is None:
        results["open_loop"] = "skipped: this RSSM has no decoder"
        (out / "rssm.json").write_text(json.dumps(results, indent=1))
        return results
    spans = wm_eval.windows(sequences, L + horizon, cfg.rollouts)
    frames, actions = wm_eval.gather(sequences, spans, L + horizon)
    real = frames[:, L:]
    pred = open_loop(model, frames, actions, L, horizon, cfg.batch_size, cfg.seed, bf16)
    metrics = {
        "rssm": wm_eval.step_metrics(pred, real),
        "repeat_last": wm_eval.step_metrics(frames[:, L - 1 : L].expand_as(real), real),
    }
    rows = [("real", frames[0, L - 1 :]), ("RSSM", torch.cat([frames[0, L - 1 : L], pred[0]]))]
    if world_model is not None:
        diffusion = wm_eval.open_loop(
            world_model, frames, actions, horizon, cfg.batch_size, cfg.seed, bf16
        )
        metrics["diffusion"] = wm_eval.step_metrics(diffusion, real)
        rows.insert(1, ("diffusion", torch.cat([frames[0, L - 1 : L], diffusion[0]])))
    results["open_loop"] = {
        "rollouts": len(spans),
        "context": L,
        "horizon": horizon,
        "psnr_all": {k: float(psnr_of_mse(float(np.mean(m["mse"])))) for k, m in metrics.items()},
        "per_step": metrics,
        "windows": [[sequences[s].bag, t] for s, t in spans],
    }
    (out / "rssm.json").write_text(json.dumps(results, indent=1))
    _plot(metrics, out / "rssm_metrics.png")
    wm_eval.strip(rows, out / "rssm_strip.png")
    return results


def _plot(metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, m in metrics.items():
        steps = np.arange(1, len(m["psnr"]) + 1)
        ax.plot(steps, m["psnr"], "--" if name == "repeat_last" else "-", label=name)
    ax.set_xlabel("open-loop step (0.2 s)")
    ax.set_ylabel(f"PSNR of the step's MSE (dB, cap {PSNR_MAX_DB:g})")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Held-out open-loop rollouts: RSSM (decoded) vs diffusion")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    file = resolve_checkpoint(args.model)
    model, ckpt = load_rssm(file, None, device)  # the task it was trained for
    config = ckpt["config"]
    task = build(TaskConfig, config["task"], str(file), "task.")
    try:
        section = build(RSSMSection, config[SECTION], str(file), f"{SECTION}.")
    except KeyError:
        raise UserError(f"{file}: checkpoint lacks its training config") from None
    sequences = wm_eval.held_out(ckpt, list(args.bags), task)
    bf16 = use_bf16(section.train.bf16, device)
    if section.train.threads > 0:
        torch.set_num_threads(section.train.threads)
    reward_run = config.get("data", {}).get("reward")
    labels = None
    if reward_run:
        from dmo_ros.rewards.interface import load_reward

        labels = label_rewards(sequences, load_reward(reward_run, task))
    world_model = None
    if args.world_model:
        world_model, wm_ckpt, _ = wm_eval.load_model(args.world_model, device)
        if wm_ckpt.get("task") != task.name:
            raise UserError(f"{args.world_model}: a world model of task '{wm_ckpt.get('task')}'")
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    out = Path(args.out) if args.out else run_dir / "eval"
    results = evaluate(model, sequences, labels, section, out, bf16, world_model)
    parts = []
    if "one_step" in results:
        o = results["one_step"]
        parts.append(
            f"reward MAE {o['reward_mae_prior']:.3f} (prior) / {o['reward_mae_posterior']:.3f} "
            f"(posterior) vs {o['reward_mae_mean']:.3f} for the mean; KL {o['kl']:.2f}"
        )
    if isinstance(results.get("open_loop"), dict):
        p = results["open_loop"]["psnr_all"]
        parts.append("PSNR 1-H " + ", ".join(f"{k} {v:.2f} dB" for k, v in p.items()))
    print(f"rssm: {'; '.join(parts)} -> {out}")
    return 0
