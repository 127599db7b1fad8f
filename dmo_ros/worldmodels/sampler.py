"""Few-step sampling of the next frame: Euler (or Heun) on a Karras noise schedule, no churn."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from dmo_ros.worldmodels.edm import Denoiser


@dataclass
class SamplerConfig:
    steps: int = 3
    method: Literal["euler", "heun"] = "euler"
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    # Context-noise augmentation at sampling time: the fixed noise level added to the past
    # frames for each imagined frame (needs a model trained with edm.context_noise_max >= it;
    # 0 = clean context, as before).
    context_noise: float = 0.0

    def validate(self, where: str = "sampler") -> str | None:
        if self.steps < 1:
            return f"{where}.steps must be at least 1, got {self.steps}"
        if not 0 < self.sigma_min < self.sigma_max:
            return f"{where}: need 0 < sigma_min < sigma_max"
        if self.context_noise < 0:
            return f"{where}.context_noise must be >= 0, got {self.context_noise}"
        return None


def karras_sigmas(
    steps: int, sigma_min: float, sigma_max: float, rho: float, device: torch.device | None = None
) -> Tensor:
    """`steps` noise levels from sigma_max down to sigma_min (Karras ρ-spacing), then 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float().to(device)


@torch.no_grad()
def sample_next_frame(
    denoiser: Denoiser,
    past: Tensor,
    actions: Tensor,
    cfg: SamplerConfig,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The next frame [B,3,H,W] in [-1, 1] given past frames [B,L,3,H,W] and actions [B,L,A]."""
    b, _, ch, h, w = past.shape
    sigmas = karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho, past.device)
    x = torch.randn((b, ch, h, w), device=past.device, generator=generator) * sigmas[0]
    # Context noise: one noisy copy of the past for all denoising steps of this frame (the
    # state keeps the clean frames); a model trained with it is told the level, also when 0.
    kw = {}
    if denoiser.context_noise:
        level = past.new_full((b,), cfg.context_noise, dtype=torch.float32)
        if cfg.context_noise > 0:
            past = denoiser.noise_context(past, level, generator)
        kw["context_sigma"] = level
    elif cfg.context_noise > 0:
        raise ValueError(
            "sampler.context_noise > 0 needs a model trained with edm.context_noise_max > 0"
        )
    for sigma, next_sigma in itertools.pairwise(sigmas):
        denoised = denoiser(x, sigma.expand(b), past, actions, **kw)
        d = (x - denoised) / sigma
        x_next = x + d * (next_sigma - sigma)
        if cfg.method == "heun" and next_sigma > 0:
            denoised_2 = denoiser(x_next, next_sigma.expand(b), past, actions, **kw)
            d_2 = (x_next - denoised_2) / next_sigma
            x_next = x + (d + d_2) / 2 * (next_sigma - sigma)
        x = x_next
    return x.clamp(-1, 1)
