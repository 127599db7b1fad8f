"""`dmo-ros train world-model`: fit the DIAMOND-style global world model on play-data bags.

AdamW with linear warm-up, gradient clipping, EMA weights (used for sampling), bf16
autocast where the hardware has it, DDP under torchrun, atomic checkpoints
(`<out>/checkpoints/step_<N>.pt`, `last.pt`) and an exact `--resume`: each step's batch
and noise come from generators seeded by (seed, step, rank), so a resumed run draws
exactly what the uninterrupted one would have.

Several processes (GPUs, or CPU processes with gloo):
    torchrun --nproc_per_node=N -m dmo_ros.cli train world-model --bags ... --out ...
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from dmo_ros.config import apply_overrides, apply_preset, build, config_path, load_yaml
from dmo_ros.errors import UserError
from dmo_ros.task import TaskConfig
from dmo_ros.training import distributed
from dmo_ros.training.checkpoint import config_mismatch, load_checkpoint, save_checkpoint
from dmo_ros.training.device import autocast, resolve_preset, use_bf16
from dmo_ros.training.ema import EMA
from dmo_ros.training.logger import Progress, RunLogger
from dmo_ros.worldmodels.diamond import KIND, DiamondConfig, DiamondWorldModel, frames_to_model
from dmo_ros.worldmodels.edm import EDMConfig
from dmo_ros.worldmodels.sampler import SamplerConfig
from dmo_ros.worldmodels.unet import UNetConfig

SECTION = "world_model"


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


@dataclass
class EvalConfig:
    rollouts: int
    horizon: int
    batch_size: int
    response_contexts: int
    response_steps: int
    response_magnitude: float
    seed: int


@dataclass
class WorldModelSection:
    train: TrainConfig
    eval: EvalConfig
    context: int = 4
    unet: UNetConfig = field(default_factory=UNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def model_config(self, task: TaskConfig) -> DiamondConfig:
        return DiamondConfig(
            image_size=task.image_size,
            action_dim=task.action_dim,
            context=self.context,
            unet=self.unet,
            edm=self.edm,
            sampler=self.sampler,
        )


@dataclass
class Resolved:
    task: TaskConfig
    section: WorldModelSection
    data: dict[str, Any]  # plain {"task": ..., "world_model": ...}, written as <out>/config.yaml
    source: str


def resolve_config(config: str | Path, preset: str | None, sets: list[str] = ()) -> Resolved:
    """Task and world-model sections of a config file, after the preset and `--set` overrides."""
    path = config_path(config)
    source = str(path)
    data = apply_overrides(apply_preset(load_yaml(path), preset, source), list(sets))
    for key in ("task", SECTION):
        if key not in data:
            raise UserError(f"{source}: missing key '{key}'")
    task = build(TaskConfig, data["task"], source, "task.")
    section = build(WorldModelSection, data[SECTION], source, f"{SECTION}.")
    problem = section.model_config(task).validate()
    if problem:
        raise UserError(f"{source}: {SECTION}: {problem}")
    plain = {"task": data["task"], SECTION: data[SECTION]}
    return Resolved(task, section, plain, source)


def collate(items: list[dict[str, torch.Tensor]], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]).to(device) for k in ("frames", "actions")}


def step_seeds(seed: int, step: int, rank: int) -> tuple[int, int]:
    """Two independent seeds for (batch indices, diffusion noise) of one step of one process."""
    a, b = np.random.SeedSequence([seed, step, rank]).generate_state(2)
    return int(a), int(b)


def fit(
    resolved: Resolved,
    train_data: Dataset,
    val_data: Dataset | None,
    out: str | Path,
    resume: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
) -> dict[str, float]:
    """Train until `train.steps`; returns the last logged scalars. Joins DDP under torchrun."""
    info = distributed.setup(device)
    try:
        return _fit(resolved, train_data, val_data, Path(out), resume, info, progress)
    finally:
        distributed.teardown(info)


def _fit(resolved, train_data, val_data, out, resume, info, progress) -> dict[str, float]:
    task, section = resolved.task, resolved.section
    cfg = section.train
    dev = info.device
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    model_cfg = section.model_config(task)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    model = DiamondWorldModel(model_cfg).to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt_dir = out / "checkpoints"
    step = 0
    if resume:
        step = _restore(ckpt_dir / "last.pt", task, model_cfg, model, ema, opt)
    elif (ckpt_dir / "last.pt").exists():
        raise UserError(f"{out}: already holds a trained run (pass --resume, or another --out)")
    ddp_model = distributed.wrap(model, info)
    bf16 = use_bf16(cfg.bf16, dev)
    log = RunLogger(out, cfg.steps, step, info.is_main, progress, desc="world model")
    last: dict[str, float] = {}
    rate_from = step  # the step at which the logging window (loss mean, frames/s) started
    loss_sum = 0.0
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
            loss_sum += logs["loss"]
            step += 1
            log.step()
            if step % cfg.log_every == 0 or step == cfg.steps:
                scalars = {
                    "train/loss": loss_sum / (step - rate_from),
                    "train/grad_norm": float(grad_norm),
                    "train/lr": opt.param_groups[0]["lr"],
                }
                scalars = distributed.mean_across(scalars, info)
                frames = cfg.batch_size * info.world_size * (step - rate_from)
                scalars["train/frames_per_s"] = log.rate(frames)
                rate_from, loss_sum = step, 0.0
                if val_data is not None and info.is_main:
                    scalars["val/loss"] = _val_loss(ema.module, val_data, cfg, dev, bf16)
                log.scalars(step, scalars)
                last = scalars
            if info.is_main and (step % cfg.image_every == 0 or step == cfg.steps):
                shown = val_data if val_data is not None else train_data
                log.images("val/context_real_model", step, _samples(ema.module, shown, dev, bf16))
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                if info.is_main:
                    payload = {
                        "kind": KIND,
                        "task": task.name,
                        "model_config": model_cfg.to_dict(),
                        "step": step,
                        "model": model.state_dict(),
                        "ema": ema.state_dict(),
                        "optimizer": opt.state_dict(),
                        "rng": {"torch": torch.get_rng_state()},
                        "config": resolved.data,
                    }
                    save_checkpoint(ckpt_dir / f"step_{step}.pt", payload)
                    save_checkpoint(ckpt_dir / "last.pt", payload)
                distributed.barrier(info)
    finally:
        log.close()
    return last


def _restore(path: Path, task, model_cfg: DiamondConfig, model, ema: EMA, opt) -> int:
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}")
    payload = load_checkpoint(path, kind=KIND, task=task.name)
    diff = config_mismatch(payload["model_config"], model_cfg.to_dict())
    if diff:
        raise UserError(f"{path}: checkpoint is of another model ({diff}); use another --out")
    model.load_state_dict(payload["model"])
    ema.load_state_dict(payload["ema"])
    opt.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["rng"]["torch"])
    return int(payload["step"])


def _fixed_items(data: Dataset, n: int) -> list[int]:
    return torch.linspace(0, len(data) - 1, min(n, len(data))).long().tolist()


@torch.no_grad()
def _val_loss(model: DiamondWorldModel, data: Dataset, cfg: TrainConfig, dev, bf16: bool) -> float:
    """EMA-model loss on a fixed validation batch with fixed noise (comparable across steps)."""
    batch = collate([data[i] for i in _fixed_items(data, cfg.batch_size)], dev)
    with autocast(dev, bf16):
        loss, _ = model(batch, generator=torch.Generator(device=dev).manual_seed(cfg.seed))
    return float(loss)


@torch.no_grad()
def _samples(model: DiamondWorldModel, data: Dataset, dev, bf16: bool, n: int = 4) -> torch.Tensor:
    """[n, 3, 3, H, W]: last context frame, real next frame, sampled next frame."""
    batch = collate([data[i] for i in _fixed_items(data, n)], dev)
    L = model.cfg.context
    frames = frames_to_model(batch["frames"])
    state = model.init(frames[:, :L], batch["actions"][:, :L])
    with autocast(dev, bf16):
        pred, _ = model.step(state, batch["actions"][:, L - 1])
    return torch.stack([frames[:, L - 1], frames[:, L], pred.float()], dim=1)


def load_windows(bags: list[str], resolved: Resolved) -> tuple[Dataset, Dataset | None]:
    """Train/validation windows of L + 1 steps from bags (split by bag, or in time for one)."""
    from dmo_ros.data.play_data import load_play_data, split_sequences
    from dmo_ros.data.windows import WindowDataset

    cfg, length = resolved.section.train, resolved.section.context + 1
    sequences = load_play_data(bags, resolved.task)
    train, val = split_sequences(sequences, cfg.val_fraction, cfg.seed)
    val_data = None
    if val:
        try:
            val_data = WindowDataset(val, length)
        except UserError:  # held-out part too short for a window: train without validation
            val_data = None
    return WindowDataset(train, length), val_data


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    bags = list(args.bags)
    previous = load_yaml(out / "config.yaml") if (out / "config.yaml").is_file() else {}
    if not bags and args.resume:
        bags = previous.get("data", {}).get("bags", [])
    if not bags:
        raise UserError("--bags: give at least one play-data bag (or a folder of bags)")
    if not args.resume and (out / "checkpoints" / "last.pt").exists():
        raise UserError(f"{out}: already holds a trained run (pass --resume, or another --out)")
    if args.resume and not args.preset and previous.get("preset"):
        preset, why = previous["preset"], f"as recorded in {out / 'config.yaml'}"
    else:
        preset, why = resolve_preset(args.preset, args.device)
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        print(f"world model: preset {preset} ({why})", flush=True)
    resolved = resolve_config(args.config, preset, getattr(args, "set", []))
    train_data, val_data = load_windows(bags, resolved)
    cfg = resolved.section.train
    data_info = {"bags": [str(b) for b in bags], "val_fraction": cfg.val_fraction, "seed": cfg.seed}
    resolved.data = {"preset": preset, **resolved.data, "data": data_info}
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(resolved.data, sort_keys=False))
    last = fit(
        resolved,
        train_data,
        val_data,
        out,
        resume=args.resume,
        device=args.device,
        progress=getattr(args, "progress", None),
    )
    if main:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items())
        print(f"world model: {cfg.steps} steps -> {out / 'checkpoints' / 'last.pt'} ({shown})")
    return 0
