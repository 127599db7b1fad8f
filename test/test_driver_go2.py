"""go2_driver over real DDS: the MuJoCo push-cube backend, the cmd_vel relay, and the unitree
backend against the Go2 stand-in (the SDK's RPC over cyclonedds on `lo`)."""

import json
import math
import signal
import subprocess
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger
from support.go2_standin import BODY_VELOCITY, Go2StandIn, camera_image, sdk_domain
from support.ros_probe import Probe, Spinning

from dmo_ros.config import ros_parameters
from dmo_ros.nodes.dds_env import claim_domain_id
from dmo_ros.nodes.go2_driver import Go2Driver
from dmo_ros.nodes.msgs import quaternion_yaw
from dmo_ros.nodes.runtime import parameter_overrides

IMAGE, ODOM, CMD, RELAY = "camera/image_raw", "odom", "cmd_vel", "locomotion/cmd_vel"
PARAMS = "go2_nodes.yaml"
MOVE, STOP_MOVE, DAMP, STAND_UP, BALANCE_STAND = 1008, 1003, 1001, 1004, 1002


def twist(vx: float, vy: float = 0.0, wz: float = 0.0) -> TwistStamped:
    msg = TwistStamped()
    msg.header.frame_id = "base_link"
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.angular.z = vx, vy, wz
    return msg


def pose(msg: Odometry) -> np.ndarray:
    p = msg.pose.pose
    return np.array([p.position.x, p.position.y, quaternion_yaw(p.orientation)])


def velocity(msg: Odometry | TwistStamped) -> tuple[float, float, float]:
    t = msg.twist.twist if isinstance(msg, Odometry) else msg.twist
    return (t.linear.x, t.linear.y, t.angular.z)


def frame(msg: Image) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)


@pytest.fixture(scope="module")
def probe():
    probe = Probe("go2_probe")
    probe.listen(Image, IMAGE, qos_profile_sensor_data)
    probe.listen(Odometry, ODOM)
    probe.listen(Bool, "task/success")
    probe.listen(Bool, "task/contact")
    probe.listen(PoseStamped, "task/object_pose")
    probe.listen(PoseStamped, "task/goal_pose")
    probe.listen(TwistStamped, RELAY)
    probe.listen_log()
    probe.advertise(TwistStamped, CMD)
    yield probe
    probe.close()


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    """The Go2 stand-in: sport/video services and the sport state on DDS over `lo`."""
    with Go2StandIn(sdk_domain(), tmp_path_factory.mktemp("go2") / "requests.jsonl") as robot:
        yield robot


def odometry_since(probe, since: float) -> list[tuple[float, Odometry]]:
    return probe.received(ODOM, since)


def assert_on_the_standin_arc(robot, received: list[tuple[float, Odometry]]) -> None:
    """Each odom is a pose of the stand-in's arc from just before it arrived, with the arc's
    body velocity, in odom -> base_link, stamped in step with the robot's own time."""
    times = []
    for arrived, odom in received:
        assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
        p = pose(odom)
        t = robot.time_of_yaw(p[2], near=arrived)
        np.testing.assert_allclose(p, robot.pose_at(t), atol=1e-4)
        assert 0.0 <= arrived - t < 1.0
        np.testing.assert_allclose(velocity(odom), BODY_VELOCITY, atol=1e-4)
        times.append((t, odom.header.stamp.sec + 1e-9 * odom.header.stamp.nanosec))
    (t_first, s_first), (t_last, s_last) = times[0], times[-1]
    assert t_last > t_first  # it moves
    assert abs((s_last - s_first) - (t_last - t_first)) < 0.1  # stamped when sampled


@pytest.fixture(scope="class")
def sim(probe):
    overrides = parameter_overrides(PARAMS, "go2_driver", backend="sim", seed=1)
    driver = Spinning(lambda c: Go2Driver(context=c, parameter_overrides=overrides))
    probe.wait(lambda: probe.matched(CMD) and probe.count(IMAGE) >= 2, 20.0)
    yield driver
    driver.close()


def steps(probe, n: int, command=None) -> Odometry:
    """Publish `command` right after each of the next `n` frames; the odometry after them."""
    for _ in range(n):
        probe.next(IMAGE)
        if command is not None:
            probe.publish(TwistStamped, CMD, twist(*command))
    probe.next(IMAGE)
    return probe.last(ODOM)


def settle(probe) -> np.ndarray:
    return pose(steps(probe, 3))


