"""EDM preconditioning and loss, the UNet's shapes, and the Karras schedule."""

import math

import pytest
import torch

from dmo_ros.worldmodels.diamond import DiamondConfig, DiamondWorldModel
from dmo_ros.worldmodels.edm import Denoiser, EDMConfig, conditioners
from dmo_ros.worldmodels.sampler import karras_sigmas
from dmo_ros.worldmodels.unet import UNet, UNetConfig

TINY = UNetConfig(channels=[8, 16], depths=[1, 1], cond_channels=16, stem_stride=2)


def test_conditioners_known_values():
    cfg = EDMConfig()  # sigma_data 0.5, offset noise 0.3
    c = conditioners(torch.tensor([0.4, 0.0]), cfg)
    # sigma 0.4 -> effective sqrt(0.16 + 0.09) = 0.5 = sigma_data
    assert c.c_skip[0].item() == pytest.approx(0.5)
    assert c.c_in[0].item() == pytest.approx(1 / math.sqrt(0.5))
    assert c.c_out[0].item() == pytest.approx(0.5 * math.sqrt(0.5))
    assert c.c_noise[0].item() == pytest.approx(math.log(0.5) / 4)
    # sigma 0 -> effective 0.3 (offset noise only)
    assert c.c_skip[1].item() == pytest.approx(0.25 / 0.34)
    assert c.c_out[1].item() == pytest.approx(0.3 * math.sqrt(0.25 / 0.34))
    assert c.c_in[1].item() == pytest.approx(1 / math.sqrt(0.34))


class IdealNet(torch.nn.Module):
    """F that outputs the EDM training target when the last past frame is the clean frame.

    It undoes the denoiser's input scaling from its own reading of the paper's formulas:
    σ_eff = exp(4 c_noise), c_in = 1/sqrt(σ_eff² + σ_d²), past frames scaled by 1/σ_d.
    """

    def __init__(self, cfg: EDMConfig):
        super().__init__()
        self.sd = cfg.sigma_data

    def forward(self, x, c_noise, actions, c_context=None):
        s = (4 * c_noise).exp()[:, None, None, None]
        total = s**2 + self.sd**2
        c_skip, noisy = self.sd**2 / total, x[:, :3] * total.sqrt()
        clean = x[:, -3:] * self.sd
        return (clean - c_skip * noisy) / (s * c_skip.sqrt())


def test_denoiser_scales_inputs_and_targets_as_edm_says():
    # With an F that knows the clean frame, the loss must be ~0 and D(x; σ) the clean frame;
    # a wrong c_in, c_noise, past scaling, target or skip term in edm.py breaks both.
    cfg = EDMConfig()
    denoiser = Denoiser(IdealNet(cfg), cfg)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8, generator=g) * 1.8 - 0.9
    past = torch.stack([torch.rand(6, 3, 8, 8, generator=g), x0], dim=1)
    actions = torch.zeros(6, 2, 2)
    loss, logs = denoiser.loss(x0, past, actions, torch.Generator().manual_seed(1))
    assert loss.item() < 1e-8 and logs["loss"] == pytest.approx(loss.item())
    sigma = torch.tensor([0.002, 0.05, 0.4, 1.0, 5.0, 20.0])
    noisy = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=g)
    assert torch.allclose(denoiser(noisy, sigma, past, actions), x0, atol=1e-4)
    # The same F on a past that does not hold the clean frame is far off: the check can fail.
    wrong = torch.stack([x0, -x0], dim=1)
    assert denoiser.loss(x0, wrong, actions, torch.Generator().manual_seed(1))[0].item() > 0.1


def test_training_sigma_is_lognormal_and_clipped():
    model = DiamondWorldModel(DiamondConfig(image_size=16, action_dim=2, unet=TINY))
    g = torch.Generator().manual_seed(0)
    sigma = model.denoiser.sample_training_sigma(50_000, torch.device("cpu"), g)
    assert sigma.min() >= 2e-3 and sigma.max() <= 20.0
    assert sigma.log().mean().item() == pytest.approx(-0.4, abs=0.03)
    assert sigma.log().std().item() == pytest.approx(1.2, abs=0.03)


def test_karras_schedule():
    s = karras_sigmas(3, 2e-3, 5.0, 7.0)
    assert len(s) == 4 and s[-1] == 0
    assert s[0].item() == pytest.approx(5.0) and s[-2].item() == pytest.approx(2e-3)
    assert bool((s[:-1] > s[1:]).all())
    mid = ((5.0 ** (1 / 7) + 2e-3 ** (1 / 7)) / 2) ** 7
    assert s[1].item() == pytest.approx(mid, rel=1e-5)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_unet_shapes_and_channels_last(stride):
    cfg = UNetConfig(channels=[8, 16], depths=[1, 2], cond_channels=16, stem_stride=stride)
    net = UNet(cfg, in_channels=15, out_channels=3, action_inputs=8)
    for p in net.head.parameters():  # the head starts at zero: make the output informative
        torch.nn.init.normal_(p, std=0.1)
    x, c_noise, actions = torch.randn(2, 15, 16, 16), torch.randn(2), torch.randn(2, 4, 2)
    y = net(x, c_noise, actions)
    assert y.shape == (2, 3, 16, 16)
    y_cl = net.to(memory_format=torch.channels_last)(x, c_noise, actions)
    assert torch.allclose(y, y_cl, atol=1e-5)


def test_model_config_validation():
    bad = DiamondConfig(image_size=30, action_dim=2, unet=TINY)  # 30 not divisible by 4
    assert "not divisible by 4" in bad.validate()
    with pytest.raises(ValueError):
        DiamondWorldModel(bad)
    assert UNetConfig(channels=[8], depths=[1, 1]).validate()
    assert UNetConfig(stem_stride=3).validate()


def test_loss_is_finite_and_one_step_lowers_it():
    torch.manual_seed(0)
    model = DiamondWorldModel(DiamondConfig(image_size=16, action_dim=2, unet=TINY))
    batch = {
        "frames": torch.randint(0, 256, (8, 5, 16, 16, 3), dtype=torch.uint8),
        "actions": torch.rand(8, 5, 2) * 2 - 1,
    }

    def loss():
        return model(batch, generator=torch.Generator().manual_seed(1))

    before, logs = loss()
    assert torch.isfinite(before) and logs["loss"] == pytest.approx(before.item())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before.backward()
    opt.step()
    after, _ = loss()
    assert after.item() < before.item()
