"""flexiv_driver over real DDS: the Push-T simulator backend, and the flexiv backend on the
flexivrdk test double. Commands go out from a probe node in another DDS participant."""

import subprocess

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float32
from std_srvs.srv import SetBool, Trigger
from support.flexiv_double import FlexivDouble
from support.ros_probe import Probe, Spinning

from dmo_ros.config import ros_parameters
from dmo_ros.errors import UserError
from dmo_ros.nodes.command_gate import LATCHED
from dmo_ros.nodes.flexiv_driver import FlexivDriver
from dmo_ros.nodes.runtime import parameter_overrides

IMAGE, POSE, DELTA = "camera/image_raw", "ee_pose", "ee_delta"
PARAMS = "flexiv_nodes.yaml"
SETTLED = 5e-4  # m: what gym-pusht's PD controller still creeps after 3 idle steps; a step is 0.02+


def delta(dx: float, dy: float) -> PoseStamped:
    msg = PoseStamped()
    msg.header.frame_id = "world"
    msg.pose.position.x, msg.pose.position.y = dx, dy
    return msg


def xy(msg: PoseStamped) -> np.ndarray:
    return np.array([msg.pose.position.x, msg.pose.position.y])


def stamp_ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


def frame(msg: Image) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)


@pytest.fixture(scope="module")
def probe():
    probe = Probe("flexiv_probe")
    probe.listen(Image, IMAGE, qos_profile_sensor_data)
    probe.listen(PoseStamped, POSE)
    probe.listen(Float32, "task/coverage")
    probe.listen(Bool, "task/success")
    probe.listen(Bool, "task/contact")
    probe.listen(PoseStamped, "task/object_pose")
    probe.listen(PoseStamped, "task/goal_pose")
    probe.listen_log()
    probe.advertise(PoseStamped, DELTA)
    yield probe
    probe.close()


@pytest.fixture(scope="class")
def sim(probe):
    overrides = parameter_overrides(PARAMS, "flexiv_driver", backend="sim", seed=3)
    driver = Spinning(lambda c: FlexivDriver(context=c, parameter_overrides=overrides))
    probe.wait(lambda: probe.matched(DELTA) and probe.count(IMAGE) >= 2, 15.0)
    yield driver
    driver.close()


def steps(probe, n: int, command=None) -> PoseStamped:
    """Publish `command` right after each of the next `n` frames (as a policy does); the pose
    after the last of them."""
    for _ in range(n):
        probe.next(IMAGE)
        if command is not None:
            probe.publish(PoseStamped, DELTA, delta(*command))
    probe.next(IMAGE)
    return probe.last(POSE)


def settle(probe) -> np.ndarray:
    """Idle steps until the end-effector rests; its position."""
    return xy(steps(probe, 3))


