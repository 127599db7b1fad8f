"""The small image encoder both reward models use: strided 4x4 convolutions down to 4x4, then
a linear embedding (DreamerV3's 64x64 encoder shape at a smaller depth)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmo_ros.errors import UserError


@dataclass
class EncoderConfig:
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # one per halving
    embed_dim: int = 256

    def validate(self, image_size: int, where: str = "encoder") -> str | None:
        if not self.channels or min(self.channels) < 1 or self.embed_dim < 1:
            return f"{where}: channels and embed_dim must be positive"
        if image_size % (2 ** len(self.channels)) or image_size // 2 ** len(self.channels) < 1:
            return (
                f"{where}: image size {image_size} is not divisible by "
                f"2^{len(self.channels)} (one halving per channel entry)"
            )
        return None


class Encoder(nn.Module):
    """Frames [N,3,H,W] in [-1, 1] -> embeddings [N, embed_dim]."""

    def __init__(self, cfg: EncoderConfig, image_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in cfg.channels:
            # GroupNorm(1) is LayerNorm over (C, H, W): no batch statistics, so eval = train
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.GroupNorm(1, c), nn.SiLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        side = image_size // 2 ** len(cfg.channels)
        self.out = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, cfg.embed_dim))
        self.image_size = image_size

    def forward(self, frames: Tensor) -> Tensor:
        return self.out(self.convs(frames))


def check_frames(frames: Tensor, image_size: int, what: str = "frames") -> None:
    """Refuse (one line) frames that are not [B,3,S,S] at the model's image size."""
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise UserError(f"reward: {what} must be [B,3,H,W], got {list(frames.shape)}")
    if tuple(frames.shape[-2:]) != (image_size, image_size):
        h, w = frames.shape[-2:]
        raise UserError(
            f"reward: {what} are {h}x{w} pixels, the reward model takes {image_size}x{image_size}"
        )


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of `sizes` with ReLU between them (none after the last), as Rank2Reward's
    heads."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def random_shift(x: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """DrQ's augmentation: each image [N,C,H,W] shifted by up to `pad` pixels each way, the
    border repeated (the camera's small wobble; a small data set is then harder to memorise)."""
    if pad == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator, device=x.device)
    rows = (torch.arange(h, device=x.device) + dy)[:, None, :, None]
    cols = (torch.arange(w, device=x.device) + dx)[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    return padded[batch, torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def to_model(frames: Tensor) -> Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1] (as the world model's frames)."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)
