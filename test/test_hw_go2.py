"""Go2Base over real DDS (cyclonedds, interface `lo`) against a Go2 stand-in process."""

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from support.go2_standin import BODY_VELOCITY, Go2StandIn, camera_image, sdk_domain

from dmo_ros.errors import UserError
from dmo_ros.hw import ConnectError
from dmo_ros.hw.command_guard import BadCommand
from dmo_ros.hw.go2 import Go2Base, VelocityStream, planar_state

MOVE, STOP_MOVE, DAMP, STAND_UP, BALANCE_STAND = 1008, 1003, 1001, 1004, 1002
PERIOD = 0.2


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    with Go2StandIn(sdk_domain(), tmp_path_factory.mktemp("go2") / "requests.jsonl") as robot:
        yield robot


@pytest.fixture
def base(robot):
    base = Go2Base(iface="lo", domain=robot.domain, control_period=PERIOD, timeout_periods=2)
    base.connect(timeout=10.0)
    yield base
    base.close()


def wait_for(condition, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
    return result


def sport(robot, since):
    """(time, api id, parameter) of each sport request since `since`."""
    return [
        (r["t"], r["api_id"], json.loads(r["parameter"])) for r in robot.requests("sport", since)
    ]


def moves(requests):
    return [(p["x"], p["y"], p["z"]) for _, api, p in requests if api == MOVE]


def stops_only_after_silence(requests, commanded: list[float], timeout: float) -> None:
    """Every StopMove came at least `timeout` after the command before it (`commanded`: the
    times move() was called). On a loaded machine the watchdog may fire between commands the
    test meant to be close, but never early."""
    for t, api, _ in requests:
        if api == STOP_MOVE:
            before = [c for c in commanded if c <= t]
            assert before and t - before[-1] >= timeout, (t, before[-1:])


def test_velocities_arrive_clamped_and_repeated(robot, base):
    first, second = (0.8, -0.4, 0.5), (0.1, 0.2, -1.0)
    t0 = time.monotonic()
    commanded = [time.monotonic()]
    assert base.move(2.0, -1.0, 0.5).tolist() == list(first)
    wait_for(lambda: moves(sport(robot, t0)).count(first) >= 3)  # sent, then re-sent while held
    commanded.append(time.monotonic())
    assert base.move(0.1, 0.2, -3.0).tolist() == list(second)
    wait_for(lambda: moves(sport(robot, t0)).count(second) >= 3)
    base.stop()
    got = wait_for(lambda: (r := sport(robot, t0)) and r[-1][1] == STOP_MOVE and r)
    seen = moves(got)
    assert set(seen) == {first, second}
    switch = seen.index(second)
    assert seen[:switch] == [first] * switch and seen[switch:] == [second] * (len(seen) - switch)
    stops_only_after_silence(got[:-1], commanded, 2 * PERIOD)


def test_stop_move_after_two_periods_of_silence(robot, base):
    t_cmd = time.monotonic()
    base.move(0.3, 0.0, 0.0)
    got = wait_for(lambda: (r := sport(robot, t_cmd)) and r[-1][1] == STOP_MOVE and r)
    t_stop = got[-1][0]
    assert t_stop - t_cmd >= 2 * PERIOD  # never before the silence
    assert set(moves(got)) == {(0.3, 0.0, 0.0)}
    time.sleep(0.3)
    assert sport(robot, t_stop + 1e-6) == []  # nothing after the stop, not even a repeat


def test_steady_commands_keep_the_robot_moving(robot, base):
    t0 = time.monotonic()
    commanded = []
    for _ in range(6):  # every 0.15 s: faster than the 0.4 s timeout
        commanded.append(time.monotonic())
        base.move(0.2, 0.0, 0.1)
        time.sleep(0.15)
    got = sport(robot, t0)
    assert moves(got).count((0.2, 0.0, 0.1)) >= 6
    stops_only_after_silence(got, commanded, 2 * PERIOD)


def test_damp_on_emergency_stop_latches_until_recover(robot, base):
    t0 = time.monotonic()
    base.recover()  # nothing latched: nothing sent
    base.move(0.5, 0.0, 0.0)
    base.damp()
    got = wait_for(lambda: (r := sport(robot, t0)) and r[-1][1] == DAMP and r)
    t_damp = got[-1][0]
    assert {api for _, api, _ in got} == {MOVE, DAMP}
    assert base.move(0.5, 0.0, 0.0).tolist() == [0.0, 0.0, 0.0] and base.estopped
    time.sleep(0.3)
    assert sport(robot, t_damp + 1e-6) == []  # no repeat, no move after Damp
    base.recover()
    assert [api for _, api, _ in sport(robot, t_damp + 1e-6)] == [STAND_UP, BALANCE_STAND]
    assert base.move(0.1, 0.0, 0.0).tolist() == [0.1, 0.0, 0.0]


@pytest.mark.parametrize("command", [(math.nan, 0.0, 0.0), (0.0, 0.0, math.inf)])
def test_nan_is_rejected_and_nothing_sent(robot, base, command):
    t0 = time.monotonic()
    with pytest.raises(BadCommand, match="non-finite"):
        base.move(*command)
    time.sleep(0.3)
    assert sport(robot, t0) == []


def test_close_stops_the_robot(robot):
    base = Go2Base(iface="lo", domain=robot.domain, control_period=PERIOD)
    base.connect(timeout=10.0)
    t0 = time.monotonic()
    base.move(0.4, 0.0, 0.0)
    base.close()
    base.close()
    got = wait_for(lambda: (r := sport(robot, t0)) and r[-1][1] == STOP_MOVE and r)
    time.sleep(0.3)
    assert sport(robot, got[-1][0] + 1e-6) == []
    with pytest.raises(RuntimeError, match="not connected"):
        base.move(0.1, 0.0, 0.0)


def test_camera_frame_through_the_video_client(base):
    frame = base.camera_frame()
    assert frame.dtype == np.uint8 and frame.shape == (120, 160, 3)
    # RGB order, JPEG-close to what the camera saw.
    assert np.abs(frame.astype(int) - camera_image().astype(int)).mean() < 6
    assert frame[60, 80].tolist() == pytest.approx([230, 20, 20], abs=25)


def test_sport_state_arrives_with_the_robots_pose_and_body_velocity(robot, base):
    first = wait_for(base.state)
    # a later sample, far enough along the arc (0.32 m/s) to tell apart
    state = wait_for(lambda: (s := base.state())["stamp"] > first["stamp"] + 0.1 and s)
    # The pose lies on the stand-in's arc, at a time before the sample arrived.
    t = robot.time_of_yaw(state["pose"][2], near=state["stamp"])
    np.testing.assert_allclose(state["pose"], robot.pose_at(t), atol=1e-4)
    assert state["stamp"] >= t
    assert np.hypot(*(state["pose"][:2] - first["pose"][:2])) > 0.01  # it moves
    # The SDK's world-frame velocity, turned into the body frame: constant along the arc.
    np.testing.assert_allclose(state["velocity"], BODY_VELOCITY, atol=1e-4)
    np.testing.assert_allclose(first["velocity"], BODY_VELOCITY, atol=1e-4)


def test_sport_state_stops_when_the_robot_goes_quiet(robot, base):
    wait_for(base.state)
    robot.pause_state()
    try:
        time.sleep(0.2)  # samples in flight land
        held = base.state()
        time.sleep(0.3)
        assert base.state()["stamp"] == held["stamp"]  # the last sample is kept; it ages
    finally:
        robot.resume_state()
    wait_for(lambda: base.state()["stamp"] > held["stamp"])


def test_no_state_before_connect_and_garbage_samples_are_dropped():
    from unitree_sdk2py.idl.default import unitree_go_msg_dds__SportModeState_

    assert Go2Base(iface="lo").state() is None
    msg = unitree_go_msg_dds__SportModeState_()
    msg.position, msg.velocity, msg.yaw_speed = [2.0, 1.0, 0.3], [0.0, 0.5, 0.0], -0.2
    msg.imu_state.rpy = [0.0, 0.0, math.pi / 2]  # facing +y: world +y is body forward
    pose, velocity = planar_state(msg)
    np.testing.assert_allclose(pose, [2.0, 1.0, math.pi / 2], atol=1e-6)
    np.testing.assert_allclose(velocity, [0.5, 0.0, -0.2], atol=1e-6)
    msg.velocity = [math.nan, 0.0, 0.0]
    assert planar_state(msg) is None


def test_a_second_dds_domain_in_one_process_is_refused(robot):
    with pytest.raises(ConnectError, match="already opened DDS domain"):
        Go2Base(iface="lo", domain=robot.domain + 1).connect(timeout=1.0)


def test_missing_interface_is_one_clear_line():
    with pytest.raises(ConnectError, match="interface 'nosuch0' does not exist"):
        Go2Base(iface="nosuch0").connect(timeout=1.0)


UNREACHABLE = """
import sys
from dmo_ros.hw.go2 import Go2Base
from dmo_ros.hw import ConnectError
from dmo_ros.nodes.dds_env import claim_domain_id
try:
    Go2Base(iface="lo", domain=claim_domain_id()).connect(timeout=1.0)
except ConnectError as exc:
    print(exc)
    sys.exit(2)
"""


def test_unreachable_robot_gives_a_clear_error_after_the_timeout():
    # Its own process: this one's DDS participant is bound to the stand-in's domain.
    run = subprocess.run(
        [sys.executable, "-c", UNREACHABLE], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2, run.stderr
    line = run.stdout.strip().splitlines()[-1]
    assert "did not answer its sport service within 1 s" in line and "'lo'" in line


@pytest.mark.parametrize("limits", [{"vx": (-0.4, 5.0)}, {"wz": (0.1, 1.0)}, {"vy": (0.5, -0.5)}])
def test_limits_outside_the_robot_are_refused(limits):
    with pytest.raises(UserError, match="limits"):
        Go2Base(iface="lo", **limits)


def test_velocity_stream_without_the_sdk():
    """The cmd_vel pass-through reuses the stream with its own send/halt callables."""
    sent, halted = [], []
    guard = Go2Base(iface="lo").guard
    stream = VelocityStream(sent.append, lambda: halted.append(time.monotonic()), guard, 0.1, 2)
    try:
        t0 = time.monotonic()
        assert stream.command([9.0, 0.0, 0.0]).tolist() == [0.8, 0.0, 0.0]
        wait_for(lambda: halted)
        assert halted[0] - t0 >= 0.2 and not stream.active  # never before the silence
        assert len(sent) >= 1 and all(s.tolist() == [0.8, 0.0, 0.0] for s in sent)
    finally:
        stream.close()
