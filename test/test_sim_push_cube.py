"""The simulated Go2 push-cube scene (MuJoCo) and the trajectory metrics of its base path."""

import math

import numpy as np
import pytest

from dmo_ros.errors import UserError
from dmo_ros.sim import make_sim
from dmo_ros.sim.metrics import trajectory_metrics
from dmo_ros.sim.push_cube import RESPONSES, Go2PushCube


@pytest.fixture(scope="module")
def sim():
    env = Go2PushCube(seed=5)
    yield env
    env.close()


def test_seeded_reset_gives_same_state_and_image():
    a, b = Go2PushCube(seed=21), Go2PushCube(seed=21)
    obs_a, gt_a = a.reset()
    obs_b, gt_b = b.reset()
    assert obs_a.shape == (64, 64, 3) and obs_a.dtype == np.uint8
    assert np.array_equal(obs_a, obs_b)
    assert np.allclose(gt_a["base"], gt_b["base"]) and np.allclose(gt_a["cube"], gt_b["cube"])
    for _ in range(3):
        oa, *_ = a.step([0.5, 0.1, 0.3])
        ob, *_ = b.step([0.5, 0.1, 0.3])
    assert np.array_equal(oa, ob)
    _, gt_c = a.reset(seed=22)
    assert not np.allclose(gt_c["base"], gt_a["base"])
    a.close()
    b.close()


def expected_velocity(profile, command, t):
    """The reference after t seconds of a step command (exact at the 50 Hz ticks)."""
    t_eff = max(0.0, t - profile.delay)
    return profile.gain * command * (1.0 - math.exp(-t_eff / profile.tau))


@pytest.mark.parametrize("name", ["nominal", "changed"])
def test_velocity_follows_the_response_profile(sim, name):
    sim.set_response(name)
    sim.reset(options={"base": (-1.5, 0.0, 0.0), "cube": (1.5, 1.5, 0.0)})
    profile = RESPONSES[name]
    for step in range(1, 6):
        *_, gt = sim.step([0.4, 0.0, 0.0])
        expected = expected_velocity(profile, 0.4, 0.2 * step)
        assert gt["base_vel"][0] == pytest.approx(expected, abs=0.02), (name, step)
        assert abs(gt["base_vel"][1]) < 0.01
    sim.set_response("nominal")


def test_changed_profile_responds_differently(sim):
    speeds = {}
    for name in ("nominal", "changed"):
        sim.set_response(name)
        sim.reset(options={"base": (-1.5, 0.0, 0.0), "cube": (1.5, 1.5, 0.0)})
        *_, gt = sim.step([0.6, 0.0, 0.8])
        first = gt["base_vel"].copy()
        for _ in range(9):
            *_, gt = sim.step([0.6, 0.0, 0.8])
        speeds[name] = (first, gt["base_vel"].copy())
    (n0, n_end), (c0, c_end) = speeds["nominal"], speeds["changed"]
    assert n0[0] > c0[0] + 0.2  # slower to respond ...
    assert n_end[0] == pytest.approx(0.6, abs=0.03)
    assert c_end[0] == pytest.approx(0.6 * RESPONSES["changed"].gain, abs=0.03)  # ... and lower
    assert c_end[2] == pytest.approx(0.8 * RESPONSES["changed"].gain, abs=0.05)
    sim.set_response("nominal")


def test_driving_into_the_cube_pushes_it(sim):
    obs0, gt = sim.reset(options={"base": (-1.0, 0.0, 0.0), "cube": (0.0, 0.0, 0.4)})
    assert gt["cube_visible"] and not gt["contact"]
    contact = []
    for _ in range(10):
        obs, reward, terminated, _, gt = sim.step([0.6, 0.0, 0.0])
        contact.append(gt["contact"])
        assert gt["cube_visible"]
    assert any(contact) and contact[-1]
    assert gt["cube"][0] > 0.3  # pushed along x ...
    assert abs(gt["cube"][2]) < 0.1  # ... and squared up against the flat front of the body
    assert not np.array_equal(obs, obs0)
    assert 0.0 < reward < 0.5 and not terminated


def orange(image: np.ndarray) -> np.ndarray:
    """Pixels of the cube's colour."""
    r, g, b = (image[..., k].astype(int) for k in range(3))
    return (r > 200) & (g > 100) & (g < 180) & (b < 80)


