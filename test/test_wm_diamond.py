"""The batched global-model interface (init/step), the context roll, and the sampler."""

import hashlib

import pytest
import torch

from dmo_ros.worldmodels.diamond import (
    DiamondConfig,
    DiamondWorldModel,
    frames_to_model,
    frames_to_uint8,
)
from dmo_ros.worldmodels.edm import EDMConfig
from dmo_ros.worldmodels.sampler import SamplerConfig, sample_next_frame
from dmo_ros.worldmodels.unet import SelfAttention, UNetConfig

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


# -- options for the fidelity variants (issue 9): defaults are the first version ----------


def variant(**opts) -> DiamondWorldModel:
    """The test model with UNet/EDM/sampler options, all its weights woken up."""
    unet = {"channels": [8, 16], "depths": [1, 1], "cond_channels": 16, "stem_stride": 2}
    torch.manual_seed(0)
    cfg = DiamondConfig(
        image_size=S,
        action_dim=A,
        context=L,
        unet=UNetConfig(**{**unet, **opts.get("unet", {})}),
        edm=EDMConfig(**opts.get("edm", {})),
        sampler=SamplerConfig(**opts.get("sampler", {})),
    )
    m = DiamondWorldModel(cfg).eval()
    for p in m.parameters():
        if not p.any():
            torch.nn.init.normal_(p, std=0.2)
    return m


def test_defaults_reproduce_the_first_version_exactly():
    # Golden values from the model before attention and context noise existed (commit
    # f2ba47c, this machine's torch): same parameter names, same sample, same loss.
    m = model()
    keys = sorted(m.state_dict())
    assert len(keys) == 70
    assert hashlib.sha1(",".join(keys).encode()).hexdigest() == (
        "5e486afc7a2a26697261c7911f92bb539367aa17"
    )
    assert not any("attn" in k or "context_noise" in k for k in keys)
    frames, actions = context()
    state = m.init(frames, actions)
    f, _ = m.step(state, torch.full((3, A), 0.3), generator=torch.Generator().manual_seed(0))
    assert f.sum().item() == pytest.approx(-276.9898681640625, abs=1e-3)
    assert f.abs().sum().item() == pytest.approx(1370.527587890625, abs=1e-3)
    g = torch.Generator().manual_seed(2)
    batch = {
        "frames": torch.randint(0, 256, (2, 5, S, S, 3), dtype=torch.uint8, generator=g),
        "actions": torch.ones(2, 5, A),
    }
    loss, _ = m.train()(batch, generator=torch.Generator().manual_seed(3))
    assert loss.item() == pytest.approx(3.5101077556610107, rel=1e-5)


def test_a_checkpoint_config_without_the_new_keys_builds_the_same_model():
    old = {
        "image_size": S,
        "action_dim": A,
        "context": L,
        "unet": {"channels": [8, 16], "depths": [1, 1], "cond_channels": 16, "stem_stride": 2},
        "edm": {"sigma_data": 0.5, "sigma_offset_noise": 0.3},
        "sampler": {"steps": 3, "method": "euler"},
    }
    cfg = DiamondConfig.from_dict(old)
    assert not cfg.unet.mid_attention and cfg.unet.attention == []
    assert cfg.edm.context_noise_max == 0 and cfg.sampler.context_noise == 0
    new_cfg = model().cfg
    torch.manual_seed(0)
    a = DiamondWorldModel(cfg)
    torch.manual_seed(0)
    b = DiamondWorldModel(new_cfg)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_self_attention_block_shapes_gradients_and_identity_start():
    torch.manual_seed(0)
    block = SelfAttention(24, 16, head_dim=8)
    assert block.heads == 3
    x, cond = torch.randn(2, 24, 4, 4, requires_grad=True), torch.randn(2, 16)
    assert torch.equal(block(x, cond), x)  # zero output projection: the identity
    torch.nn.init.normal_(block.out.weight, std=0.2)
    y = block(x, cond)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert SelfAttention(12, 16, head_dim=8).heads == 1  # heads divide the channels
    assert SelfAttention(96, 16, head_dim=8).heads == 12


def test_attention_options_add_blocks_and_change_the_output():
    frames, actions = context()
    a = torch.full((3, A), 0.3)
    m = variant(unet={"mid_attention": True, "attention": [False, True]})
    names = [k for k in m.state_dict() if ".attn." in k]
    assert any(k.startswith("denoiser.net.mid.0.attn.") for k in names)
    assert any(k.startswith("denoiser.net.mid.1.attn.") for k in names)
    assert any(k.startswith("denoiser.net.down.1.0.attn.") for k in names)
    assert any(k.startswith("denoiser.net.up.0.0.attn.") for k in names)  # up[0]: deepest level
    assert not any(k.startswith(("denoiser.net.down.0", "denoiser.net.up.1")) for k in names)
    f1, _ = m.step(m.init(frames, actions), a, generator=torch.Generator().manual_seed(0))
    for mod in m.modules():
        if isinstance(mod, SelfAttention):
            torch.nn.init.zeros_(mod.out.weight)
            torch.nn.init.zeros_(mod.out.bias)
    f0, _ = m.step(m.init(frames, actions), a, generator=torch.Generator().manual_seed(0))
    assert (f1 - f0).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="one flag per level"):
        variant(unet={"attention": [True]})


def test_context_noise_level_conditions_the_network():
    m = variant(edm={"context_noise_max": 0.5})
    assert "denoiser.net.context_noise_emb.weight" in m.state_dict()
    frames, actions = context()
    noisy, sigma = torch.randn(3, 3, S, S), torch.full((3,), 0.7)
    d = m.denoiser
    out0 = d.network(noisy, sigma, frames, actions)
    assert torch.equal(out0, d.network(noisy, sigma, frames, actions, torch.zeros(3)))
    out1 = d.network(noisy, sigma, frames, actions, torch.full((3,), 0.3))
    assert (out1 - out0).abs().mean() > 1e-3
    # A model without the option refuses a level rather than ignoring it.
    with pytest.raises(ValueError, match="context noise"):
        model().denoiser.network(noisy, sigma, frames, actions, torch.full((3,), 0.3))


