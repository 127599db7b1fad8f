"""The intent reward (paper Section III-D-2): intent = 1, play = 0, plus a bonus at a milestone.

Labels per frame: r_t = intent_t + milestone_bonus * milestone_t, from the operator's intent
button and milestone key (play_data.py). Until the Push Cube world model carries its own
reward token, a small image classifier on those labels stands in (and stays as a baseline):
the CNN of encoder.py and an MLP with two logits, intent and milestone, each trained with
binary cross-entropy on frames drawn uniformly from the play data. The reward of a frame is
p(intent) + milestone_bonus * p(milestone): the expected label under the classifier.
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
from dmo_ros.rewards.encoder import (
    Encoder,
    EncoderConfig,
    check_frames,
    mlp,
    random_shift,
    to_model,
)

KIND = "reward/intent"
SAMPLES = 10**9  # a Dataset "length": item i is the frame a generator seeded by i picks


@dataclass
class IntentConfig:
    image_size: int
    milestone_bonus: float = 1.0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    hidden: list[int] = field(default_factory=lambda: [256])
    augment_shift: int = 4  # training frames shifted by up to this many pixels (0: off)

    def validate(self) -> str | None:
        problem = self.encoder.validate(self.image_size, "intent.encoder")
        if problem:
            return problem
        if self.augment_shift < 0:
            return "intent.augment_shift must be >= 0"
        if not all(h > 0 for h in self.hidden) or self.milestone_bonus < 0.0:
            return "intent: hidden sizes must be positive and milestone_bonus >= 0"
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "checkpoint") -> IntentConfig:
        return build(cls, data, source)


def frame_rewards(intent: np.ndarray, milestone: np.ndarray, bonus: float) -> np.ndarray:
    """The per-frame label reward r = intent + bonus * milestone (float32 [N])."""
    return intent.astype(np.float32) + bonus * milestone.astype(np.float32)


def check_labels(sequences) -> None:
    """Refuse (one line) play data whose intent label never changes."""
    on = sum(int(np.count_nonzero(s.intent)) for s in sequences)
    total = sum(len(s) for s in sequences)
    bags = ", ".join(sorted({str(s.bag) for s in sequences}))
    if on == 0:
        raise UserError(
            f"intent reward: no intent labels in {bags} (no 'intent' topic, or never on): "
            "record with the intent button, or train a ranking reward"
        )
    if on == total:
        raise UserError(f"intent reward: the intent is on in every step of {bags}: no play")


class IntentReward(nn.Module):
    def __init__(self, cfg: IntentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.encoder, cfg.image_size)
        self.head = mlp([cfg.encoder.embed_dim, *cfg.hidden, 2])

    def logits(self, frames: Tensor) -> Tensor:
        """Frames [B,3,H,W] in [-1, 1] -> logits [B,2] (intent, milestone)."""
        return self.head(self.encoder(frames))

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None = None):
        """BCE on both labels; batch from `IntentFrames`."""
        z = self.logits(random_shift(to_model(batch["frame"]), self.cfg.augment_shift, generator))
        target = torch.stack([batch["intent"], batch["milestone"]], -1).float()
        losses = F.binary_cross_entropy_with_logits(z, target, reduction="none").mean(0)
        loss = losses.sum()
        accuracy = ((z[:, 0] > 0) == batch["intent"].bool()).float().mean()
        logs = {"loss": float(loss.detach()), "intent_loss": float(losses[0].detach())}
        logs |= {"milestone_loss": float(losses[1].detach()), "accuracy": float(accuracy)}
        return loss, logs

    @torch.no_grad()
    def probabilities(self, frames: Tensor) -> Tensor:
        """[B,2]: p(intent), p(milestone)."""
        check_frames(frames, self.cfg.image_size)
        return torch.sigmoid(self.logits(frames))

    @torch.no_grad()
    def reward(self, frames: Tensor, start: Tensor | None = None) -> Tensor:
        """p(intent) + bonus * p(milestone) per frame [B] (`start` is not used)."""
        p = self.probabilities(frames)
        return p[:, 0] + self.cfg.milestone_bonus * p[:, 1]


class IntentFrames(Dataset):
    """Item i: the frame (uint8 [H,W,3]) and its labels at a step drawn uniformly over all
    steps by a generator seeded by (seed, i), so a resumed run draws the same items."""

    def __init__(self, sequences, seed: int = 0) -> None:
        self.sequences, self.seed = list(sequences), seed
        self.ends = np.cumsum([len(s) for s in self.sequences])
        if not len(self.ends) or self.ends[-1] == 0:
            raise UserError("intent reward: no play data")

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        k = int(np.random.default_rng([self.seed, int(i)]).integers(self.ends[-1]))
        si = int(np.searchsorted(self.ends, k, "right"))
        seq, t = self.sequences[si], k - (int(self.ends[si - 1]) if si else 0)
        return {
            "frame": torch.from_numpy(np.array(seq.frames[t])),
            "intent": torch.tensor(bool(seq.intent[t])),
            "milestone": torch.tensor(bool(seq.milestone[t])),
        }
