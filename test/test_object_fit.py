"""The Push-T fit of world-model evaluation on real frames: rendered by the sim at known poses."""

import math

import cv2
import numpy as np
import pytest

from dmo_ros.data.play_data import _truth
from dmo_ros.nodes import msgs
from dmo_ros.sim.pusht_table import BOARD_UNITS, T_LOCAL, PushTTable, t_coverage
from dmo_ros.worldmodels import object_fit
from dmo_ros.worldmodels.object_fit import (
    BOARD_M,
    find_pusher,
    fit_t,
    pose_errors,
    t_pixels,
    wrap,
)

SIZE = 64
PX = SIZE / BOARD_M  # pixels per metre
WALL = 8.0  # board units: the T's edge this close to the board's edge touches the wall


@pytest.fixture(scope="module")
def env():
    return PushTTable(image_size=SIZE, seed=0)


def t_vertices(pose) -> np.ndarray:
    """The T's corners (board units) at a pose in metres / radians, as the sim places them."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.concatenate(T_LOCAL) @ np.array([[c, s], [-s, c]]) + np.array(pose[:2]) * 1000


def against(angle: float, left=None, top=None, x=0.25, y=0.25) -> tuple:
    """A pose at `angle` moved so that the T touches the left / right (left=False) and top /
    bottom (top=False) walls where asked, else its origin at x, y."""
    v = t_vertices((0.0, 0.0, angle))
    ox, oy = x * 1000, y * 1000
    if left is not None:
        ox = WALL - v[:, 0].min() if left else BOARD_UNITS - WALL - v[:, 0].max()
    if top is not None:
        oy = WALL - v[:, 1].min() if top else BOARD_UNITS - WALL - v[:, 1].max()
    return (ox / 1000, oy / 1000, angle)


POSES = [
    (0.25, 0.25, 0.0),
    (0.31, 0.18, math.radians(30)),
    (0.20, 0.33, math.radians(135)),
    (0.27, 0.27, math.radians(-100)),
    (0.15, 0.40, math.radians(179.5)),
    against(0.0, top=True),
    against(math.pi, top=False),
    against(math.radians(70), left=True),
    against(math.radians(-160), left=False, top=True),  # in a corner
    against(math.radians(-45), left=True, top=False),
]


def render(env, poses, ee=(0.05, 0.05)):
    """Frames and ground truth (object poses, end-effector positions) of scenes at poses."""
    frames, objects, ees = [], [], []
    for pose in poses:
        img, gt = env.reset(seed=0, options={"object": pose, "ee": ee})
        frames.append(img)
        objects.append(gt["object"])
        ees.append(gt["ee"])
    return np.stack(frames), np.stack(objects), np.stack(ees)


def scenes(env, count: int):
    """gym-pusht's own random scenes (T and pusher anywhere, sometimes touching)."""
    frames, objects, ees = [], [], []
    for seed in range(count):
        img, gt = env.reset(seed=seed)
        frames.append(img)
        objects.append(gt["object"])
        ees.append(gt["ee"])
    return np.stack(frames), np.stack(objects), np.stack(ees)


def test_the_t_shape_and_its_mask_are_the_sims(env):
    env.reset(seed=0)
    for ours, sims in zip(T_LOCAL, env._t_local):
        np.testing.assert_array_equal(ours, sims)
    for pose in POSES:
        assert t_vertices(pose).min() >= WALL - 1e-6 and t_vertices(pose).max() <= 504 + 1e-6
    frames, objects, _ = render(env, POSES)
    for frame, pose in zip(frames, objects):
        cov = t_coverage(pose, SIZE)
        fill = (frame == object_fit.T_COLOURS[0]).all(-1)
        assert (cov[fill] > 0.99).all()  # the T's fill colour only where the mask is whole
        assert (cov[~t_pixels(frame)] < 0.75).all()  # and no full T pixel left out
        assert abs((cov >= object_fit.COVERAGE).sum() - t_pixels(frame).sum()) <= 8