def test_sampling_time_context_noise_reaches_step_and_open_loop():
    from dmo_ros.worldmodels.evaluate import open_loop

    frames, actions = context()
    for level in (0.0, 0.2):
        m = variant(edm={"context_noise_max": 0.5}, sampler={"context_noise": level})
        calls = []
        m.denoiser.register_forward_hook(
            lambda mod, args, kwargs, out, c=calls: c.append((args, kwargs)), with_kwargs=True
        )
        state = m.init(frames, actions)
        m.step(state, torch.zeros(3, A), generator=torch.Generator().manual_seed(0))
        assert len(calls) == 3
        pasts = [args[2] for args, _ in calls]
        for args, kwargs in calls:
            assert torch.equal(kwargs["context_sigma"], torch.full((3,), level))
            assert torch.equal(args[2], pasts[0])  # one noisy copy for all denoising steps
        if level == 0:
            assert torch.equal(pasts[0], frames)
        else:
            noise = pasts[0] - frames
            assert noise.std().item() == pytest.approx(level, rel=0.15)
        assert torch.equal(state.frames, frames.float())  # the state keeps clean frames
        calls.clear()
        seq = torch.cat([frames, frames[:, :2]], dim=1)
        act = torch.cat([actions, actions[:, :2]], dim=1)
        out = open_loop(m, seq, act, horizon=2, batch_size=3, seed=0, bf16=False)
        assert out.shape == (3, 2, 3, S, S) and len(calls) == 6
        assert all(torch.equal(kw["context_sigma"], torch.full((3,), level)) for _, kw in calls)


def test_context_noise_config_is_checked():
    with pytest.raises(ValueError, match="above the training range"):
        variant(sampler={"context_noise": 0.1})  # trained without context noise
    with pytest.raises(ValueError, match="context_noise_max"):
        variant(edm={"context_noise_max": -1.0})


def test_training_with_context_noise_and_attention_runs_and_learns():
    m = variant(
        unet={"mid_attention": True}, edm={"context_noise_max": 0.3}, sampler={"context_noise": 0.1}
    ).train()
    g = torch.Generator().manual_seed(2)
    batch = {
        "frames": torch.randint(0, 256, (4, 5, S, S, 3), dtype=torch.uint8, generator=g),
        "actions": torch.rand(4, 5, A, generator=g) * 2 - 1,
    }
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        loss, _ = m(batch, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        if step == 0:
            for name in ("denoiser.net.mid.0.attn.qkv.weight", "denoiser.net.cond_mlp.0.weight"):
                grad = dict(m.named_parameters())[name].grad
                assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])
    # The same seeds: the same loss (the context noise draws from the given generator).
    l1, _ = m(batch, generator=torch.Generator().manual_seed(7))
    l2, _ = m(batch, generator=torch.Generator().manual_seed(7))
    assert l1.item() == l2.item()


def test_the_config_file_takes_the_new_keys():
    from dmo_ros.worldmodels.train import resolve_config

    r = resolve_config("pusht.yaml", "paper", [])  # the defaults: off
    assert r.section.unet.attention == [] and not r.section.unet.mid_attention
    assert r.section.edm.context_noise_max == 0 and r.section.sampler.context_noise == 0
    r = resolve_config("pusht.yaml", "cpu", [])  # issue 9's choice
    assert r.section.unet.mid_attention and r.section.unet.stem_stride == 4
    assert r.section.edm.context_noise_max == 0.3 and r.section.sampler.context_noise == 0.1
    sets = [
        "world_model.unet.stem_stride=2",
        "world_model.unet.mid_attention=true",
        "world_model.unet.attention=[false, false, true]",
        "world_model.edm.context_noise_max=0.3",
        "world_model.sampler.context_noise=0.1",
    ]
    r = resolve_config("pusht.yaml", "cpu", sets)
    assert r.section.unet.attention == [False, False, True] and r.section.unet.mid_attention
    assert r.section.edm.context_noise_max == 0.3 and r.section.sampler.context_noise == 0.1


def test_attention_matmul_path_matches_the_fused_kernel(monkeypatch):
    import dmo_ros.worldmodels.unet as unet

    torch.manual_seed(0)
    block = SelfAttention(32, 16, head_dim=8)
    torch.nn.init.normal_(block.out.weight, std=0.2)
    x, cond = torch.randn(2, 32, 4, 4), torch.randn(2, 16)
    matmul = block(x, cond)
    monkeypatch.setattr(unet, "MATMUL_ATTENTION_MAX_TOKENS", 0)
    assert torch.allclose(block(x, cond), matmul, atol=1e-5)


def test_a_variant_round_trips_through_its_checkpoint_config():
    m = variant(
        unet={"mid_attention": True, "attention": [False, True]},
        edm={"context_noise_max": 0.3},
        sampler={"context_noise": 0.1},
    )
    again = DiamondWorldModel(DiamondConfig.from_dict(m.cfg.to_dict())).eval()
    again.load_state_dict(m.state_dict())  # strict: the same parameter names
    frames, actions = context()
    a = torch.full((3, A), 0.3)
    f1, _ = m.step(m.init(frames, actions), a, generator=torch.Generator().manual_seed(0))
    f2, _ = again.step(again.init(frames, actions), a, generator=torch.Generator().manual_seed(0))
    assert torch.equal(f1, f2)
