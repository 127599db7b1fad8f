"""FlexivArm against a flexivrdk 2.x test double (the real SDK would search the network)."""

import importlib.util
import math
import time

import numpy as np
import pytest
from support.flexiv_double import FlexivDouble, Mode

from dmo_ros.errors import UserError
from dmo_ros.hw import ConnectError
from dmo_ros.hw.command_guard import BadCommand
from dmo_ros.hw.flexiv import FlexivArm, RobotFault

SN = "Rizon4-062468"
LOW, HIGH = (0.3, -0.2, 0.1), (0.7, 0.2, 0.3)
QUAT = (0.0, 0.0, 1.0, 0.0)  # tool pointing down


def make_arm(sdk, **kwargs):
    return FlexivArm(SN, LOW, HIGH, max_step=0.04, stream_hz=100.0, control_period=0.2, sdk=sdk,
                     **kwargs)  # fmt: skip


def wait_for(condition, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def sdk():
    return FlexivDouble(SN, tcp_pose=(0.5, 0.0, 0.2, *QUAT))


@pytest.fixture
def arm(sdk):
    arm = make_arm(sdk)
    arm.connect(timeout=5.0)
    yield arm
    arm.close()


@pytest.mark.parametrize("faulted", [True, False])
def test_connect_sequence(faulted):
    sdk = FlexivDouble(SN, tcp_pose=(0.5, 0.0, 0.2, *QUAT), faulted=faulted)
    with make_arm(sdk) as arm:
        arm.connect(timeout=5.0)
        wait_for(lambda: sdk.sent())
        names = sdk.names()
        order = ["Robot", "fault", "ClearFault", "ServoOn", "operational", "SwitchMode"]
        if not faulted:
            order.remove("ClearFault")
            assert "ClearFault" not in names
        firsts = [names.index(n) for n in [*order, "SendCartesianMotionForce"]]
        assert firsts == sorted(firsts)
        # Streaming starts only once the arm is operational.
        last_poll = len(names) - 1 - names[::-1].index("operational")
        assert last_poll < names.index("SwitchMode")
        switch = next(c for c in sdk.calls if c.name == "SwitchMode")
        assert switch.kwargs["mode"] is Mode.NRT_CARTESIAN_MOTION_FORCE
        assert sdk.calls[0].kwargs == {"robot_sn": SN}
        # The first targets hold the arm where it is.
        assert sdk.sent()[0].kwargs["pose_d"] == pytest.approx([0.5, 0.0, 0.2, *QUAT])


def test_delta_is_applied_to_the_measured_pose(arm, sdk):
    sdk.hold_tcp((0.45, 0.05, 0.18, *QUAT))  # the arm lags behind its target (contact)
    target = arm.apply_delta([0.01, -0.02])
    # Planar: x, y from the measured pose; height of the previous target; orientation held.
    assert target == pytest.approx([0.46, 0.03, 0.2, *QUAT])
    target = arm.apply_delta([0.0, 0.0, 0.01])
    assert target[:3] == pytest.approx([0.45, 0.05, 0.19])
    assert arm.tcp_pose() == pytest.approx([0.45, 0.05, 0.18, *QUAT])


def test_step_and_workspace_clipping(arm, sdk):
    target = arm.apply_delta([0.5, -0.5])  # far beyond the 0.04 m step
    assert target[:3] == pytest.approx([0.54, -0.04, 0.2])
    sdk.hold_tcp((0.69, 0.19, 0.29, *QUAT))
    target = arm.apply_delta([0.03, 0.03, 0.03])
    assert target[:3] == pytest.approx(HIGH)
    sdk.hold_tcp((0.31, -0.19, 0.11, *QUAT))
    target = arm.apply_delta([-0.04, -0.04, -0.04])
    assert target[:3] == pytest.approx(LOW)
    wait_for(lambda: np.allclose(sdk.sent()[-1].kwargs["pose_d"][:3], LOW))
    streamed = np.array([c.kwargs["pose_d"][:3] for c in sdk.sent()])
    assert np.all(streamed >= np.array(LOW) - 1e-12) and np.all(streamed <= np.array(HIGH) + 1e-12)


class SteppedClock:
    """The arm's interpolation clock, moved by the test: what is streamed is then exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stepped(sdk):
    clock = SteppedClock()
    arm = make_arm(sdk, clock=clock)
    arm.connect(timeout=5.0)
    yield arm, clock
    arm.close()


def streamed_at(sdk, pose) -> None:
    """Wait until the stream sends `pose` (it sends the interpolated target every 10 ms)."""
    wait_for(lambda: np.allclose(sdk.sent()[-1].kwargs["pose_d"][:3], pose, atol=1e-12), 10.0)


def test_targets_are_interpolated_over_the_control_period(stepped, sdk):
    arm, clock = stepped
    start = np.array([0.5, 0.0, 0.2])
    target = arm.apply_delta([0.03, -0.02])[:3]
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5):  # of the 0.2 s control period
        clock.now = 100.0 + 0.2 * fraction
        expected = start + min(fraction, 1.0) * (target - start)
        assert arm.target()[:3] == pytest.approx(expected, abs=1e-12)
        streamed_at(sdk, expected)
    assert arm.target()[:3].tolist() == target.tolist()  # exactly the target, not a rounding
    poses = np.array([c.kwargs["pose_d"] for c in sdk.sent()])
    assert poses[:, 3:] == pytest.approx(np.tile(QUAT, (len(poses), 1)))
    # Whatever the stream's timing, every pose it sent lies on the segment, in order.
    xyz = poses[:, :3]
    assert np.all(np.diff(xyz[:, 0]) >= 0) and np.all(np.diff(xyz[:, 1]) <= 0)
    assert xyz[:, 1] == pytest.approx(-(xyz[:, 0] - start[0]) * 2 / 3, abs=1e-9)


def test_a_new_delta_starts_from_the_current_target_not_the_old_end(stepped, sdk):
    arm, clock = stepped
    arm.apply_delta([0.04, 0.0])
    clock.now += 0.05  # a quarter of the way
    streamed_at(sdk, [0.51, 0.0, 0.2])  # the double's TCP follows what is streamed
    end = arm.apply_delta([-0.04, 0.0])[:3]
    assert end[0] == pytest.approx(0.47)  # from the measured TCP
    assert arm.target()[0] == pytest.approx(0.51)  # the new segment starts where the stream is
    clock.now += 0.1
    streamed_at(sdk, [0.49, 0.0, 0.2])  # halfway, not from the old end 0.54


def test_fault_stops_streaming_and_is_reported(sdk):
    reports = []
    arm = make_arm(sdk, on_fault=reports.append)
    arm.connect(timeout=5.0)
    try:
        wait_for(lambda: len(sdk.sent()) > 3)
        sdk.inject_fault()
        wait_for(lambda: arm.fault_message is not None)
        count = len(sdk.sent())
        time.sleep(0.1)
        assert len(sdk.sent()) == count  # nothing streamed after the fault
        assert arm.fault() is True
        assert len(reports) == 1 and "fault" in reports[0] and SN in reports[0]
        with pytest.raises(RobotFault, match="fault"):
            arm.apply_delta([0.01, 0.0])
    finally:
        arm.close()
    assert sdk.names()[-1] == "Stop"


def test_connect_after_a_fault_clears_it_and_resumes(arm, sdk):
    sdk.inject_fault()
    wait_for(lambda: arm.fault_message is not None)
    arm.connect(timeout=5.0)
    assert not arm.fault() and sdk.names().count("ClearFault") == 1
    t0 = time.monotonic()
    arm.apply_delta([0.01, 0.0])
    wait_for(lambda: len(sdk.sent(since=t0)) > 2)


def test_a_refused_command_stops_streaming(arm, sdk):
    sdk.robot.mode = Mode.IDLE  # e.g. someone pressed stop on the teach pendant
    wait_for(lambda: arm.fault_message is not None)
    assert "control mode" in arm.fault_message and arm.fault()


@pytest.mark.parametrize("delta", [[math.nan, 0.0], [0.0, math.inf, 0.0], [0.01], "left"])
def test_bad_delta_is_refused_and_the_target_kept(arm, sdk, delta):
    before = arm.target()
    with pytest.raises(BadCommand):
        arm.apply_delta(delta)
    time.sleep(0.05)
    assert arm.target() == pytest.approx(before)
    assert np.all(np.isfinite([c.kwargs["pose_d"] for c in sdk.sent()]))


def test_close_stops_the_robot_and_the_stream(arm, sdk):
    wait_for(lambda: len(sdk.sent()) > 2)
    arm.close()
    names = sdk.names()
    assert names[-1] == "Stop"
    count = len(sdk.sent())
    time.sleep(0.05)
    assert len(sdk.sent()) == count
    arm.close()  # twice is harmless
    assert sdk.names().count("Stop") == 1
    with pytest.raises(RuntimeError, match="not"):
        arm.apply_delta([0.01, 0.0])


def test_stop_then_connect_resumes(arm, sdk):
    arm.stop()
    assert sdk.robot.mode == Mode.IDLE
    arm.connect(timeout=5.0)
    arm.apply_delta([0.01, 0.0])
    assert sdk.names().count("Robot") == 1  # the connection was reused


def test_never_operational_gives_a_clear_error():
    sdk = FlexivDouble(SN, tcp_pose=(0.5, 0.0, 0.2, *QUAT), polls_to_operational=None)
    with pytest.raises(ConnectError, match=r"not operational after 0.3 s \(status .*RELEASING"):
        make_arm(sdk).connect(timeout=0.3)


def test_unreachable_robot_does_not_hang():
    sdk = FlexivDouble(SN, hang=True)
    try:
        with pytest.raises(ConnectError, match=f"Flexiv {SN}: connecting timed out"):
            make_arm(sdk).connect(timeout=0.3)
    finally:
        sdk.release.set()


def test_unknown_robot_is_one_clear_line():
    sdk = FlexivDouble("Rizon4-111111")
    with pytest.raises(ConnectError) as info:
        make_arm(sdk).connect(timeout=2.0)
    assert str(info.value) == (
        f"Flexiv {SN}: connecting failed: "
        f"[flexiv::rdk::Robot] Failed to establish connection with {SN}"
    )


def test_fault_that_cannot_be_cleared():
    sdk = FlexivDouble(SN, faulted=True, clearable=False)
    with pytest.raises(ConnectError, match="fault could not be cleared"):
        make_arm(sdk).connect(timeout=2.0)


def test_tcp_outside_the_workspace_is_refused_before_moving():
    sdk = FlexivDouble(SN, tcp_pose=(0.9, 0.0, 0.2, *QUAT))
    with pytest.raises(ConnectError, match="outside the workspace"):
        make_arm(sdk).connect(timeout=2.0)
    assert "SwitchMode" not in sdk.names() and "SendCartesianMotionForce" not in sdk.names()


@pytest.mark.parametrize(
    "kwargs",
    [{"serial_number": ""}, {"max_step": -1.0}, {"stream_hz": 0.0}, {"workspace_low": (1, 1, 1)}],
)
def test_bad_configuration_is_a_user_error(kwargs):
    args = {"serial_number": SN, "workspace_low": LOW, "workspace_high": HIGH} | kwargs
    with pytest.raises(UserError):
        FlexivArm(**args, sdk=FlexivDouble())


@pytest.mark.skipif(importlib.util.find_spec("flexivrdk") is not None, reason="flexivrdk present")
def test_missing_sdk_points_to_the_python312_venv():
    with pytest.raises(UserError, match=r"flexivrdk is not installed .*make venv312"):
        FlexivArm(SN, LOW, HIGH)
