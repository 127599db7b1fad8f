"""The simulated Push-T table: real gym-pusht physics, our stepping, camera and ground truth."""

import numpy as np
import pytest

from dmo_ros.errors import UserError
from dmo_ros.sim import make_sim
from dmo_ros.sim.pusht_table import PushTTable


@pytest.fixture(scope="module")
def table() -> PushTTable:
    return PushTTable(seed=3)


def test_seeded_reset_gives_same_state_and_image():
    a, b = PushTTable(seed=11), PushTTable(seed=11)
    obs_a, gt_a = a.reset()
    obs_b, gt_b = b.reset()
    assert obs_a.shape == (64, 64, 3) and obs_a.dtype == np.uint8
    assert np.array_equal(obs_a, obs_b)
    assert np.allclose(gt_a["object"], gt_b["object"]) and np.allclose(gt_a["ee"], gt_b["ee"])
    for _ in range(5):
        oa, *_ = a.step([0.03, -0.01])
        ob, *_ = b.step([0.03, -0.01])
    assert np.array_equal(oa, ob)
    _obs_c, gt_c = a.reset(seed=12)
    assert not np.allclose(gt_c["object"], gt_a["object"])


def test_image_follows_the_end_effector(table):
    first, _gt0 = table.reset(seed=1, options={"ee": (0.1, 0.1), "object": (0.35, 0.35, 0.0)})
    for _ in range(3):
        obs, *_ = table.step([0.04, 0.0])
    assert np.abs(obs.astype(int) - first.astype(int)).sum() > 1000
    # the blue end-effector is drawn where the ground truth says it is
    big = table.render_image(256)
    x, y = (table.ground_truth()["ee"] / 0.512 * 256).astype(int)
    r, _g, b = big[y, x].astype(int)
    assert b > 200 and r < 150, big[y, x]
    assert table.render_image(128).shape == (128, 128, 3)


def test_motion_is_interpolated_not_teleported(table):
    table.reset(seed=2, options={"ee": (0.2, 0.2), "object": (0.4, 0.4, 0.0)})
    per_substep = table.max_delta / table.n_substeps
    for _ in range(4):
        table.step([0.04, 0.04])
        jumps = np.hypot(*np.diff(table.substep_ee, axis=0).T)
        assert table.n_substeps == 20  # 100 Hz inside a 0.2 s step
        assert jumps.max() <= np.sqrt(2) * per_substep * 1.2
        assert np.count_nonzero(jumps > 1e-5) >= table.n_substeps - 1  # moving all along
    ee = table.ground_truth()["ee"]
    assert np.all(ee > 0.2 + 0.1)  # it did travel (about 4 x 0.04 m minus the PD lag)


def test_workspace_and_action_clipping(table):
    table.reset(seed=2, options={"ee": (0.45, 0.45), "object": (0.15, 0.15, 0.0)})
    for _ in range(10):
        table.step([1.0, 1.0])  # far beyond max_delta: clipped, then clipped to the workspace
    ee = table.ground_truth()["ee"]
    assert np.all(ee <= table.workspace_high + 1e-3)
    assert np.all(ee >= table.workspace_high - 0.01)
    before = table.ground_truth()["ee"]
    table.step([-1.0, 0.0])
    table.step([0.0, 0.0])
    moved = before[0] - table.ground_truth()["ee"][0]
    assert 0.02 < moved <= table.max_delta + 1e-3


@pytest.mark.parametrize("bad", [[np.nan, 0.0], [0.0, np.inf], [0.1, 0.1, 0.1]])
def test_bad_action_is_rejected(table, bad):
    table.reset(seed=0)
    with pytest.raises(ValueError):
        table.step(bad)


def test_success_when_the_t_is_on_the_goal(table):
    goal = table.reset(seed=0)[1]["goal"]
    _obs, gt = table.reset(seed=0, options={"object": goal, "ee": (0.05, 0.05)})
    assert gt["coverage"] > 0.99 and gt["success"]
    _, reward, terminated, truncated, info = table.step([0.0, 0.0])
    assert terminated and not truncated and reward == pytest.approx(info["coverage"])
    off = goal + np.array([0.03, 0.0, 0.0])
    _, gt = table.reset(seed=0, options={"object": off, "ee": (0.05, 0.05)})
    assert 0.0 < gt["coverage"] < 0.95 and not gt["success"]


