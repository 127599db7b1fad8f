"""DIAMOND-style global world model: EDM diffusion on the next frame given L past frames/actions.

Implements `GlobalWorldModel` (interface.py): `init(frames, actions)` keeps the last L
frames and actions in a `DiamondState`; `step(state, action)` samples the next frame
with a few Euler steps and rolls the context. `forward(batch)` is the training loss on
windows of L + 1 steps from `WindowDataset`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from dmo_ros.config import build
from dmo_ros.worldmodels.edm import Denoiser, EDMConfig
from dmo_ros.worldmodels.sampler import SamplerConfig, sample_next_frame
from dmo_ros.worldmodels.unet import UNet, UNetConfig

KIND = "world_model/diamond"


@dataclass
class DiamondConfig:
    image_size: int
    action_dim: int
    context: int = 4
    unet: UNetConfig = field(default_factory=UNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def validate(self) -> str | None:
        """A one-line problem with this config, or None."""
        problem = (
            self.unet.validate("unet")
            or self.edm.validate("edm")
            or self.sampler.validate("sampler")
        )
        if problem:
            return problem
        if self.sampler.context_noise > self.edm.context_noise_max:
            return (
                f"sampler.context_noise {self.sampler.context_noise} is above the training "
                f"range edm.context_noise_max {self.edm.context_noise_max}"
            )
        if self.context < 1 or self.action_dim < 1:
            return "context and action_dim must be positive"
        if self.image_size % self.unet.downsampling:
            return (
                f"image size {self.image_size} is not divisible by {self.unet.downsampling}, "
                f"the world model's downsampling (stem_stride x 2^(levels-1))"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "checkpoint") -> DiamondConfig:
        return build(cls, data, source)


@dataclass
class DiamondState:
    frames: Tensor  # [B,L,3,H,W] in [-1, 1], oldest first
    actions: Tensor  # [B,L,A]; actions[:, i] was issued after frames[:, i]


def frames_to_model(frames: Tensor) -> Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)


def frames_to_uint8(frames: Tensor) -> Tensor:
    """float [..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3]."""
    return frames.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(-3, -1)


class DiamondWorldModel(nn.Module):
    kind = KIND

    def __init__(self, cfg: DiamondConfig):
        super().__init__()
        problem = cfg.validate()
        if problem:
            raise ValueError(problem)
        self.cfg = cfg
        in_channels = 3 * (cfg.context + 1)  # past frames and the noisy next frame, on channels
        net = UNet(
            cfg.unet,
            in_channels,
            3,
            cfg.context * cfg.action_dim,
            context_noise=cfg.edm.context_noise_max > 0,
        )
        self.denoiser = Denoiser(net, cfg.edm)

    # -- training -----------------------------------------------------------------------
    def forward(
        self, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """EDM loss on a batch of windows: frames uint8 [B,T,H,W,3], actions [B,T,A], T > L."""
        frames, actions = batch["frames"], batch["actions"]
        L = self.cfg.context
        if frames.shape[1] <= L:
            raise ValueError(f"windows of {frames.shape[1]} steps: need at least {L + 1}")
        x = frames_to_model(frames[:, : L + 1])
        return self.denoiser.loss(x[:, L], x[:, :L], actions[:, :L].float(), generator)

    # -- GlobalWorldModel ---------------------------------------------------------------
    @torch.no_grad()
    def init(self, frames: Tensor, actions: Tensor) -> DiamondState:
        L = self.cfg.context
        b = frames.shape[0]
        if frames.shape[1:] != (L, 3, self.cfg.image_size, self.cfg.image_size):
            raise ValueError(
                f"frames must be [B,{L},3,{self.cfg.image_size},{self.cfg.image_size}], "
                f"got {list(frames.shape)}"
            )
        if actions.shape != (b, L, self.cfg.action_dim):
            raise ValueError(f"actions must be [B,{L},{self.cfg.action_dim}], got {actions.shape}")
        return DiamondState(frames.float(), actions.float())

    @torch.no_grad()
    def step(
        self, state: DiamondState, action: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, DiamondState]:
        action = action.to(state.actions.dtype)[:, None]
        actions = torch.cat([state.actions[:, :-1], action], dim=1)
        frame = sample_next_frame(
            self.denoiser, state.frames, actions, self.cfg.sampler, generator=generator
        )
        # Roll the context; the new last action slot holds `action` until the next step
        # replaces it (it is never used as conditioning before that).
        frames = torch.cat([state.frames[:, 1:], frame[:, None]], dim=1)
        return frame, DiamondState(frames, torch.cat([actions[:, 1:], action], dim=1))