class TestSimBackend:
    """The MuJoCo push-cube scene behind the driver topics (one driver for the class)."""

    def test_every_configured_parameter_is_declared(self, sim):
        for key in ros_parameters(PARAMS, "go2_driver"):  # a typo in the YAML would be ignored
            assert sim.node.has_parameter(key), key

    def test_publishes_front_camera_odom_and_ground_truth(self, probe, sim):
        image = probe.next(IMAGE)
        assert (image.height, image.width, image.encoding) == (64, 64, "rgb8")
        assert image.header.frame_id == "front_camera"
        odom = probe.last(ODOM)
        assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
        assert odom.header.stamp == image.header.stamp
        assert probe.last("task/object_pose").header.frame_id == "odom"
        assert probe.last("task/goal_pose").header.frame_id == "odom"
        assert probe.last("task/success").data is False
        assert probe.last("task/contact").data is False  # an idle base touches nothing

    def test_base_drives_and_turns_as_commanded(self, probe, sim):
        start = settle(probe)
        before = frame(probe.last(IMAGE))
        odom = steps(probe, 5, (0.6, 0.0, 0.0))
        assert velocity(odom)[0] > 0.4  # body frame, forward
        moved = pose(odom)[:2] - start[:2]
        heading = np.array([math.cos(start[2]), math.sin(start[2])])
        assert moved @ heading > 0.3 and abs(np.cross(heading, moved)) < 0.1
        assert np.abs(frame(probe.last(IMAGE)).astype(int) - before).sum() > 0
        yaw = pose(steps(probe, 4, (0.0, 0.0, 0.8)))[2]
        assert 0.3 < (yaw - start[2] + math.pi) % (2 * math.pi) - math.pi < 0.8

    def test_losing_the_command_stream_stops_the_base(self, probe, sim):
        steps(probe, 3, (0.5, 0.0, 0.0))  # then silence
        odom = steps(probe, 3)
        assert max(abs(v) for v in velocity(odom)) < 0.05
        # 5 mm: residual coasting, far below the 0.1 m one commanded step moves the base
        np.testing.assert_allclose(pose(steps(probe, 3)), pose(odom), atol=5e-3)

    def test_nan_command_is_refused_and_logged(self, probe, sim):
        start = settle(probe)
        steps(probe, 2, (float("nan"), 0.0, 0.0))
        steps(probe, 1, (0.3, float("-inf"), 0.0))
        np.testing.assert_allclose(settle(probe), start, atol=2e-3)
        probe.wait(lambda: any("non-finite" in m for m in probe.logs("go2_driver")))

    def test_estop_latches_until_released(self, probe, sim):
        start = settle(probe)
        assert probe.call(SetBool, "estop", SetBool.Request(data=True)).success
        steps(probe, 3, (0.5, 0.0, 0.0))
        np.testing.assert_allclose(settle(probe), start, atol=2e-3)
        assert probe.call(SetBool, "estop", SetBool.Request(data=False)).success
        steps(probe, 3, (0.5, 0.0, 0.0))
        assert np.hypot(*(settle(probe)[:2] - start[:2])) > 0.15

    def test_reset_starts_a_new_scene(self, probe, sim):
        before = pose(probe.last(ODOM))
        response = probe.call(Trigger, "reset", Trigger.Request())
        assert response.success and "seed 2" in response.message
        assert np.abs(pose(probe.next(ODOM)) - before).max() > 1e-2


def stamp_s(stamp) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


def relayed(probe, since: float) -> list[tuple[float, tuple[float, float, float]]]:
    return [(t, velocity(m)) for t, m in probe.received(RELAY, since)]


def test_cmd_vel_backend_relays_clamped_commands_and_zeroes_on_silence(probe, robot):
    # In this process: its SDK participant is on the stand-in's domain, as test_hw_go2's is.
    overrides = parameter_overrides(
        PARAMS, "go2_driver", backend="cmd_vel", iface="lo", dds_domain=robot.domain
    )
    driver = Spinning(lambda c: Go2Driver(context=c, parameter_overrides=overrides))
    try:
        probe.wait(lambda: probe.matched(CMD), 10.0)

        t0 = time.monotonic()
        probe.publish(TwistStamped, CMD, twist(5.0, -3.0, 0.5))
        probe.wait(lambda: relayed(probe, t0))
        probe.publish(TwistStamped, CMD, twist(float("nan"), 0.0, 0.0))  # refused: not a command
        zero = probe.wait(lambda: [m for _, m in probe.received(RELAY, t0) if not any(velocity(m))])
        out = probe.received(RELAY, t0)
        assert probe.last(RELAY).header.frame_id == "base_link"
        velocities = [velocity(m) for _, m in out]
        moving = velocities[: velocities.index((0.0, 0.0, 0.0))]
        assert moving and set(moving) == {(0.8, -0.4, 0.5)}  # clamped (re-sent while fresh)
        # Zeroed two control periods after the last good command (the NaN did not refresh it):
        # the relay stamps each twist when it sends it.
        first = out[0][1].header.stamp
        silence = stamp_s(zero[0].header.stamp) - stamp_s(first)
        assert silence >= 0.4 - 1e-3, silence
        time.sleep(0.5)
        assert len(probe.received(RELAY, t0)) == len(out)  # one zero twist, then quiet
        assert any("non-finite" in m for m in probe.logs("go2_driver"))

        assert probe.call(SetBool, "estop", SetBool.Request(data=True)).success
        t1 = time.monotonic()
        probe.publish(TwistStamped, CMD, twist(0.5))
        time.sleep(0.5)
        assert all(v == (0.0, 0.0, 0.0) for _, v in relayed(probe, t1))

        # odom from the robot's sport state, read through the SDK without a SportClient.
        assert_on_the_standin_arc(robot, odometry_since(probe, t0))
    finally:
        driver.close()


