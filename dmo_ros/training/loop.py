"""The one training loop of every model: a model brings its loss, its config and its data.

AdamW with linear warm-up, gradient clipping, EMA weights (the ones used for sampling and
evaluation), bf16 autocast where the hardware has it, DDP under torchrun, atomic checkpoints
(`<out>/checkpoints/step_<N>.pt`, `last.pt`) and an exact `--resume`: each step's batch and
noise come from generators seeded by (seed, step, rank), so a resumed run draws exactly what
the uninterrupted one would have.

The model's `forward(batch, generator=...)` returns `(loss, logs)` with `logs["loss"]` a float.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from dmo_ros.errors import UserError
from dmo_ros.training import distributed
from dmo_ros.training.checkpoint import config_mismatch, load_checkpoint, save_checkpoint
from dmo_ros.training.device import autocast, use_bf16
from dmo_ros.training.ema import EMA
from dmo_ros.training.logger import Progress, RunLogger


@dataclass
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    grad_clip: float
    ema_decay: float
    bf16: bool | str
    channels_last: bool
    threads: int  # CPU threads for torch; 0: torch's default (all cores)
    val_fraction: float
    seed: int
    log_every: int
    image_every: int
    checkpoint_every: int


# (EMA model, data, device, bf16) -> images [rows, cols, 3, H, W] in [-1, 1] for TensorBoard
Images = Callable[[nn.Module, Dataset, torch.device, bool], torch.Tensor]


@dataclass
class Trainee:
    """What a model brings to the loop."""

    kind: str  # checkpoint kind, e.g. "diamond_world_model"
    task: str  # task name, checked on resume and by every reader
    make_model: Callable[[], nn.Module]  # called after seeding, so every rank starts alike
    model_config: dict[str, Any]  # plain data that rebuilds the model
    config: dict[str, Any]  # the resolved run config, stored in every checkpoint
    desc: str  # progress-bar label
    images: Images | None = None


def collate(items: list[dict[str, torch.Tensor]], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}


def step_seeds(seed: int, step: int, rank: int) -> tuple[int, int]:
    """Two independent seeds for (batch indices, model noise) of one step of one process."""
    a, b = np.random.SeedSequence([seed, step, rank]).generate_state(2)
    return int(a), int(b)


def fit(
    trainee: Trainee,
    cfg: TrainConfig,
    train_data: Dataset,
    val_data: Dataset | None,
    out: str | Path,
    resume: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
) -> dict[str, float]:
    """Train until `cfg.steps`; returns the last logged scalars. Joins DDP under torchrun."""
    info = distributed.setup(device)
    try:
        return _fit(trainee, cfg, train_data, val_data, Path(out), resume, info, progress)
    finally:
        distributed.teardown(info)


def _fit(trainee, cfg, train_data, val_data, out, resume, info, progress) -> dict[str, float]:
    dev = info.device
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    model = trainee.make_model().to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt_dir = out / "checkpoints"
    step = 0
    if resume:
        step = _restore(ckpt_dir / "last.pt", trainee, model, ema, opt)
    elif (ckpt_dir / "last.pt").exists():
        raise UserError(f"{out}: already holds a trained run (pass --resume, or another --out)")
    ddp_model = distributed.wrap(model, info)
    bf16 = use_bf16(cfg.bf16, dev)
    log = RunLogger(out, cfg.steps, step, info.is_main, progress, desc=trainee.desc)
    last: dict[str, float] = {}
    rate_from = step  # the step at which the logging window (loss mean, frames/s) started
    sums: dict[str, float] = {}
    try:
        while step < cfg.steps:
            seed_idx, seed_noise = step_seeds(cfg.seed, step, info.rank)
            picker = torch.Generator().manual_seed(seed_idx)
            idx = torch.randint(len(train_data), (cfg.batch_size,), generator=picker)
            batch = collate([train_data[int(i)] for i in idx], dev)
            noise = torch.Generator(device=dev).manual_seed(seed_noise)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            with autocast(dev, bf16):
                loss, logs = ddp_model(batch, generator=noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            ema.update(model)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            step += 1
            log.step()
            if step % cfg.log_every == 0 or step == cfg.steps:
                scalars = {f"train/{k}": v / (step - rate_from) for k, v in sums.items()}
                scalars["train/grad_norm"] = float(grad_norm)
                scalars["train/lr"] = opt.param_groups[0]["lr"]
                scalars = distributed.mean_across(scalars, info)
                frames = cfg.batch_size * info.world_size * (step - rate_from)
                scalars["train/frames_per_s"] = log.rate(frames)
                rate_from, sums = step, {}
                if val_data is not None and info.is_main:
                    with _own_rng(dev):
                        val = _val_logs(ema.module, val_data, cfg, dev, bf16)
                    scalars.update({f"val/{k}": v for k, v in val.items()})
                log.scalars(step, scalars)
                last = scalars
            image_step = step % cfg.image_every == 0 or step == cfg.steps
            if trainee.images is not None and info.is_main and image_step:
                shown = val_data if val_data is not None else train_data
                with _own_rng(dev):
                    images = trainee.images(ema.module, shown, dev, bf16)
                log.images("val/samples", step, images)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                if info.is_main:
                    payload = {
                        "kind": trainee.kind,
                        "task": trainee.task,
                        "model_config": trainee.model_config,
                        "step": step,
                        "model": model.state_dict(),
                        "ema": ema.state_dict(),
                        "optimizer": opt.state_dict(),
                        "rng": {"torch": torch.get_rng_state()},
                        "config": trainee.config,
                    }
                    save_checkpoint(ckpt_dir / f"step_{step}.pt", payload)
                    save_checkpoint(ckpt_dir / "last.pt", payload)
                distributed.barrier(info)
    finally:
        log.close()
    return last


def _own_rng(dev: torch.device):
    """Evaluation draws from the global generator without moving it: a run that logs or
    checkpoints at other steps (a resumed one) still trains on the same random numbers."""
    return torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [])


def _restore(path: Path, trainee: Trainee, model, ema: EMA, opt) -> int:
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}")
    payload = load_checkpoint(path, kind=trainee.kind, task=trainee.task)
    diff = config_mismatch(payload["model_config"], trainee.model_config)
    if diff:
        raise UserError(f"{path}: checkpoint is of another model ({diff}); use another --out")
    model.load_state_dict(payload["model"])
    ema.load_state_dict(payload["ema"])
    opt.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["rng"]["torch"])
    return int(payload["step"])


def fixed_items(data: Dataset, n: int) -> list[int]:
    """n items spread evenly over `data`: the same ones at every logging step."""
    return torch.linspace(0, len(data) - 1, min(n, len(data))).long().tolist()


@torch.no_grad()
def _val_logs(model: nn.Module, data: Dataset, cfg: TrainConfig, dev, bf16: bool) -> dict:
    """EMA-model logs on a fixed validation batch with fixed noise (comparable across steps)."""
    batch = collate([data[i] for i in fixed_items(data, cfg.batch_size)], dev)
    with autocast(dev, bf16):
        _, logs = model(batch, generator=torch.Generator(device=dev).manual_seed(cfg.seed))
    return {k: float(v) for k, v in logs.items()}
