"""Image similarity in torch on frames in [0, 1]: MSE, PSNR and SSIM.

SSIM follows Wang et al. 2004 (11x11 Gaussian window, σ 1.5, K1 0.01, K2 0.03, data
range 1, population variances, mean over valid windows and channels), which is what
scikit-image's `structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)` computes. The range matters: on [-1, 1]
frames the luminance term (2μaμb + C1)/(μa² + μb² + C1) collapses near mid-grey, where
the means are near 0.

PSNR is 10·log10(1 / MSE) of a mean squared error (callers average the MSE first, then
convert), capped at PSNR_MAX_DB where the frames are (almost) identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# One grey level of error on every pixel is 48.1 dB; 60 dB is below 1/4 level RMS.
PSNR_MAX_DB = 60.0


def to_unit(frames: Tensor) -> Tensor:
    """Model frames in [-1, 1] -> [0, 1] (float32)."""
    return frames.float().add(1).div(2)


def mse(a: Tensor, b: Tensor) -> Tensor:
    """Per-image mean squared error of [N,C,H,W] batches (float64)."""
    return (a.double() - b.double()).pow(2).flatten(1).mean(1)


def psnr_of_mse(err: Tensor | float, max_db: float = PSNR_MAX_DB) -> Tensor:
    """PSNR in dB of mean squared errors of [0, 1] images, capped at `max_db`."""
    err = torch.as_tensor(err, dtype=torch.float64)
    floor = 10 ** (-max_db / 10)
    return 10 * torch.log10(1 / err.clamp_min(floor))


def _gaussian(size: int, sigma: float, device: torch.device) -> Tensor:
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    a: Tensor, b: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5
) -> Tensor:
    """Per-image mean SSIM of [N,C,H,W] batches in [0, 1] (valid windows, channels averaged)."""
    # float64: the variances are differences of nearly equal blurred moments.
    a, b = a.double(), b.double()
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
