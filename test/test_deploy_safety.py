"""The policy node's rules without DDS (rl/deploy_safety.py): step timing, staleness, estop,
enable, and the check of every action before it becomes a command."""

import numpy as np
import pytest

from dmo_ros.rl.deploy_safety import DeploySafety, Step, policy_frame
from dmo_ros.task import task_for_robot

P = 200_000_000  # one control period (ns)


def running(robot: str = "pusht") -> DeploySafety:
    safety = DeploySafety(task_for_robot(robot), stale_timeout=0.4, enabled=True)
    safety.frame(10 * P)
    return safety


def test_starts_disabled_and_sends_nothing():
    safety = DeploySafety(task_for_robot("pusht"), stale_timeout=0.4)
    safety.frame(10 * P)
    assert safety.tick(10 * P) is Step.OFF
    assert safety.enable(True) == (True, "enabled")
    assert safety.tick(10 * P) is Step.ACT


def test_a_step_acts_on_the_first_frame_of_its_tick():
    safety = running()
    assert safety.tick(10 * P) is Step.ACT  # the tick's frame is already there
    assert safety.tick(11 * P) is Step.WAIT  # the frame of this step is not yet in
    assert safety.frame(11 * P) is True  # ... acted on when it arrives
    assert safety.frame(11 * P) is False  # once
    assert safety.frame(12 * P) is False  # a frame without a due step: kept, not acted on


def test_no_fresh_frame_within_two_periods_stops_and_restarts_the_filter():
    safety = running()
    safety.tick(10 * P)
    safety.needs_reset = False
    assert safety.tick(11 * P) is Step.WAIT  # one period: the frame may still come
    assert safety.tick(12 * P) is Step.STOP
    assert safety.stale and safety.needs_reset and "camera" in safety.last_fault
    safety.frame(13 * P)
    assert safety.tick(13 * P) is Step.ACT and not safety.stale


def test_no_frame_at_all_is_a_stop():
    safety = DeploySafety(task_for_robot("go2"), stale_timeout=0.4, enabled=True)
    assert safety.tick(P) is Step.STOP


def test_stop_is_a_zero_velocity_for_the_go2_and_no_delta_for_the_arm():
    np.testing.assert_array_equal(running("go2").stop_command(), [0.0, 0.0, 0.0])
    assert running("pusht").stop_command() is None


def test_estop_latches_per_source_and_a_release_leaves_it_disabled():
    safety = running()
    assert safety.estop("service", True) and safety.latched and not safety.enabled
    assert safety.tick(10 * P) is Step.OFF
    assert safety.enable(True)[0] is False  # refused under the latch
    safety.estop("driver", True)
    assert safety.estop("service", False) is False  # the driver's still holds it
    assert safety.estop("driver", False) and not safety.latched
    assert safety.tick(10 * P) is Step.OFF  # released, but not restarted
    safety.needs_reset = False
    assert safety.enable(True)[0] and safety.needs_reset  # a new run: a fresh filter
    assert safety.tick(10 * P) is Step.ACT


def test_an_estop_cancels_the_waiting_step():
    safety = running()
    assert safety.tick(11 * P) is Step.WAIT
    safety.estop("service", True)
    assert safety.frame(11 * P) is False


def test_scene_reset_restarts_the_filter():
    safety = running()
    safety.needs_reset = False
    safety.scene_reset()
    assert safety.needs_reset


def test_actions_are_scaled_to_robot_units_and_clipped():
    safety = running("go2")  # asymmetric bounds: vx in [-0.4, 0.8]
    np.testing.assert_allclose(safety.command(np.array([1.0, -1.0, 0.0])), [0.8, -0.4, 0.0])
    np.testing.assert_allclose(safety.command(np.array([3.0, -7.0, 0.0])), [0.8, -0.4, 0.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_action_is_refused_and_restarts_the_filter(bad):
    safety = running()
    safety.needs_reset = False
    assert safety.command(np.array([0.5, bad])) is None
    assert "non-finite" in safety.last_fault and safety.needs_reset


def test_a_wrong_sized_action_is_refused():
    assert running().command(np.zeros(3)) is None


def test_policy_frame_resizes_to_the_policy_view():
    rgb = np.zeros((480, 640, 3), np.uint8)
    assert policy_frame(rgb, 64).shape == (64, 64, 3)
    small = np.ones((64, 64, 3), np.uint8)
    np.testing.assert_array_equal(policy_frame(small, 64), small)
