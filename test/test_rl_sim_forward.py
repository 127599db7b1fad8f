"""The simulated robot as a forward model: the world model's protocol on real Push-T scenes."""

import numpy as np
import pytest
import torch

from dmo_ros.errors import UserError
from dmo_ros.rl.sim_forward import SimForward
from dmo_ros.task import load_task

NEAR = {"position": 0.1, "angle_deg": 30.0, "steps": 64}


@pytest.fixture(scope="module")
def task():
    return load_task("pusht.yaml")


def _blue_centre(frame: torch.Tensor) -> np.ndarray:
    """(x, y) pixel centre of the blue end-effector in a frame [3,H,W] in [-1, 1]."""
    r, _g, b = ((frame + 1.0) * 127.5).numpy()
    ys, xs = np.nonzero(b - r > 60)  # the T (slate grey) is bluish too, but much less
    assert len(xs) > 0
    return np.array([xs.mean(), ys.mean()])


def test_shapes_range_and_protocol(task):
    sim = SimForward(task, batch=3, variant="near", near=NEAR, seed=0, context=4)
    frames, actions = sim.starts()
    assert frames.shape == (3, 4, 3, 64, 64) and frames.dtype == torch.float32
    assert actions.shape == (3, 4, 2) and not actions.any()
    assert frames.min() >= -1.0 and frames.max() <= 1.0 and frames.max() > 0.9
    assert torch.equal(frames[:, 0], frames[:, -1])  # the start repeated over the context
    state = sim.init(frames, actions)
    frame, state = sim.step(state, torch.zeros(3, 2))
    assert frame.shape == (3, 3, 64, 64) and frame.dtype == torch.float32
    assert sim.reward(frame).shape == (3,) and sim.success().dtype == torch.bool
    assert len(sim.ground_truth()) == 3
    # near starts: within range of the goal and not yet solved
    for truth in sim.ground_truth():
        assert np.hypot(*(truth["object"][:2] - truth["goal"][:2])) <= 0.1 * 0.512 + 1e-9
        assert truth["coverage"] < 0.95


def test_seeded_and_a_new_start_each_call(task):
    runs = []
    for _ in range(2):
        sim = SimForward(task, batch=2, variant="full", near=None, seed=7, context=2)
        first, actions = sim.starts()
        state = sim.init(first, actions)
        frame, state = sim.step(state, torch.tensor([[0.5, -1.0], [1.0, 0.3]]))
        second, _ = sim.starts()
        runs.append((first, frame, sim.reward(frame), second))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    first, _, _, second = runs[0]
    assert not torch.equal(first, second)  # the seed sequence moves on
    assert not torch.equal(first[0], first[1])  # and scenes differ within a batch


def test_reward_is_the_sims_coverage(task):
    sim = SimForward(task, batch=2, variant="near", near=NEAR, seed=3, context=1)
    state = sim.init(*sim.starts())
    for _ in range(3):
        frame, state = sim.step(state, torch.tensor([[0.4, 0.4], [-0.6, 0.2]]))
        cover = torch.tensor([t._coverage for t in sim.tables])
        assert torch.allclose(sim.reward(frame), cover) and torch.allclose(sim(frame), cover)
    # the T placed on its goal: full coverage and success
    goal = sim.tables[0].ground_truth()["goal"]
    sim.tables[0].reset(options={"object": tuple(goal), "ee": (0.05, 0.05)})
    frame, state = sim.step(state, torch.zeros(2, 2))
    assert sim.reward(frame)[0] > 0.99 and sim.success().tolist()[0]


def test_action_moves_the_pusher_in_the_image(task):
    sim = SimForward(task, batch=2, variant="full", near=None, seed=0, context=1)
    frames, actions = sim.starts()
    for table in sim.tables:  # free space, the T out of the way
        table.reset(options={"ee": (0.25, 0.1), "object": (0.25, 0.4, 0.0)})
    state = sim.init(frames, actions)
    before = [_blue_centre(f) for f in sim.step(state, torch.zeros(2, 2))[0]]
    for _ in range(3):
        frame, state = sim.step(state, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    after = [_blue_centre(f) for f in frame]
    moved = [a - b for a, b in zip(after, before)]
    # +x: right in the image; +y: down; 3 steps of 4 cm = 15 px at 64 px / 0.512 m
    assert moved[0][0] > 8 and abs(moved[0][1]) < 2, moved
    assert moved[1][1] > 8 and abs(moved[1][0]) < 2, moved


def test_bad_input(task):
    with pytest.raises(UserError, match="variant"):
        SimForward(task, batch=1, variant="far", near=None, seed=0, context=1)
    with pytest.raises(UserError, match="near"):
        SimForward(task, batch=1, variant="near", near=None, seed=0, context=1)
    sim = SimForward(task, batch=2, variant="full", near=None, seed=0, context=1)
    state = sim.init(*sim.starts())
    with pytest.raises(ValueError, match="action shape"):
        sim.step(state, torch.zeros(3, 2))


def test_episodes_go_on_across_batches_until_the_episode_length(task):
    from dmo_ros.rl.dmo_sapo import SimStarts
    from dmo_ros.rl.imagination import Trajectory

    sim = SimForward(task, batch=2, variant="near", near=NEAR, seed=0, context=4)
    starts = SimStarts(sim, episode_steps=7)
    gen = torch.Generator().manual_seed(0)

    def batch(frames, horizon=3):
        state, out, acts = sim.init(frames, None), [frames[:, -1]], []
        for k in range(horizon):
            a = torch.full((2, 2), 0.5 - 0.3 * k)
            frame, state = sim.step(state, a)
            out.append(frame)
            acts.append(a)
        z = torch.zeros(horizon, 2)
        traj = Trajectory(z, torch.stack(acts), z, z, z, torch.stack(out, 1), z[0])
        starts.advance(traj)
        return traj

    first, _ = starts.sample(2, gen)
    traj = batch(first)
    assert starts.steps == 3
    frames, actions = starts.sample(2, gen)  # 3 + 3 <= 7: the scenes go on
    assert torch.equal(frames, traj.frames[:, -4:])
    assert torch.equal(actions[:, :3], traj.actions.transpose(0, 1)[:, -3:])
    assert not actions[:, -1].any()  # after the last frame: the policy's to choose
    snap = starts.state_dict()
    truth = sim.ground_truth()
    batch(frames)  # 6 + 3 > 7: the next batch starts from a reset
    assert starts.steps == 6 and starts.context is None
    again = SimForward(task, batch=2, variant="near", near=NEAR, seed=99, context=4)
    restored = SimStarts(again, episode_steps=7)
    restored.load_state_dict(snap)  # the scenes replayed to where the snapshot was
    assert restored.steps == 3 and torch.equal(restored.context[0], frames)
    for a, b in zip(again.ground_truth(), truth):
        np.testing.assert_array_equal(a["object"], b["object"])
        np.testing.assert_array_equal(a["ee"], b["ee"])
