"""EDM denoiser (Karras et al. 2022) as DIAMOND uses it: preconditioning and training loss.

σ_eff = sqrt(σ² + σ_offset²)                (offset noise, DIAMOND)
c_in = 1/sqrt(σ_eff² + σ_data²)   c_skip = σ_data²/(σ_eff² + σ_data²)
c_out = σ_eff·sqrt(c_skip)         c_noise = ln(σ_eff)/4
D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise, past/σ_data, actions)
loss = ‖F(...) - (x₀ - c_skip·x)/c_out‖²,  ln σ ~ N(-0.4, 1.2²) clipped to [2e-3, 20]

Context-noise augmentation (GameNGen-style, against compounding error; off by default):
with `context_noise_max` > 0, training adds Gaussian noise of a level τ ~ U[0, max] (one
per sample) to the L past frames and gives F the level (c_context = τ/σ_data) through a
second Fourier embedding; sampling adds a fixed level (`sampler.context_noise`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmo_ros.worldmodels.unet import UNet


@dataclass
class EDMConfig:
    sigma_data: float = 0.5
    sigma_offset_noise: float = 0.3
    train_sigma_loc: float = -0.4
    train_sigma_scale: float = 1.2
    train_sigma_min: float = 2e-3
    train_sigma_max: float = 20.0
    # Context-noise augmentation: training noise level on the past frames ~ U[0, max] (in
    # the [-1, 1] pixel scale), given to the network; 0 = off (no extra embedding).
    context_noise_max: float = 0.0

    def validate(self, where: str = "edm") -> str | None:
        if self.context_noise_max < 0:
            return f"{where}.context_noise_max must be >= 0, got {self.context_noise_max}"
        return None


@dataclass
class Conditioners:
    c_in: Tensor
    c_out: Tensor
    c_skip: Tensor
    c_noise: Tensor


def conditioners(sigma: Tensor, cfg: EDMConfig) -> Conditioners:
    """The EDM scalings for noise levels `sigma` [B] (before the offset-noise correction)."""
    sigma = (sigma**2 + cfg.sigma_offset_noise**2).sqrt()
    total = sigma**2 + cfg.sigma_data**2
    c_skip = cfg.sigma_data**2 / total
    return Conditioners(
        c_in=total.rsqrt(),
        c_out=sigma * c_skip.sqrt(),
        c_skip=c_skip,
        c_noise=sigma.log() / 4,
    )


def _view(c: Tensor) -> Tensor:
    return c[:, None, None, None]


class Denoiser(nn.Module):
    """D(x; σ | past frames, past actions) around a UNet, with the EDM training loss."""

    def __init__(self, net: UNet, cfg: EDMConfig):
        super().__init__()
        self.net = net
        self.cfg = cfg

    @property
    def context_noise(self) -> bool:
        """Whether the network is conditioned on a context-noise level."""
        return self.cfg.context_noise_max > 0

    def network(
        self,
        noisy: Tensor,
        sigma: Tensor,
        past: Tensor,
        actions: Tensor,
        context_sigma: Tensor | None = None,
    ) -> Tensor:
        """F's raw output (float32). noisy [B,3,H,W], past [B,L,3,H,W], actions [B,L,A];
        context_sigma [B]: the noise level already on `past` (None: clean)."""
        c = conditioners(sigma, self.cfg)
        x = torch.cat([_view(c.c_in) * noisy, past.flatten(1, 2) / self.cfg.sigma_data], dim=1)
        c_context = None
        if self.context_noise:
            if context_sigma is None:
                context_sigma = sigma.new_zeros(sigma.shape)
            c_context = context_sigma / self.cfg.sigma_data
        elif context_sigma is not None and bool((context_sigma != 0).any()):
            raise ValueError("context noise on a model trained without it (edm.context_noise_max)")
        if c_context is None:  # off: the network's call as before the option existed
            return self.net(x, c.c_noise, actions).float()
        return self.net(x, c.c_noise, actions, c_context).float()

    def forward(
        self,
        noisy: Tensor,
        sigma: Tensor,
        past: Tensor,
        actions: Tensor,
        context_sigma: Tensor | None = None,
    ) -> Tensor:
        """The denoised estimate of the next frame, clamped to [-1, 1]."""
        c = conditioners(sigma, self.cfg)
        out = self.network(noisy, sigma, past, actions, context_sigma)
        return (_view(c.c_skip) * noisy + _view(c.c_out) * out).clamp(-1, 1)

    def noise_context(
        self, past: Tensor, level: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """`past` [B,L,3,H,W] plus Gaussian noise of std `level` [B]."""
        noise = torch.randn(past.shape, device=past.device, generator=generator)
        return past + level[:, None, None, None, None] * noise

    def sample_training_sigma(
        self, n: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        cfg = self.cfg
        z = torch.randn(n, device=device, generator=generator)
        sigma = (cfg.train_sigma_loc + cfg.train_sigma_scale * z).exp()
        return sigma.clamp(cfg.train_sigma_min, cfg.train_sigma_max)

    def loss(
        self,
        target: Tensor,
        past: Tensor,
        actions: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """EDM loss for next frames `target` [B,3,H,W] in [-1, 1]; returns (loss, logs)."""
        b, ch = target.shape[:2]
        sigma = self.sample_training_sigma(b, target.device, generator)
        offset = self.cfg.sigma_offset_noise * torch.randn(
            b, ch, 1, 1, device=target.device, generator=generator
        )
        noise = torch.randn(target.shape, device=target.device, generator=generator)
        noisy = target + offset + _view(sigma) * noise
        context_sigma = None
        if self.context_noise:  # drawn after the frame noise: off, the old random stream
            context_sigma = self.cfg.context_noise_max * torch.rand(
                b, device=target.device, generator=generator
            )
            past = self.noise_context(past, context_sigma, generator)
        c = conditioners(sigma, self.cfg)
        out = self.network(noisy, sigma, past, actions, context_sigma)
        goal = (target - _view(c.c_skip) * noisy) / _view(c.c_out)
        loss = F.mse_loss(out, goal)
        return loss, {"loss": loss.item()}