class TestSimBackend:
    """The Push-T simulator behind the driver topics (one driver for the class)."""

    def test_every_configured_parameter_is_declared(self, sim):
        for key in ros_parameters(PARAMS, "flexiv_driver"):  # a typo in the YAML would be ignored
            assert sim.node.has_parameter(key), key

    def test_publishes_images_pose_and_task_status(self, probe, sim):
        image = probe.next(IMAGE)
        assert (image.height, image.width, image.encoding) == (64, 64, "rgb8")
        assert image.step == 64 * 3 and image.header.frame_id == "camera"
        pose = probe.last(POSE)
        assert pose.header.frame_id == "world"
        assert pose.header.stamp == image.header.stamp  # one stamp per control step
        assert 0.0 <= probe.last("task/coverage").data <= 1.0
        # a new scene: the T is not in place, and an idle pusher touches nothing
        assert probe.last("task/success").data is False
        assert probe.last("task/contact").data is False
        for topic in ("task/object_pose", "task/goal_pose"):
            assert probe.last(topic).header.frame_id == "world"
        # the sim camera publishes once per 0.2 s control step, each frame stamped with its step
        n = probe.count(IMAGE)
        probe.wait(lambda: probe.count(IMAGE) >= n + 5, 15.0)
        stamps = [stamp_ns(m.header.stamp) for _, m in probe.received(IMAGE)[n - 1 :]]
        assert set(np.diff(stamps)) == {200_000_000}, np.diff(stamps)

    def test_pose_follows_deltas_and_image_changes(self, probe, sim):
        start = settle(probe)
        before = frame(probe.last(IMAGE))
        direction = np.sign(0.256 - start)  # towards the board's centre: away from the walls
        end = xy(steps(probe, 4, 0.03 * direction))
        end = settle(probe)
        moved = (end - start) * direction
        assert np.all(moved > 0.06), f"moved {moved} m, commanded 4 x 0.03 m per axis"
        assert np.all(moved < 0.125)
        assert np.abs(frame(probe.last(IMAGE)).astype(int) - before).sum() > 0

    def test_out_of_range_delta_is_clipped(self, probe, sim):
        start = settle(probe)
        direction = np.sign(0.256 - start)
        steps(probe, 1, (float(direction[0]) * 1.0, 0.0))  # 25 x the 0.04 m limit
        moved = (settle(probe) - start) * direction
        assert 0.02 < moved[0] <= 0.041 and abs(moved[1]) < 0.01

    def test_nan_delta_is_refused_and_logged(self, probe, sim):
        start = settle(probe)
        steps(probe, 2, (float("nan"), 0.01))
        steps(probe, 1, (float("inf"), 0.0))
        np.testing.assert_allclose(
            settle(probe), start, atol=5e-4
        )  # PD settling, far below one 0.02 m step
        probe.wait(lambda: any("non-finite" in m for m in probe.logs("flexiv_driver")))

    def test_losing_the_command_stream_stops_the_arm(self, probe, sim):
        start = settle(probe)
        direction = np.sign(0.256 - start)
        steps(probe, 1, 0.02 * direction)  # one command, then silence
        after = settle(probe)
        assert np.all((after - start) * direction > 0.01)
        np.testing.assert_allclose(
            xy(steps(probe, 3)), after, atol=5e-4
        )  # PD settling, far below one 0.02 m step

    def test_reset_starts_a_new_scene(self, probe, sim):
        before = xy(probe.last("task/object_pose"))
        response = probe.call(Trigger, "reset", Trigger.Request())
        assert response.success and "seed 4" in response.message
        probe.next(IMAGE)
        assert np.abs(xy(probe.last("task/object_pose")) - before).max() > 1e-3

    def test_estop_latches_until_released(self, probe, sim):
        probe.listen(Bool, "estop/active", LATCHED)
        start = settle(probe)
        direction = np.sign(0.256 - start)
        assert probe.call(SetBool, "estop", SetBool.Request(data=True)).success
        probe.wait(
            lambda: probe.last("estop/active") is not None and probe.last("estop/active").data
        )
        steps(probe, 3, 0.03 * direction)
        np.testing.assert_allclose(
            settle(probe), start, atol=5e-4
        )  # PD settling, far below one 0.02 m step
        probe.wait(lambda: any("estop latched" in m for m in probe.logs("flexiv_driver")))

        assert probe.call(SetBool, "estop", SetBool.Request(data=False)).success
        probe.wait(lambda: not probe.last("estop/active").data)
        steps(probe, 3, 0.03 * direction)  # 3: one step may miss its command on a loaded machine
        assert np.all((settle(probe) - start) * direction > 0.03)


def test_sim_owns_the_clock_at_time_scale(probe):
    """At time_scale 5 /clock advances exactly one control period per step and each step's
    image is stamped with it (how fast the steps come is bench/collect_speed.py's job)."""
    probe.listen(Clock, "/clock")
    overrides = parameter_overrides(
        PARAMS, "flexiv_driver", backend="sim", time_scale=5.0, use_sim_time=True
    )
    driver = Spinning(lambda c: FlexivDriver(context=c, parameter_overrides=overrides))
    try:
        probe.next(IMAGE, timeout=15.0)
        n = probe.count("/clock")
        probe.wait(lambda: probe.count("/clock") >= n + 12, 15.0)
        sim_ns = np.array([stamp_ns(m.clock) for _, m in probe.received("/clock")[n:]])
        assert np.all(np.diff(sim_ns) == 200_000_000), np.diff(sim_ns)
        assert probe.duplicates("/clock") == 0
        image = probe.last(IMAGE)
        stamp = stamp_ns(image.header.stamp)
        assert stamp in set(sim_ns) | {int(sim_ns[-1]) + 200_000_000}  # a step's time
    finally:
        driver.close()


