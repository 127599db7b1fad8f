"""The replay buffer of generated trajectories (RSSM fine-tuning in DMO-SAPO)."""

import pytest
import torch

from dmo_ros.rl.replay import ReplayBuffer


def episodes(b: int, t: int, first: int) -> tuple:
    """Frames whose pixels name (episode, step); actions and rewards say the same."""
    ids = torch.arange(first, first + b).view(b, 1).float()
    steps = torch.arange(t).view(1, t).float()
    code = ids * 100 + steps
    frames = (steps.expand(b, t) + 10 * (ids - first)).to(torch.uint8)
    frames = frames.view(b, t, 1, 1, 1).expand(b, t, 4, 4, 3).contiguous()
    return frames, code.unsqueeze(-1).repeat(1, 1, 2), code


def test_windows_are_consecutive_steps_of_one_episode():
    buf = ReplayBuffer(capacity=1000, length=5)
    buf.add(*episodes(3, 12, 0))
    out = buf.sample(64, torch.Generator().manual_seed(0))
    assert out["frames"].shape == (64, 5, 4, 4, 3) and out["actions"].shape == (64, 5, 2)
    diffs = out["rewards"].diff(dim=1)
    assert torch.all(diffs == 1)  # consecutive steps, same episode (ids differ by 100)
    assert torch.equal(out["actions"][..., 0], out["rewards"])
    pixel = out["rewards"] % 100 + 10 * (out["rewards"] // 100)
    assert torch.equal(out["frames"][:, :, 0, 0, 0].float(), pixel)
    assert len(set(out["rewards"][:, 0].tolist())) > 5  # varied starts


def test_oldest_episodes_go_first_and_float_frames_are_converted():
    buf = ReplayBuffer(capacity=30, length=4)
    buf.add(*episodes(2, 10, 0))
    buf.add(*episodes(2, 10, 2))
    assert len(buf) == 30 and [int(e["rewards"][0]) // 100 for e in buf.episodes] == [1, 2, 3]
    floats = torch.full((1, 4, 3, 2, 2), 1.0)
    buf.add(floats, torch.zeros(1, 4, 2), torch.zeros(1, 4))
    assert buf.episodes[-1]["frames"].dtype == torch.uint8
    assert buf.episodes[-1]["frames"].shape == (4, 2, 2, 3)
    assert int(buf.episodes[-1]["frames"].min()) == 255


def test_refuses_windows_longer_than_episodes():
    with pytest.raises(ValueError):
        ReplayBuffer(capacity=3, length=4)
    buf = ReplayBuffer(capacity=100, length=8)
    with pytest.raises(ValueError):
        buf.add(*episodes(1, 5, 0))
