"""Image similarity in torch: PSNR and SSIM (Wang et al. 2004: 11x11 Gaussian, σ 1.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(a: Tensor, b: Tensor, data_range: float = 2.0) -> Tensor:
    """Per-image PSNR in dB of [N,C,H,W] batches (default range: images in [-1, 1])."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-10))


def _gaussian(size: int, sigma: float, device: torch.device) -> Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    a: Tensor, b: Tensor, data_range: float = 2.0, window: int = 11, sigma: float = 1.5
) -> Tensor:
    """Per-image mean SSIM of [N,C,H,W] batches (valid windows, channels averaged)."""
    a, b = a.float(), b.float()
    ch = a.shape[1]
    g = _gaussian(window, sigma, a.device)
    # Separable Gaussian filter, one per channel.
    kx = g.view(1, 1, 1, window).repeat(ch, 1, 1, 1)
    ky = g.view(1, 1, window, 1).repeat(ch, 1, 1, 1)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(x, kx, groups=ch), ky, groups=ch)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return s.flatten(1).mean(1)
