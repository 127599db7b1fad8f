"""`dmo-ros train rssm`: pretrain the local RSSM on play data (paper Section III-E).

Windows of `window` steps inside one segment; the reward head learns the labels of the
**global** reward (`--reward models/<run>`), computed once per step before training. The
loop is `training/loop.py`. `Finetune` is the online update on a replay buffer of generated
trajectories that DMO-SAPO calls between its imagination epochs.

Reward labels: the global reward of each frame, with the first frame of its play segment
as the episode start (the goal is the reward model's own: the task's goal image). With
`--reward sim` they are the simulated bags' recorded goal coverage (`task/coverage`): the
local model of DMO-SAPO's `--reward sim` oracle.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dmo_ros.config import build
from dmo_ros.data.play_data import PlaySequence
from dmo_ros.errors import UserError
from dmo_ros.task import TaskConfig
from dmo_ros.training import loop
from dmo_ros.training.device import autocast
from dmo_ros.training.logger import Progress
from dmo_ros.training.loop import TrainConfig, Trainee, collate, fixed_items
from dmo_ros.training.run_folder import load_sections, open_run
from dmo_ros.worldmodels.rssm import RSSM, RSSMConfig

SECTION = "rssm"
KIND = "rssm"


@dataclass
class EvalConfig:
    rollouts: int  # open-loop rollouts from held-out contexts (the world model's contexts)
    context: int  # real frames the RSSM filters before imagining
    horizon: int
    batch_size: int
    seed: int


@dataclass
class RSSMSection:
    window: int  # steps per training window (DreamerV3: 64)
    model: dict[str, Any]  # RSSMConfig without image_size / action_dim (from the task)
    train: TrainConfig
    eval: EvalConfig

    def model_config(self, task: TaskConfig, source: str = "config") -> RSSMConfig:
        data = {**self.model, "image_size": task.image_size, "action_dim": task.action_dim}
        return build(RSSMConfig, data, source, f"{SECTION}.model.")


class TrainableRSSM(RSSM):
    """The RSSM with the loop's calling convention; its state_dict is the RSSM's."""

    def forward(self, batch: dict[str, torch.Tensor], generator=None):
        # windows hold frames [B,T,H,W,3]; the straight-through samples draw from torch's
        # global generator, which the checkpoints save and restore (exact resume)
        batch = {**batch, "frames": batch["frames"].permute(0, 1, 4, 2, 3)}
        return self.loss(batch)


@dataclass
class Resolved:
    task: TaskConfig
    section: RSSMSection
    model: RSSMConfig
    data: dict[str, Any]
    source: str


def resolve_config(config: str | Path, preset: str | None, sets: list[str] = ()) -> Resolved:
    """Task and RSSM sections of a config file, after the preset and `--set` overrides."""
    data, source = load_sections(config, preset, sets, ("task", SECTION))
    task = build(TaskConfig, data["task"], source, "task.")
    section = build(RSSMSection, data[SECTION], source, f"{SECTION}.")
    model = section.model_config(task, source)
    problem = model.validate()
    if problem:
        raise UserError(f"{source}: {SECTION}.model: {problem}")
    if section.window < 2:
        raise UserError(f"{source}: {SECTION}.window must be at least 2, got {section.window}")
    return Resolved(task, section, model, {"task": data["task"], SECTION: data[SECTION]}, source)


class RewardWindows(Dataset):
    """Windows of play data (windows.py) with the per-step reward labels beside them."""

    def __init__(self, sequences: list[PlaySequence], rewards: list[np.ndarray], length: int):
        from dmo_ros.data.windows import WindowDataset

        self.windows = WindowDataset(sequences, length)
        self.rewards = rewards
        self.length = length

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.windows[i]
        si, start = self.windows.index[i]
        labels = self.rewards[si][int(start) : int(start) + self.length]
        return {
            "frames": item["frames"],
            "actions": item["actions"],
            "rewards": torch.from_numpy(labels),
        }


@torch.no_grad()
def label_rewards(sequences: list[PlaySequence], reward, batch: int = 256) -> list[np.ndarray]:
    """float32 [N] per sequence: reward(frame, start = the first frame of its segment)."""
    from dmo_ros.worldmodels.diamond import frames_to_model

    out = []
    for seq in sequences:
        seg = np.asarray(seq.segment)
        first = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        start_of = first[np.searchsorted(first, np.arange(len(seg)), side="right") - 1]
        labels = np.empty(len(seg), np.float32)
        for a in range(0, len(seg), batch):
            b = min(a + batch, len(seg))
            frames = frames_to_model(torch.from_numpy(np.array(seq.frames[a:b])))
            starts = frames_to_model(torch.from_numpy(np.array(seq.frames[start_of[a:b]])))
            labels[a:b] = reward(frames, starts).float().cpu().numpy()
        if not np.all(np.isfinite(labels)):
            raise UserError(f"{seq.bag}: the reward model gave non-finite labels")
        out.append(labels)
    return out


def fit(
    resolved: Resolved,
    train_data: Dataset,
    val_data: Dataset | None,
    out: str | Path,
    resume: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
) -> dict[str, float]:
    model_cfg = resolved.model
    trainee = Trainee(
        kind=KIND,
        task=resolved.task.name,
        make_model=lambda: TrainableRSSM(model_cfg),
        model_config=model_cfg.to_dict(),
        config=resolved.data,
        desc="rssm",
        images=_reconstructions if model_cfg.decoder else None,
    )
    cfg = resolved.section.train
    return loop.fit(trainee, cfg, train_data, val_data, out, resume, device, progress)


@torch.no_grad()
def _reconstructions(model: RSSM, data: Dataset, dev, bf16: bool, n: int = 4) -> torch.Tensor:
    """[n, 2, 3, H, W]: the last real frame of a window and its posterior's decoding."""
    batch = collate([data[i] for i in fixed_items(data, n)], dev)
    frames = batch["frames"].permute(0, 1, 4, 2, 3)
    with autocast(dev, bf16):
        posts, _ = model.observe_sequence(frames, batch["actions"])
        last = {k: v[:, -1] for k, v in posts.items()}
        decoded = model.decode(model.features(last)).float()
    real = frames[:, -1].float().div(127.5).sub(1.0)
    return torch.stack([real, decoded.clamp(-1, 1)], dim=1)