def test_real_frames_fit_back_to_their_known_poses(env):
    frames, objects, _ = render(env, POSES)
    fit = fit_t(frames)
    pos, ang = pose_errors(fit.pose, objects)
    assert (fit.iou >= 0.9).all(), fit.iou
    assert (pos * PX <= 0.5).all(), pos * PX  # px
    assert (np.rad2deg(ang) <= 3.0).all(), np.rad2deg(ang)
    # the body origin (task/object_pose) too, not only the centre the errors compare
    assert (np.hypot(*(fit.pose[:, :2] - objects[:, :2]).T) * PX <= 0.8).all()
    # the same frames in the models' range [-1, 1] fit the same
    again = fit_t(frames.astype(np.float32) / 127.5 - 1.0)
    np.testing.assert_allclose(again.pose, fit.pose)


def test_random_scenes_fit_within_a_fraction_of_a_pixel(env):
    frames, objects, _ = scenes(env, 40)
    fit = fit_t(frames)
    pos, ang = pose_errors(fit.pose, objects)
    assert fit.iou.mean() >= 0.95 and fit.iou.min() >= 0.9
    assert (pos * PX).mean() < 0.2 and (pos * PX).max() < 0.5
    assert np.rad2deg(ang).mean() < 1.0 and np.rad2deg(ang).max() < 3.0


def test_a_blob_is_no_t(env):
    frames, _, _ = render(env, POSES)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in frames])
    assert fit_t(blurred).iou.max() < 0.6
    board, _, _ = render(env, [(-1.0, -1.0, 0.0)])  # the T far off the board: an empty scene
    discs = []
    for frame in frames:
        img = board[0].copy()
        ys, xs = np.nonzero(t_pixels(frame))
        radius = math.sqrt(len(ys) / math.pi)
        centre = (round(xs.mean()), round(ys.mean()))
        discs.append(cv2.circle(img, centre, round(radius), (142, 163, 183), -1))
    fit = fit_t(np.stack(discs))
    assert (fit.iou < 0.6).all(), fit.iou
    empty = fit_t(board)
    assert empty.iou[0] == 0.0 and empty.pixels[0] == 0 and np.isnan(empty.pose).all()


def test_pose_errors_wrap_the_angle_and_compare_centres():
    ref = np.array([[0.2, 0.2, math.radians(179)], [0.2, 0.2, 0.0], [0.2, 0.2, 0.0]])
    pose = np.array([[0.2, 0.2, math.radians(-179)], [0.23, 0.24, math.pi], [np.nan] * 3])
    pos, ang = pose_errors(pose, ref)
    assert np.rad2deg(ang[:2]) == pytest.approx([2.0, 180.0])
    assert pos[0] == pytest.approx(2 * 0.0407 * math.sin(math.radians(1)), rel=0.01)
    # turned by 180 degrees about the origin: the centre is 2 x 40.7 mm further down the stem
    assert pos[1] == pytest.approx(math.hypot(0.03, 0.04 - 2 * 0.04071), rel=1e-3)
    assert np.isnan(pos[2]) and np.isnan(ang[2])
    assert wrap(np.array([math.pi, -math.pi, 3 * math.pi])) == pytest.approx([-math.pi] * 3)


def test_the_pusher_is_found_where_the_sim_draws_it(env):
    frames, _, ees = scenes(env, 30)
    # 2x supersampling: pixel j's centre is at (j + 1/4) px of the board's 512 units / SIZE
    expected = ees * PX - 0.25
    found = find_pusher(frames)
    assert np.abs(found - expected).max() < 0.5
    only_t, _, _ = render(env, [POSES[0]])
    only_t[0, (t_pixels(only_t[0]) == 0)] = 255  # paint all but the T white: no pusher left
    assert np.isnan(find_pusher(only_t)).all()


def test_ground_truth_from_a_bag_is_the_renderers_pose(env):
    """task/object_pose as the sim driver publishes it and play_data reads it back."""
    frames, objects, _ = render(env, POSES[1:4])
    stamp = msgs.Time(sec=1, nanosec=0)
    read = np.array([_truth(msgs.planar_pose(stamp, "board", *p)) for p in objects])
    np.testing.assert_allclose(read, objects, atol=1e-9)
    pos, ang = pose_errors(fit_t(frames).pose, read)
    assert (pos * PX <= 0.6).all() and (np.rad2deg(ang) <= 3.0).all()
