"""The batched global-model interface (init/step), the context roll, and the sampler."""

import pytest
import torch

from dmo_ros.worldmodels.diamond import (
    DiamondConfig,
    DiamondWorldModel,
    frames_to_model,
    frames_to_uint8,
)
from dmo_ros.worldmodels.sampler import SamplerConfig, sample_next_frame
from dmo_ros.worldmodels.unet import UNetConfig

L, A, S = 4, 2, 16


def model(steps: int = 3, method: str = "euler") -> DiamondWorldModel:
    torch.manual_seed(0)
    cfg = DiamondConfig(
        image_size=S,
        action_dim=A,
        context=L,
        unet=UNetConfig(channels=[8, 16], depths=[1, 1], cond_channels=16, stem_stride=2),
        sampler=SamplerConfig(steps=steps, method=method),
    )
    m = DiamondWorldModel(cfg).eval()
    for p in m.parameters():  # zero-initialised layers (identity blocks, head): wake them up
        if not p.any():
            torch.nn.init.normal_(p, std=0.2)
    return m


def context(b: int = 3):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, L, 3, S, S, generator=g) * 2 - 1, torch.rand(b, L, A, generator=g) * 2 - 1


def count_calls(m: DiamondWorldModel) -> list:
    calls = []
    m.denoiser.register_forward_hook(lambda mod, args, out: calls.append(args))
    return calls


def test_init_step_shapes_and_range():
    m = model()
    frames, actions = context()
    state = m.init(frames, actions)
    frame, state = m.step(state, torch.zeros(3, A))
    assert frame.shape == (3, 3, S, S) and frame.dtype == torch.float32
    assert frame.min() >= -1 and frame.max() <= 1
    assert state.frames.shape == (3, L, 3, S, S) and state.actions.shape == (3, L, A)


def test_init_rejects_wrong_shapes():
    m = model()
    frames, actions = context()
    with pytest.raises(ValueError):
        m.init(frames[:, :3], actions)
    with pytest.raises(ValueError):
        m.init(frames, actions[..., :1])


def test_state_rolls_the_context_and_conditions_on_the_given_action():
    m = model()
    frames, actions = context()
    calls = count_calls(m)
    state = m.init(frames, actions)
    a1 = torch.full((3, A), 0.5)
    frame, state1 = m.step(state, a1)
    # Conditioning: the L frames as given; the recorded actions with the last one replaced.
    _, _, past, cond_actions = calls[0]
    assert torch.equal(past, frames)
    assert torch.equal(cond_actions[:, :-1], actions[:, :-1])
    assert torch.equal(cond_actions[:, -1], a1)
    # The new state drops the oldest frame and appends the generated one.
    assert torch.equal(state1.frames[:, :-1], frames[:, 1:])
    assert torch.equal(state1.frames[:, -1], frame)
    a2 = torch.full((3, A), -0.25)
    calls.clear()
    m.step(state1, a2)
    _, _, past, cond_actions = calls[0]
    assert torch.equal(past, state1.frames)
    assert torch.equal(cond_actions[:, :-2], actions[:, 1:-1])
    assert torch.equal(cond_actions[:, -2], a1)
    assert torch.equal(cond_actions[:, -1], a2)


def test_actions_change_the_generated_frame():
    m = model()
    frames, actions = context()
    state = m.init(frames, actions)
    f_plus, _ = m.step(state, torch.ones(3, A), generator=torch.Generator().manual_seed(0))
    f_same, _ = m.step(state, torch.ones(3, A), generator=torch.Generator().manual_seed(0))
    f_minus, _ = m.step(state, -torch.ones(3, A), generator=torch.Generator().manual_seed(0))
    assert torch.equal(f_plus, f_same)  # seeded: reproducible
    assert (f_plus - f_minus).abs().mean() > 1e-3


@pytest.mark.parametrize(
    ("steps", "method", "calls"), [(3, "euler", 3), (1, "euler", 1), (3, "heun", 5)]
)
def test_sampler_steps_and_clamp(steps, method, calls):
    m = model(steps, method)
    frames, actions = context()
    seen = count_calls(m)
    out = sample_next_frame(m.denoiser, frames, actions, m.cfg.sampler)
    assert out.shape == (3, 3, S, S)
    assert len(seen) == calls  # Heun: two evaluations per step except the last (to sigma 0)
    assert out.min() >= -1 and out.max() <= 1
    sigmas = [args[1][0].item() for args in seen]
    assert sigmas[0] == pytest.approx(5.0)
    assert sigmas == sorted(sigmas, reverse=True)


def test_frame_conversions_round_trip():
    u8 = torch.randint(0, 256, (2, 5, S, S, 3), dtype=torch.uint8)
    x = frames_to_model(u8)
    assert x.shape == (2, 5, 3, S, S) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(frames_to_uint8(x), u8)