class Finetune:
    """Online RSSM updates on generated trajectories (DMO-SAPO's model mini-epochs).

    `update(replay, steps)` draws `steps` batches from the replay buffer (rl/replay.py) and
    takes one Adam step on each; the reward head keeps learning the global reward's labels.
    """

    def __init__(self, model: RSSM, lr: float, grad_clip: float, batch_size: int, seed: int = 0):
        self.model, self.grad_clip, self.batch_size = model, grad_clip, batch_size
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)

    def update(self, replay, steps: int, bf16: bool = False) -> dict[str, float]:
        """Mean logs of `steps` updates."""
        device = next(self.model.parameters()).device
        sums: dict[str, float] = {}
        self.model.train()
        for _ in range(steps):
            batch = {
                k: v.to(device) for k, v in replay.sample(self.batch_size, self.generator).items()
            }
            batch["frames"] = batch["frames"].permute(0, 1, 4, 2, 3)
            with autocast(device, bf16):
                loss, logs = self.model.loss(batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.opt.step()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
        return {k: v / max(1, steps) for k, v in sums.items()}


def load_rssm(path: str | Path, task: TaskConfig | None, device: torch.device) -> tuple[RSSM, dict]:
    """The EMA weights of a trained RSSM run (folder or checkpoint) for `task` (None: the
    task it was trained for, from its config) and the checkpoint."""
    from dmo_ros.training.checkpoint import load_checkpoint, resolve_checkpoint

    file = resolve_checkpoint(path)
    ckpt = load_checkpoint(file, kind=KIND, task=None if task is None else task.name)
    if task is None:
        try:
            task = build(TaskConfig, ckpt["config"]["task"], str(file), "task.")
        except KeyError:
            raise UserError(f"{file}: checkpoint lacks its training config") from None
    cfg = RSSMConfig.from_dict(ckpt["model_config"], str(file))
    if cfg.image_size != task.image_size or cfg.action_dim != task.action_dim:
        raise UserError(
            f"{file}: RSSM for {cfg.image_size}px frames and {cfg.action_dim}-d actions, the "
            f"task has {task.image_size}px and {task.action_dim}-d"
        )
    model = RSSM(cfg)
    try:
        model.load_state_dict(ckpt["ema"]["module"])
    except (KeyError, RuntimeError) as exc:
        raise UserError(f"{file}: checkpoint does not fit its model ({str(exc)[:120]})") from None
    return model.to(device).eval(), ckpt


def sim_labels(sequences: list[PlaySequence]) -> list[np.ndarray]:
    """float32 [N] per sequence: the simulator's goal coverage recorded at each step."""
    out = []
    for seq in sequences:
        cov = np.asarray(seq.coverage, np.float32)
        if not np.all(np.isfinite(cov)):
            raise UserError(
                f"{seq.bag}: --reward sim needs the simulator's task/coverage at every step "
                "(a bag of the simulated robot)"
            )
        out.append(cov)
    return out


def load_data(bags, resolved: Resolved, reward) -> tuple[Dataset, Dataset | None]:
    """Train/validation reward-labelled windows (split by bag, or in time for one bag)."""
    from dmo_ros.data.play_data import load_play_data, split_sequences

    cfg = resolved.section.train
    sequences = load_play_data(bags, resolved.task)
    size = sequences[0].frames.shape[1]
    if size != resolved.task.image_size:
        raise UserError(f"play data frames are {size}px, the task wants {resolved.task.image_size}")
    train, val = split_sequences(sequences, cfg.val_fraction, cfg.seed)
    length = resolved.section.window

    def labels(seqs: list[PlaySequence]) -> list[np.ndarray]:
        return sim_labels(seqs) if reward == "sim" else label_rewards(seqs, reward)

    train_data, val_data = RewardWindows(train, labels(train), length), None
    if val:
        val_labels = labels(val)
        try:
            val_data = RewardWindows(val, val_labels, length)
        except UserError:  # held-out part too short for a window: train without validation
            val_data = None
    return train_data, val_data


def run(args: argparse.Namespace) -> int:
    run_folder = open_run(args)
    reward_run = args.reward or (
        run_folder.previous.get("data", {}).get("reward") if args.resume else None
    )
    if not reward_run:
        raise UserError(
            "--reward: give the trained reward run whose labels the RSSM learns "
            "(or sim: the simulated bags' goal coverage)"
        )
    run_folder.announce("rssm")
    resolved = resolve_config(args.config, run_folder.preset, getattr(args, "set", []))
    reward = "sim"
    if reward_run != "sim":
        from dmo_ros.rewards.interface import load_reward

        reward = load_reward(reward_run, resolved.task)
    train_data, val_data = load_data(run_folder.bags, resolved, reward)
    cfg = resolved.section.train
    data_info = {
        "bags": [str(b) for b in run_folder.bags],
        "reward": str(reward_run),
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
    }
    resolved.data = {"preset": run_folder.preset, **resolved.data, "data": data_info}
    run_folder.write_config(resolved.data)
    progress = getattr(args, "progress", None)
    last = fit(resolved, train_data, val_data, run_folder.out, args.resume, args.device, progress)
    run_folder.done("rssm", cfg.steps, last)
    return 0
