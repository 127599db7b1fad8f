"""Eq. (3): a goal-conditioned energy f(s | s_start, s_goal) learned from the time order of play.

Rank2Reward-style: within one temporal sequence, from a start frame towards a (hindsight) goal
frame, later frames should score higher. Eq. (3) is the Bradley-Terry likelihood of the true
order, P(i later than j) = σ(f(s_i) - f(s_j)); training minimises its negative log. A sample
ranks M frames of one sequence at once (start and goal encoded once, M(M-1)/2 pairs), which
is what makes the cpu preset affordable.

Network: one small CNN (encoder.py) embeds s, s_start and s_goal; an MLP on
[e(s), e(s_start), e(s_goal)] gives f. The start is replaced by a learned "no start"
embedding with probability `start_dropout` in training, so the reward also works without one.

As a reward (interface.py) the goal is the task's goal image(s), stored in the model as a
buffer: with several (renders with the pusher at different places), f is averaged over them,
so where the pusher is in the goal image does not decide the reward. f is then standardised
by its mean and std over training frames with those goals (`set_normalisation`, stored too).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from dmo_ros.config import build
from dmo_ros.errors import UserError
from dmo_ros.rewards.encoder import Encoder, EncoderConfig, check_frames, mlp, to_model

KIND = "reward/ranking"
SAMPLES = 10**9  # a Dataset "length": item i is drawn from a generator seeded by i


@dataclass
class RankingConfig:
    image_size: int
    goal_count: int = 1  # goal images kept in the model (scores averaged over them)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    hidden: list[int] = field(default_factory=lambda: [1000, 1000, 1000])  # Rank2Reward's heads
    start_dropout: float = 0.2

    def validate(self) -> str | None:
        problem = self.encoder.validate(self.image_size, "ranking.encoder")
        if problem:
            return problem
        if self.goal_count < 1 or not all(h > 0 for h in self.hidden):
            return "ranking: goal_count and hidden sizes must be positive"
        if not 0.0 <= self.start_dropout < 1.0:
            return f"ranking.start_dropout must be in [0, 1), got {self.start_dropout}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "checkpoint") -> RankingConfig:
        return build(cls, data, source)


def bradley_terry_loss(f_i: Tensor, f_j: Tensor, i_later: Tensor) -> Tensor:
    """-log P(true order) per pair: -log σ(f_i - f_j) if i is later, else -log σ(f_j - f_i)."""
    return F.binary_cross_entropy_with_logits(f_i - f_j, i_later.float(), reduction="none")


def pair_labels(t: Tensor) -> tuple[Tensor, Tensor]:
    """For times t [B,M]: (i_later [B,M,M]: t_i > t_j; used [B,M,M]: each pair once, i < j by
    position, equal times left out)."""
    later = t[:, :, None] > t[:, None, :]
    m = t.shape[1]
    upper = torch.ones(m, m, dtype=torch.bool, device=t.device).triu(1)
    used = upper & (t[:, :, None] != t[:, None, :])
    return later, used


class RankingReward(nn.Module):
    def __init__(self, cfg: RankingConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.encoder.embed_dim
        self.encoder = Encoder(cfg.encoder, cfg.image_size)
        self.head = mlp([3 * e, *cfg.hidden, 1])
        self.no_start = nn.Parameter(torch.zeros(e))
        size = cfg.image_size
        self.register_buffer("goals", torch.zeros(cfg.goal_count, size, size, 3, dtype=torch.uint8))
        self.register_buffer("norm", torch.tensor([0.0, 1.0]))  # mean, std of f with the goals
        self.register_buffer("norm_frames", torch.tensor(0))  # frames behind `norm`; 0: not set

    def energy(self, e_s: Tensor, e_start: Tensor, e_goal: Tensor) -> Tensor:
        """f for embeddings e_s [B,M,E], e_start [B,E], e_goal [B,E] -> [B,M]."""
        ctx = torch.cat([e_start, e_goal], -1)[:, None].expand(-1, e_s.shape[1], -1)
        return self.head(torch.cat([e_s, ctx], -1)).squeeze(-1)

    def sample_energy(self, batch: dict[str, Tensor], drop: Tensor | None = None) -> Tensor:
        """f [B,M] of each sample's frames given its own start and goal (`RankingSamples`);
        `drop` [B] bool: those samples get the "no start" embedding instead."""
        b, m = batch["t"].shape
        x = torch.cat([batch["start"], batch["goal"], batch["frames"].flatten(0, 1)])
        e = self.encoder(to_model(x))
        e_start, e_goal, e_s = e[:b], e[b : 2 * b], e[2 * b :].view(b, m, -1)
        if drop is not None:
            e_start = torch.where(drop[:, None], self.no_start.expand_as(e_start), e_start)
        return self.energy(e_s, e_start, e_goal)

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None = None):
        """Bradley-Terry loss on every pair of a sample's frames; batch from `RankingSamples`."""
        t = batch["t"]
        b, m = t.shape
        drop = torch.rand(b, generator=generator, device=t.device) < self.cfg.start_dropout
        f = self.sample_energy(batch, drop)
        later, used = pair_labels(t)
        f_i, f_j = f[:, :, None].expand(-1, -1, m)[used], f[:, None, :].expand(-1, m, -1)[used]
        loss = bradley_terry_loss(f_i, f_j, later[used]).mean()
        accuracy = ((f_i > f_j) == later[used]).float().mean()
        return loss, {"loss": float(loss.detach()), "accuracy": float(accuracy)}

    def _embed(self, frames: Tensor) -> Tensor:
        check_frames(frames, self.cfg.image_size)
        return self.encoder(frames)

    @torch.no_grad()
    def raw(self, frames: Tensor, start: Tensor | None = None, goals: Tensor | None = None):
        """f(frames | start, goal) averaged over the goal frames; frames, start [B,3,H,W] and
        goals [K,3,H,W] (default: the stored goal images) in [-1, 1] -> [B]."""
        goals = to_model(self.goals) if goals is None else goals
        e_s = self._embed(frames)
        e_start = self.no_start.expand_as(e_s) if start is None else self._embed(start)
        e_goal = self._embed(goals)
        k, b = len(e_goal), len(e_s)
        f = self.energy(
            e_s.repeat(k, 1)[:, None], e_start.repeat(k, 1), e_goal.repeat_interleave(b, 0)
        )
        return f.view(k, b).mean(0)

    @torch.no_grad()
    def reward(self, frames: Tensor, start: Tensor | None = None) -> Tensor:
        if int(self.norm_frames) == 0:
            raise UserError("ranking reward: not normalised yet (finish its training: --resume)")
        return (self.raw(frames, start) - self.norm[0]) / self.norm[1]

    def set_goals(self, goals: np.ndarray) -> None:
        """Goal images uint8 [K,H,W,3] (K = goal_count)."""
        g = torch.as_tensor(np.ascontiguousarray(goals), dtype=torch.uint8)
        if g.shape != self.goals.shape:
            raise UserError(
                f"ranking reward: goal images {list(g.shape)}, expected {list(self.goals.shape)}"
            )
        self.goals.copy_(g)

    @torch.no_grad()
    def set_normalisation(self, data: Dataset, samples: int) -> None:
        """Mean and std of f over the frames of `data`'s first `samples` items, each with its
        sampled start and the stored goals (not the items' own goals)."""
        device = self.no_start.device
        values = []
        for i in range(samples):
            item = data[i]
            frames = to_model(item["frames"].to(device))
            start = to_model(item["start"].to(device))[None].expand_as(frames)
            values.append(self.raw(frames, start))
        f = torch.cat(values)
        self.norm.copy_(torch.stack([f.mean(), f.std().clamp_min(1e-6)]))
        self.norm_frames.fill_(len(f))


