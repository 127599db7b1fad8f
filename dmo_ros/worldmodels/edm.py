"""EDM denoiser (Karras et al. 2022) as DIAMOND uses it: preconditioning and training loss.

σ_eff = sqrt(σ² + σ_offset²)                (offset noise, DIAMOND)
c_in = 1/sqrt(σ_eff² + σ_data²)   c_skip = σ_data²/(σ_eff² + σ_data²)
c_out = σ_eff·sqrt(c_skip)         c_noise = ln(σ_eff)/4
D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise, past/σ_data, actions)
loss = ‖F(...) - (x₀ - c_skip·x)/c_out‖²,  ln σ ~ N(-0.4, 1.2²) clipped to [2e-3, 20]
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

    def network(self, noisy: Tensor, sigma: Tensor, past: Tensor, actions: Tensor) -> Tensor:
        """F's raw output (float32). noisy [B,3,H,W], past [B,L,3,H,W], actions [B,L,A]."""
        c = conditioners(sigma, self.cfg)
        x = torch.cat([_view(c.c_in) * noisy, past.flatten(1, 2) / self.cfg.sigma_data], dim=1)
        return self.net(x, c.c_noise, actions).float()

    def forward(self, noisy: Tensor, sigma: Tensor, past: Tensor, actions: Tensor) -> Tensor:
        """The denoised estimate of the next frame, clamped to [-1, 1]."""
        c = conditioners(sigma, self.cfg)
        out = self.network(noisy, sigma, past, actions)
        return (_view(c.c_skip) * noisy + _view(c.c_out) * out).clamp(-1, 1)

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
        c = conditioners(sigma, self.cfg)
        out = self.network(noisy, sigma, past, actions)
        goal = (target - _view(c.c_skip) * noisy) / _view(c.c_out)
        loss = F.mse_loss(out, goal)
        return loss, {"loss": loss.item()}
