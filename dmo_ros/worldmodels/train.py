"""`dmo-ros train world-model`: fit the DIAMOND-style global world model on play-data bags.

The loop (optimiser, EMA, bf16, DDP, checkpoints, exact resume) is `training/loop.py`.

Several processes (GPUs, or CPU processes with gloo):
    torchrun --nproc_per_node=N -m dmo_ros.cli train world-model --bags ... --out ...
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from dmo_ros.config import build
from dmo_ros.errors import UserError
from dmo_ros.task import TaskConfig
from dmo_ros.training import loop
from dmo_ros.training.device import autocast
from dmo_ros.training.logger import Progress
from dmo_ros.training.loop import TrainConfig, Trainee, collate, fixed_items
from dmo_ros.training.run_folder import load_sections, open_run
from dmo_ros.worldmodels.diamond import KIND, DiamondConfig, DiamondWorldModel, frames_to_model
from dmo_ros.worldmodels.edm import EDMConfig
from dmo_ros.worldmodels.sampler import SamplerConfig
from dmo_ros.worldmodels.unet import UNetConfig

SECTION = "world_model"


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
    data, source = load_sections(config, preset, sets, ("task", SECTION))
    task = build(TaskConfig, data["task"], source, "task.")
    section = build(WorldModelSection, data[SECTION], source, f"{SECTION}.")
    problem = section.model_config(task).validate()
    if problem:
        raise UserError(f"{source}: {SECTION}: {problem}")
    plain = {"task": data["task"], SECTION: data[SECTION]}
    return Resolved(task, section, plain, source)


def fit(
    resolved: Resolved,
    train_data: Dataset,
    val_data: Dataset | None,
    out: str | Path,
    resume: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
) -> dict[str, float]:
    """Train until `train.steps` (training/loop.py); returns the last logged scalars."""
    model_cfg = resolved.section.model_config(resolved.task)
    trainee = Trainee(
        kind=KIND,
        task=resolved.task.name,
        make_model=lambda: DiamondWorldModel(model_cfg),
        model_config=model_cfg.to_dict(),
        config=resolved.data,
        desc="world model",
        images=_samples,
    )
    cfg = resolved.section.train
    return loop.fit(trainee, cfg, train_data, val_data, out, resume, device, progress)


@torch.no_grad()
def _samples(model: DiamondWorldModel, data: Dataset, dev, bf16: bool, n: int = 4) -> torch.Tensor:
    """[n, 3, 3, H, W]: last context frame, real next frame, sampled next frame."""
    batch = collate([data[i] for i in fixed_items(data, n)], dev)
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
    run_folder = open_run(args)
    run_folder.announce("world model")
    resolved = resolve_config(args.config, run_folder.preset, getattr(args, "set", []))
    train_data, val_data = load_windows(run_folder.bags, resolved)
    cfg = resolved.section.train
    data_info = {
        "bags": [str(b) for b in run_folder.bags],
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
    }
    resolved.data = {"preset": run_folder.preset, **resolved.data, "data": data_info}
    run_folder.write_config(resolved.data)
    last = fit(
        resolved,
        train_data,
        val_data,
        run_folder.out,
        resume=args.resume,
        device=args.device,
        progress=getattr(args, "progress", None),
    )
    run_folder.done("world model", cfg.steps, last)
    return 0