@dataclass
class PairConfig:
    frames: int = 8  # frames ranked per sample: M(M-1)/2 pairs
    task_fraction: float = 0.5  # samples from task segments (intent spans); the rest: windows
    success_weight: float = 4.0  # a successful task segment is drawn this much more often
    min_span: int = 4  # steps from start to goal, at least ...
    max_span: int = 150  # ... and at most (generic windows; 30 s at 5 Hz)

    def validate(self) -> str | None:
        if self.frames < 2 or self.min_span < 2 or self.max_span < self.min_span:
            return "ranking.pairs: frames and min_span >= 2, max_span >= min_span"
        if not 0.0 <= self.task_fraction <= 1.0 or self.success_weight <= 0.0:
            return "ranking.pairs: task_fraction in [0, 1], success_weight > 0"
        return None


@dataclass
class Span:
    seq: int
    start: int  # first step
    end: int  # last step + 1
    succeeded: bool = False


def segment_spans(sequences) -> list[Span]:
    """The continuous segments (between gaps, resets and bag ends) of the play data."""
    spans = []
    for si, seq in enumerate(sequences):
        seg = np.asarray(seq.segment)
        cuts = np.flatnonzero(np.diff(seg)) + 1
        spans += [Span(si, int(a), int(b)) for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(seg)])]
    return spans


