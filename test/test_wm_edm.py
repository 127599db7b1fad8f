"""EDM preconditioning and loss, the UNet's shapes, and the Karras schedule."""

import math

import pytest
import torch

from dmo_ros.worldmodels.diamond import DiamondConfig, DiamondWorldModel
from dmo_ros.worldmodels.edm import EDMConfig, conditioners
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


def test_perfect_network_output_recovers_the_clean_frame():
    # D = c_skip x + c_out F with F equal to the training target gives back x0 exactly.
    cfg = EDMConfig()
    sigma = torch.tensor([0.01, 0.7, 5.0])
    x0 = torch.rand(3, 3, 8, 8) * 2 - 1
    noisy = x0 + sigma[:, None, None, None] * torch.randn_like(x0)
    c = conditioners(sigma, cfg)
    v = lambda t: t[:, None, None, None]  # noqa: E731
    target = (x0 - v(c.c_skip) * noisy) / v(c.c_out)
    assert torch.allclose(v(c.c_skip) * noisy + v(c.c_out) * target, x0, atol=1e-5)


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