def test_pushing_the_t_moves_it_and_reports_contact(table):
    _, gt = table.reset(seed=0, options={"object": (0.25, 0.25, 0.0), "ee": (0.25, 0.45)})
    assert not gt["contact"]
    contacts = []
    for _ in range(8):  # up the board (y falls) into the T's stem
        *_, info = table.step([0.0, -0.04])
        contacts.append(info["contact"])
    assert any(contacts)
    assert info["object"][1] < 0.25 - 0.05  # the T went along
    # the end-effector pushes the T but is stopped by a jammed one: the T stays on the board
    for _ in range(15):
        *_, info = table.step([0.0, -0.04])
    assert 0.0 < info["object"][1] < 0.512


def test_make_sim_and_bad_options():
    assert isinstance(make_sim("pusht", image_size=32), PushTTable)
    assert isinstance(make_sim("flexiv"), PushTTable)
    with pytest.raises(UserError, match="unknown robot"):
        make_sim("spot")
    with pytest.raises(UserError, match="unknown option"):
        make_sim("pusht", colour="red")
    with pytest.raises(UserError, match="substep_hz"):
        PushTTable(substep_hz=20)


def _t_gap(table: PushTTable) -> float:
    """Distance (m) from the end-effector's edge to the T."""
    ee = tuple(table.ee * 1000.0)
    gap = min(s.point_query(ee).distance for s in table._t_shapes)
    return (gap - table._agent_shape.radius) / 1000.0


def test_near_start_is_near_the_goal_uncovered_and_free():
    table = PushTTable(seed=0)
    position, angle = 0.1, np.radians(30.0)
    objects = []
    for seed in range(40):
        _obs, gt = table.reset(seed=seed, options={"near": (position, angle)})
        dx, dy, dtheta = gt["object"] - gt["goal"]
        assert np.hypot(dx, dy) <= position * 0.512 + 1e-9
        assert abs((dtheta + np.pi) % (2 * np.pi) - np.pi) <= angle + 1e-9
        assert gt["coverage"] < 0.95 and not gt["success"]
        assert not gt["contact"] and _t_gap(table) >= 0.004
        assert np.all(gt["ee"] >= table.workspace_low) and np.all(gt["ee"] <= table.workspace_high)
        objects.append(gt["object"])
    objects = np.array(objects)
    # spread over the allowed range, not collapsed onto the goal
    assert np.ptp(objects[:, 0]) > 0.05 and np.ptp(objects[:, 2]) > np.radians(30.0)
    # the pusher is anywhere on the board, not only near the T
    ees = np.array(
        [table.reset(seed=s, options={"near": (position, angle)})[1]["ee"] for s in range(20)]
    )
    assert np.ptp(ees[:, 0]) > 0.25 and np.ptp(ees[:, 1]) > 0.25


def test_near_start_is_seeded_and_refuses_mixed_options():
    a, b = PushTTable(), PushTTable()
    ga = a.reset(seed=5, options={"near": (0.1, 0.5)})[1]
    gb = b.reset(seed=5, options={"near": (0.1, 0.5)})[1]
    assert np.allclose(ga["object"], gb["object"]) and np.allclose(ga["ee"], gb["ee"])
    gc = a.reset(seed=6, options={"near": (0.1, 0.5)})[1]
    assert not np.allclose(ga["object"], gc["object"])
    # a zero range puts the T on the goal: covered, so no valid start exists
    with pytest.raises(ValueError, match="no near start"):
        a.reset(seed=1, options={"near": (0.0, 0.0)})
    with pytest.raises(ValueError, match="near"):
        a.reset(seed=1, options={"near": (0.1, 0.5), "ee": (0.1, 0.1)})