class _Weighted:
    """Draw spans with probability proportional to their weight."""

    def __init__(self, spans: list[Span], weights: list[float]) -> None:
        self.spans = spans
        self.cum = np.cumsum(weights)

    def draw(self, rng: np.random.Generator) -> Span:
        return self.spans[int(np.searchsorted(self.cum, rng.random() * self.cum[-1], "right"))]


class RankingSamples(Dataset):
    """Item i (from a generator seeded by (seed, i), so a resumed run draws the same items):
    {"start", "goal": uint8 [H,W,3], "frames": uint8 [M,H,W,3], "t": int64 [M] steps after
    the start, "task": bool, from a task segment}; the frames lie between start and goal
    (inclusive), in random order.

    With probability `task_fraction` (when the data has task segments) the sample is one task
    segment, start = its first step and goal = its last (a successful segment, drawn
    `success_weight` times more often, ends on the task's goal); otherwise a window of
    `min_span`..`max_span` steps of one play segment (hindsight: its last frame is the goal).
    """

    def __init__(self, sequences, tasks: list[Span], cfg: PairConfig, seed: int = 0) -> None:
        self.sequences, self.cfg, self.seed = list(sequences), cfg, seed
        windows = [s for s in segment_spans(self.sequences) if s.end - s.start >= cfg.min_span]
        if not windows:
            raise UserError(f"ranking reward: no play segment of {cfg.min_span} steps or more")
        self.windows = _Weighted(windows, [s.end - s.start for s in windows])
        tasks = [s for s in tasks if s.end - s.start >= cfg.min_span]
        weights = [(s.end - s.start) * (cfg.success_weight if s.succeeded else 1.0) for s in tasks]
        self.tasks = _Weighted(tasks, weights) if tasks else None

    def __len__(self) -> int:
        return SAMPLES

    def span(self, rng: np.random.Generator) -> tuple[int, int, int, bool]:
        """(sequence, start step, goal step, from a task segment) of one sample."""
        if self.tasks is not None and rng.random() < self.cfg.task_fraction:
            s = self.tasks.draw(rng)
            return s.seq, s.start, s.end - 1, True
        s = self.windows.draw(rng)
        longest = min(self.cfg.max_span, s.end - s.start)
        length = int(rng.integers(self.cfg.min_span, longest + 1))
        a = int(rng.integers(s.start, s.end - length + 1))
        return s.seq, a, a + length - 1, False

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, int(i)])
        si, a, b, task = self.span(rng)
        m = self.cfg.frames
        t = rng.choice(b - a + 1, size=m, replace=b - a + 1 < m)
        frames = self.sequences[si].frames
        return {
            "start": torch.from_numpy(np.array(frames[a])),
            "goal": torch.from_numpy(np.array(frames[b])),
            "frames": torch.from_numpy(np.array(frames[a + t])),
            "t": torch.from_numpy(t.astype(np.int64)),
            "task": torch.tensor(task),
        }
