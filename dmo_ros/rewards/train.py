"""`dmo-ros train reward`: fit the task's learned reward (`reward.kind` in its config) on bags.

ranking (Push-T, Eq. 3): Bradley-Terry on the time order of frames between a start and a
(hindsight) goal, then standardised over training frames with the task's goal image(s)
(written into the last checkpoint when training ends). intent (Push Cube): a classifier of
the operator's intent and milestone labels. The loop (optimiser, EMA, checkpoints, exact
resume, TensorBoard, DDP) is `training/loop.py`, as for the world model.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from dmo_ros.config import build
from dmo_ros.errors import UserError
from dmo_ros.rewards import intent, ranking
from dmo_ros.rewards.encoder import EncoderConfig
from dmo_ros.rewards.goal import goal_images
from dmo_ros.rewards.ranking import PairConfig, RankingSamples, Span
from dmo_ros.task import TaskConfig
from dmo_ros.training import loop
from dmo_ros.training.checkpoint import load_checkpoint, save_checkpoint
from dmo_ros.training.logger import Progress
from dmo_ros.training.loop import TrainConfig, Trainee
from dmo_ros.training.run_folder import load_sections, open_run

SECTION = "reward"


@dataclass
class RankingSection:
    goal_image: str = "sim"  # sim (the simulated table renders it) or an image file / folder
    goal_renders: int = 8  # sim: pusher places in the rendered goal images
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    hidden: list[int] = field(default_factory=lambda: [1000, 1000, 1000])
    start_dropout: float = 0.2
    pairs: PairConfig = field(default_factory=PairConfig)
    norm_samples: int = 256  # samples (of pairs.frames frames) behind the reward's mean / std


@dataclass
class IntentSection:
    milestone_bonus: float = 1.0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    hidden: list[int] = field(default_factory=lambda: [256])
    augment_shift: int = 4


@dataclass
class EvalConfig:
    samples: int = 500  # ranking: held-out samples whose frame pairs are ranked
    batch_size: int = 256  # frames per forward pass
    plot_segments: int = 6  # held-out task segments drawn in the plot
    seed: int = 0


@dataclass
class RewardSection:
    kind: Literal["ranking", "intent"]
    train: TrainConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    ranking: RankingSection = field(default_factory=RankingSection)
    intent: IntentSection = field(default_factory=IntentSection)


@dataclass
class Resolved:
    task: TaskConfig
    section: RewardSection
    data: dict[str, Any]  # plain {"task": ..., "reward": ...}, written as <out>/config.yaml
    source: str
    goals: np.ndarray | None = None  # ranking: uint8 [K,S,S,3]

    @property
    def kind(self) -> str:
        return ranking.KIND if self.section.kind == "ranking" else intent.KIND

    def model_config(self) -> ranking.RankingConfig | intent.IntentConfig:
        s, size = self.section, self.task.image_size
        if s.kind == "ranking":
            r = s.ranking
            count = 1 if self.goals is None else len(self.goals)
            return ranking.RankingConfig(size, count, r.encoder, r.hidden, r.start_dropout)
        i = s.intent
        return intent.IntentConfig(size, i.milestone_bonus, i.encoder, i.hidden, i.augment_shift)

    def make_model(self):
        cfg = self.model_config()
        if isinstance(cfg, intent.IntentConfig):
            return intent.IntentReward(cfg)
        model = ranking.RankingReward(cfg)
        model.set_goals(self.goals)
        return model


def resolve_config(config: str | Path, preset: str | None, sets: list[str] = ()) -> Resolved:
    """Task and reward sections of a config file after the preset and `--set` overrides; for
    a ranking reward also its goal images (a missing one is a UserError)."""
    data, source = load_sections(config, preset, sets, ("task", SECTION))
    task = build(TaskConfig, data["task"], source, "task.")
    section = build(RewardSection, data[SECTION], source, f"{SECTION}.")
    resolved = Resolved(task, section, {"task": data["task"], SECTION: data[SECTION]}, source)
    if section.kind == "ranking":
        problem = section.ranking.pairs.validate()
        if section.ranking.goal_renders < 1:
            problem = "ranking.goal_renders must be at least 1"
        if problem:
            raise UserError(f"{source}: {SECTION}: {problem}")
        r = section.ranking
        resolved.goals = goal_images(r.goal_image, task, r.goal_renders, source)
    problem = resolved.model_config().validate()
    if problem:
        raise UserError(f"{source}: {SECTION}: {problem}")
    return resolved


def task_spans(sequences, ground_truth: bool = False) -> list[Span]:
    """The task segments (intent spans, play_data.task_segments) as ranking spans. Whether
    one succeeded comes from its milestone (the operator's label) only, unless `ground_truth`
    (evaluation): then also from the simulator's task/success."""
    from dmo_ros.data.play_data import task_segments

    spans = []
    for si, seq in enumerate(sequences):
        if not ground_truth:
            seq = dataclasses.replace(seq, success=np.zeros(len(seq), bool))
        spans += [Span(si, s.start, s.end, s.succeeded) for s in task_segments(seq)]
    return spans


def datasets(resolved: Resolved, train_seqs, val_seqs) -> tuple[Dataset, Dataset | None]:
    s, seed = resolved.section, resolved.section.train.seed
    if s.kind == "intent":
        intent.check_labels(train_seqs)
        make = lambda seqs, k: intent.IntentFrames(seqs, seed + k)  # noqa: E731
    else:
        pairs = s.ranking.pairs
        make = lambda seqs, k: RankingSamples(seqs, task_spans(seqs), pairs, seed + k)  # noqa: E731
    val = None
    if val_seqs:
        try:
            val = make(val_seqs, 1)
        except UserError:  # held-out part too short for a sample: train without validation
            val = None
    return make(train_seqs, 0), val


def fit(
    resolved: Resolved,
    train_data: Dataset,
    val_data: Dataset | None,
    out: str | Path,
    resume: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
) -> dict[str, float]:
    """Train until `train.steps` (training/loop.py), then (ranking) set the reward's
    normalisation in the last checkpoint; returns the last logged scalars."""
    trainee = Trainee(
        kind=resolved.kind,
        task=resolved.task.name,
        make_model=resolved.make_model,
        model_config=resolved.model_config().to_dict(),
        config=resolved.data,
        desc=f"{resolved.section.kind} reward",
    )
    cfg = resolved.section.train
    last = loop.fit(trainee, cfg, train_data, val_data, out, resume, device, progress)
    if resolved.section.kind == "ranking" and int(os.environ.get("RANK", "0")) == 0:
        normalise(Path(out), resolved, train_data)
    return last


def normalise(out: Path, resolved: Resolved, train_data: Dataset) -> None:
    """Mean / std of the EMA model's f over training frames, with the goal images, into the
    last checkpoint (and its step_<N>.pt twin)."""
    last = out / "checkpoints" / "last.pt"
    payload = load_checkpoint(last, kind=ranking.KIND, task=resolved.task.name)
    model = ranking.RankingReward(resolved.model_config())
    model.load_state_dict(payload["ema"]["module"])
    model.eval().set_normalisation(train_data, resolved.section.ranking.norm_samples)
    for state in (payload["model"], payload["ema"]["module"]):
        state["norm"], state["norm_frames"] = model.norm.clone(), model.norm_frames.clone()
    save_checkpoint(out / "checkpoints" / f"step_{payload['step']}.pt", payload)
    save_checkpoint(last, payload)


def load_data(bags: list[str], resolved: Resolved) -> tuple[Dataset, Dataset | None]:
    """Train / validation samples from bags (split by bag, or in time for one)."""
    from dmo_ros.data.play_data import load_play_data, split_sequences

    cfg = resolved.section.train
    sequences = load_play_data(bags, resolved.task)
    train, val = split_sequences(sequences, cfg.val_fraction, cfg.seed)
    return datasets(resolved, train, val)


def run(args: argparse.Namespace) -> int:
    run_folder = open_run(args)
    resolved = resolve_config(args.config, run_folder.preset, getattr(args, "set", []))
    name = f"{resolved.section.kind} reward"
    run_folder.announce(name)
    train_data, val_data = load_data(run_folder.bags, resolved)
    cfg = resolved.section.train
    data_info = {
        "bags": [str(b) for b in run_folder.bags],
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
    }
    resolved.data = {"preset": run_folder.preset, **resolved.data, "data": data_info}
    run_folder.write_config(resolved.data)
    progress = getattr(args, "progress", None)
    last = fit(resolved, train_data, val_data, run_folder.out, args.resume, args.device, progress)
    run_folder.done(name, cfg.steps, last)
    return 0