def test_cube_out_of_view_when_turned_away(sim):
    _, gt = sim.reset(options={"base": (-1.0, 0.0, math.pi), "cube": (0.0, 0.0, 0.0)})
    assert not gt["cube_visible"]
    obs, gt = sim.reset(options={"base": (-1.0, 0.0, 0.8), "cube": (0.0, 0.0, 0.0)})
    assert not gt["cube_visible"]  # beside the 90 degree field of view
    assert not orange(obs).any()  # and indeed not in the picture
    obs, gt = sim.reset(options={"base": (-1.0, 0.0, 0.4), "cube": (0.0, 0.0, 0.0)})
    assert gt["cube_visible"]
    _ys, xs = np.nonzero(orange(obs))
    assert xs.mean() > 40  # turned left, the cube appears on the right of the image


def test_success_in_the_goal_and_walls_hold(sim):
    _, gt = sim.reset(options={"base": (0.0, 0.0, 0.0), "cube": (*sim.goal, 0.0)})
    assert gt["success"]
    *_, reward, terminated, _, gt = sim.step([0.0, 0.0, 0.0])
    assert terminated and reward == 1.0
    wall = sim.model.geom("wall_east")
    inner_face = wall.pos[0] - wall.size[1]  # (the box is turned: its y half-size is across)
    sim.reset(options={"base": (inner_face - 1.0, -1.2, 0.0), "cube": (-1.0, 1.0, 0.0)})
    for _ in range(15):
        *_, gt = sim.step([0.8, 0.0, 0.0])
    assert inner_face - 0.35 - 0.05 < gt["base"][0] < inner_face - 0.35 + 0.02  # stopped there


@pytest.mark.parametrize("bad", [[np.nan, 0, 0], [0, np.inf, 0], [0.1, 0.1]])
def test_bad_action_is_rejected(sim, bad):
    sim.reset(seed=0)
    with pytest.raises(ValueError):
        sim.step(bad)


def test_make_sim_options_and_profiles():
    env = make_sim("go2", image_size=32, tau=0.3, vx=(-0.2, 0.5))
    assert isinstance(env, Go2PushCube) and env.reset(seed=0)[0].shape == (32, 32, 3)
    assert env.action_space.high[0] == pytest.approx(0.5)
    env.close()
    with pytest.raises(UserError, match="unknown limit"):
        Go2PushCube(friction=2.0)
    with pytest.raises(UserError, match="bad value"):
        Go2PushCube(vx=0.5)
    with pytest.raises(UserError, match="unknown response"):
        Go2PushCube(response="sporty")


# --- trajectory metrics ------------------------------------------------------------------
def test_metrics_straight_line():
    x = np.linspace(0.0, 2.0, 11)
    poses = np.stack([x, np.zeros_like(x), np.full_like(x, 0.3)], axis=1)
    m = trajectory_metrics(poses, success_step=10)
    assert m["steps_to_success"] == 10
    assert m["straightness"] == pytest.approx(1.0)
    assert m["curvature"] == pytest.approx(0.0)
    assert m["path_length"] == pytest.approx(2.0)


def test_metrics_quarter_circle():
    radius, n = 1.5, 16
    phi = np.linspace(0.0, math.pi / 2, n + 1)
    # driving anticlockwise round the circle, heading along the tangent
    poses = np.stack([radius * np.cos(phi), radius * np.sin(phi), phi + math.pi / 2], axis=1)
    m = trajectory_metrics(poses, success_step=None)
    chord = 2 * radius * math.sin(math.pi / 4 / n)  # each sampled segment
    assert m["steps_to_success"] is None
    assert m["path_length"] == pytest.approx(n * chord)
    assert m["straightness"] == pytest.approx(radius * math.sqrt(2) / (n * chord))
    assert m["curvature"] == pytest.approx((math.pi / 2) / (n * chord))
    assert m["curvature"] == pytest.approx(1.0 / radius, rel=0.01)


def test_metrics_cut_at_success_wrap_and_bad_input():
    # a turn through +-pi counts the short way; poses after success are ignored
    poses = np.array([[0, 0, 3.1], [1, 0, -3.1], [2, 0, -3.1], [2, 5, 0.0]], dtype=float)
    m = trajectory_metrics(poses, success_step=2)
    assert m["curvature"] == pytest.approx((2 * math.pi - 6.2) / 2.0)
    assert m["straightness"] == pytest.approx(1.0)
    standing = trajectory_metrics(np.zeros((3, 3)), success_step=None)
    assert standing["straightness"] is None and standing["curvature"] is None
    with pytest.raises(ValueError):
        trajectory_metrics(np.zeros((3, 2)), None)
    with pytest.raises(ValueError):
        trajectory_metrics(np.zeros((3, 3)), success_step=3)
    with pytest.raises(ValueError):
        trajectory_metrics(np.array([[0, 0, np.nan]]), None)