def test_cmd_vel_backend_pauses_odom_with_a_warning_when_the_state_goes_stale(probe, robot):
    overrides = parameter_overrides(
        PARAMS,
        "go2_driver",
        backend="cmd_vel",
        iface="lo",
        dds_domain=robot.domain,
        state_rate=10.0,
    )
    driver = Spinning(lambda c: Go2Driver(context=c, parameter_overrides=overrides))
    try:
        t0 = time.monotonic()
        probe.wait(lambda: len(odometry_since(probe, t0)) >= 5, 10.0)
        stamps = [stamp_s(m.header.stamp) for _, m in odometry_since(probe, t0)]
        # Each odom a sample of its own, at most 10 per second of samples though the robot
        # sends 50 (a loaded machine can only send fewer).
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        assert all(sum(s <= t < s + 1.0 for t in stamps) <= 11 for s in stamps)
        assert_on_the_standin_arc(robot, odometry_since(probe, t0))

        robot.pause_state()
        stale = lambda: [m for m in probe.logs("go2_driver") if "no Go2 sport state" in m]  # noqa: E731
        probe.wait(stale, 5.0)
        t2 = time.monotonic()
        time.sleep(0.5)
        assert odometry_since(probe, t2) == []  # no odom from a stale state
        assert len(stale()) == 1  # throttled
        robot.resume_state()
        probe.wait(lambda: odometry_since(probe, t2), 5.0)
    finally:
        robot.resume_state()
        driver.close()


# --- the unitree backend against the Go2 stand-in --------------------------------------------


def sport(robot, since: float) -> list[tuple[float, int, dict]]:
    rows = robot.requests("sport", since)
    return [(r["t"], r["api_id"], json.loads(r["parameter"] or "{}")) for r in rows]


def unitree_driver(python, domain: int, *params: str, stderr=subprocess.STDOUT) -> subprocess.Popen:
    args = ["backend:=unitree", "iface:=lo", f"dds_domain:={domain}", *params]
    cmd = [python, "-m", "dmo_ros.nodes.go2_driver", "--ros-args"]
    for p in args:
        cmd += ["-p", p]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)


def test_unitree_backend_drives_the_robot_and_streams_its_camera(python, probe, robot):
    t_start = time.monotonic()
    driver = unitree_driver(python, robot.domain, "camera_rate:=5.0", "connect_timeout:=15.0")
    try:
        probe.wait(lambda: probe.matched(CMD), 20.0)
        image = probe.next(IMAGE, 10.0)
        diff = np.abs(frame(image).astype(int) - camera_image())  # JPEG over the SDK: lossy
        assert diff.mean() < 3.0 and frame(image)[60, 80].tolist()[0] > 200  # red, so RGB
        assert image.header.frame_id == "front_camera"
        probe.wait(lambda: len(odometry_since(probe, t_start)) >= 3)
        assert_on_the_standin_arc(robot, odometry_since(probe, t_start))

        t0 = time.monotonic()
        probe.publish(TwistStamped, CMD, twist(2.0, 0.1, -3.0))
        got = probe.wait(lambda: (r := sport(robot, t0)) and r[-1][1] == STOP_MOVE and r)
        moves = {(p["x"], p["y"], p["z"]) for _, api, p in got if api == MOVE}
        assert moves == {(0.8, 0.1, -1.0)}  # clamped; StopMove after silence
        assert got[-1][0] - t0 >= 0.4

        t1 = time.monotonic()
        probe.publish(TwistStamped, CMD, twist(float("nan"), 0.0, 0.0))
        assert probe.call(SetBool, "estop", SetBool.Request(data=True)).success
        probe.publish(TwistStamped, CMD, twist(0.3))
        time.sleep(0.5)
        apis = [api for _, api, _ in sport(robot, t1)]
        assert apis == [DAMP]  # neither the NaN nor the latched command reached it

        t2 = time.monotonic()
        assert probe.call(SetBool, "estop", SetBool.Request(data=False)).success
        probe.publish(TwistStamped, CMD, twist(0.3))
        got = probe.wait(lambda: (r := sport(robot, t2)) and r[-1][1] == STOP_MOVE and r)
        assert [api for _, api, _ in got][:3] == [STAND_UP, BALANCE_STAND, MOVE]

        t3 = time.monotonic()
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=20) == 0  # a clean shutdown
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    # StopMove on shutdown (the robot was already stopped; the adapter stops again)
    assert STOP_MOVE in [api for _, api, _ in sport(robot, t3)]


def test_unitree_backend_exits_2_when_the_robot_does_not_answer(python):
    driver = unitree_driver(
        python, claim_domain_id(), "connect_timeout:=1.0", stderr=subprocess.PIPE
    )
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 2
    lines = err.strip().splitlines()  # (the SDK prints its own RPC errors on stdout)
    assert len(lines) == 1 and "did not answer its sport service" in lines[0], err