def test_time_scale_needs_the_sim_backend(ros_context):
    with pytest.raises(UserError, match="time_scale 4 needs the sim backend"):
        FlexivDriver(context=ros_context, parameter_overrides=real_overrides(time_scale=4.0))


def test_unknown_backend_exits_2_with_one_line(python):
    done = subprocess.run(
        [python, "-m", "dmo_ros.nodes.flexiv_driver", "--ros-args", "-p", "backend:=kuka"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert lines == ["flexiv_driver: unknown backend 'kuka' (expected one of: sim, flexiv)"]


def test_out_of_range_parameter_is_one_user_error(ros_context):
    overrides = parameter_overrides(PARAMS, "flexiv_driver", image_size=4)
    with pytest.raises(UserError, match=r"flexiv_driver: bad parameter: .*image_size out of range"):
        FlexivDriver(context=ros_context, parameter_overrides=overrides)


# --- the real backend, on the flexivrdk test double -------------------------------------------


def real_overrides(**values):
    values = {"backend": "flexiv", "robot_sn": "Rizon4-062468", "connect_timeout": 2.0, **values}
    return parameter_overrides(PARAMS, "flexiv_driver", **values)


def test_flexiv_backend_forwards_guarded_deltas_and_stops_on_estop(probe):
    sdk = FlexivDouble()
    driver = Spinning(
        lambda c: FlexivDriver(sdk=sdk, context=c, parameter_overrides=real_overrides())
    )
    try:
        probe.wait(lambda: probe.matched(DELTA) and probe.count(POSE) > 0, 10.0)
        pose = probe.next(POSE)
        np.testing.assert_allclose(xy(pose), [0.5, 0.0], atol=1e-9)
        assert pose.pose.position.z == pytest.approx(0.2)

        probe.publish(PoseStamped, DELTA, delta(0.03, -0.5))  # dy clipped to -0.04
        probe.wait(lambda: np.allclose(xy(probe.next(POSE)), [0.53, -0.04], atol=1e-6))
        probe.publish(PoseStamped, DELTA, delta(float("nan"), 0.0))
        probe.wait(lambda: any("non-finite" in m for m in probe.logs("flexiv_driver")))
        sent = [c.kwargs["pose_d"] for c in sdk.sent()]
        assert all(np.all(np.isfinite(p)) for p in sent)
        assert max(p[1] for p in sent) <= 1e-9 and min(p[1] for p in sent) >= -0.04 - 1e-9

        assert probe.call(SetBool, "estop", SetBool.Request(data=True)).success
        assert sdk.names()[-1] == "Stop"
        n = len(sdk.sent())
        probe.publish(PoseStamped, DELTA, delta(0.02, 0.0))
        probe.next(POSE)
        probe.next(POSE)
        assert len(sdk.sent()) == n  # nothing reaches the arm while latched
        assert probe.call(SetBool, "estop", SetBool.Request(data=False)).success
        probe.publish(PoseStamped, DELTA, delta(0.0, 0.03))
        probe.wait(lambda: np.allclose(xy(probe.next(POSE)), [0.53, -0.01], atol=1e-6))

        response = probe.call(Trigger, "reset", Trigger.Request())
        assert not response.success and "sim backend" in response.message
    finally:
        driver.close()
    assert sdk.names()[-1] == "Stop"  # shutdown stops the arm


def test_flexiv_backend_gives_up_on_a_robot_that_does_not_answer(probe):
    sdk = FlexivDouble(hang=True)
    with pytest.raises(UserError, match="timed out"):
        Spinning(lambda c: FlexivDriver(sdk=sdk, context=c, parameter_overrides=real_overrides()))
    sdk.release.set()
