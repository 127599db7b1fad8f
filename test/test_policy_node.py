"""The policy node over real DDS with the simulated robots: a tiny Push-T policy trained here
drives flexiv_driver's simulated table; a hand-built Go2 policy drives go2_driver's MuJoCo
scene. Time is the simulator's (the nodes use sim time); nothing asserts a wall-clock time.

The policy's camera is remapped to a relay in the probe, so a test can cut it.
"""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool, Trigger
from support.ros_probe import Probe, Spinning, stamp_ns

from dmo_ros.config import ros_parameters
from dmo_ros.errors import UserError
from dmo_ros.nodes.flexiv_driver import FlexivDriver
from dmo_ros.nodes.go2_driver import Go2Driver
from dmo_ros.nodes.policy import PolicyNode
from dmo_ros.nodes.runtime import parameter_overrides
from dmo_ros.nodes.usage import node_parameters
from dmo_ros.rl.agent import save_untrained_policy
from dmo_ros.task import task_for_robot

IMAGE, RELAYED = "camera/image_raw", "policy_camera"
FLEXIV, GO2 = "flexiv_nodes.yaml", "go2_nodes.yaml"
P = 200_000_000  # ns: one control period
REMAP = ["--ros-args", "-r", f"{IMAGE}:={RELAYED}"]


def hand_policy(path, robot: str, image_size: int = 64):
    """A policy checkpoint with untrained tiny networks, as rl/train.py saves one."""
    task = dataclasses.replace(task_for_robot(robot), image_size=image_size)
    sizes = {"deter": 16, "hidden": 16, "stoch": 4, "classes": 4, "cnn_depth": 4}
    return save_untrained_policy(path, task, **sizes)


class Relay:
    """The probe forwards the driver's frames to the policy until `cut`."""

    def __init__(self, probe: Probe) -> None:
        self.on = True
        probe.advertise(Image, RELAYED, qos_profile_sensor_data)
        publisher = probe._publishers[RELAYED]
        probe.node.create_subscription(
            Image, IMAGE, lambda m: self.on and publisher.publish(m), qos_profile_sensor_data
        )


def policy(checkpoint, robot: str, enable: bool, **extra) -> Spinning:
    overrides = parameter_overrides(
        None,
        "policy",
        checkpoint=str(checkpoint),
        robot=robot,
        enable=enable,
        use_sim_time=True,
        **extra,
    )
    return Spinning(lambda c: PolicyNode(context=c, parameter_overrides=overrides, cli_args=REMAP))


def set_bool(probe: Probe, service: str, value: bool):
    return probe.call(SetBool, service, SetBool.Request(data=value))


def stamps(probe: Probe, topic: str, since_ns: int = 0) -> list[int]:
    return [s for _, m in probe.received(topic) if (s := stamp_ns(m)) >= since_ns]


def frames(probe: Probe, n: int) -> int:
    """Wait for `n` more frames; the last one's stamp."""
    for _ in range(n):
        msg = probe.next(IMAGE)
    return stamp_ns(msg)


@pytest.fixture(scope="class")  # gone before the Go2's: one simulated clock at a time
def flexiv(pusht_policy):
    probe = Probe("policy_probe")
    probe.listen(Image, IMAGE, qos_profile_sensor_data)
    probe.listen(PoseStamped, "ee_delta")
    probe.listen(DiagnosticArray, "/diagnostics")
    probe.listen_log()
    relay = Relay(probe)
    overrides = parameter_overrides(FLEXIV, "flexiv_driver", backend="sim", seed=3)
    driver = Spinning(lambda c: FlexivDriver(context=c, parameter_overrides=overrides))
    node = policy(pusht_policy, "pusht", enable=False)
    probe.wait(lambda: probe.count(IMAGE) >= 3, 15.0)
    yield probe, node.node, relay
    node.close()
    driver.close()
    probe.close()


class TestFlexiv:
    """One sim driver and one policy node for the class, in this order."""

    def test_it_declares_what_its_help_and_both_parameter_files_name(self, flexiv):
        _, node, _ = flexiv
        _, params = node_parameters(PolicyNode)
        for name in {p.name for p in params} | set(ros_parameters(FLEXIV, "policy")):
            assert node.has_parameter(name), name
        assert set(ros_parameters(GO2, "policy")) == set(ros_parameters(FLEXIV, "policy"))

    def test_a_disabled_node_sends_nothing(self, flexiv):
        probe, node, _ = flexiv
        frames(probe, 4)
        assert probe.count("ee_delta") == 0 and node.steps == 0

    def test_enabled_it_sends_one_delta_per_control_period(self, flexiv):
        probe, _, _ = flexiv
        assert set_bool(probe, "policy/enable", True).success
        start = frames(probe, 1)
        end = frames(probe, 6)
        probe.wait(lambda: end in stamps(probe, "ee_delta"), 5.0)  # the answer to the last frame
        sent = [s for s in stamps(probe, "ee_delta", start + P) if s <= end]
        seen = [s for s in stamps(probe, IMAGE) if start + P <= s <= end]
        # one delta per step, stamped with the step's time: it answers that step's frame
        assert sent == seen, (sent, seen)
        bound = task_for_robot("pusht").action_high[0]
        for _, msg in probe.received("ee_delta"):
            assert abs(msg.pose.position.x) <= bound and abs(msg.pose.position.y) <= bound
            assert msg.header.frame_id == "world"

    def test_diagnostics_report_rate_latency_frame_age(self, flexiv):
        probe, _, _ = flexiv
        msg = probe.wait(lambda: probe.last("/diagnostics"), 10.0)
        (status,) = msg.status
        values = {kv.key: kv.value for kv in status.values}
        assert {"loop_rate_hz", "inference_latency_ms", "frame_age_s", "last_fault"} <= set(values)
        assert float(values["inference_latency_ms"]) > 0.0

    def test_the_estop_latches_and_releases(self, flexiv):
        probe, node, _ = flexiv
        assert set_bool(probe, "policy/estop", True).success
        latched = frames(probe, 1)
        frames(probe, 4)
        assert stamps(probe, "ee_delta", latched) == []
        assert not set_bool(probe, "policy/enable", True).success  # refused while latched
        assert set_bool(probe, "policy/estop", False).success
        released = frames(probe, 3)
        assert stamps(probe, "ee_delta", released - 2 * P) == []  # released, still disabled
        assert set_bool(probe, "policy/enable", True).success
        again = frames(probe, 1)
        frames(probe, 3)
        assert len(stamps(probe, "ee_delta", again + P)) >= 2
        # the driver's estop (its latched estop/active) latches the policy too
        assert set_bool(probe, "estop", True).success
        probe.wait(lambda: node.safety.latched, 5.0)
        assert set_bool(probe, "estop", False).success
        probe.wait(lambda: not node.safety.latched, 5.0)
        assert not node.safety.enabled

    def test_nan_from_the_network_is_refused(self, flexiv, monkeypatch):
        probe, node, _ = flexiv
        monkeypatch.setattr(node.agent, "act", lambda frames: torch.full((1, 2), float("nan")))
        assert set_bool(probe, "policy/enable", True).success
        start = frames(probe, 1)
        frames(probe, 4)
        assert stamps(probe, "ee_delta", start) == []
        assert any("non-finite" in line for line in probe.logs("policy"))
        monkeypatch.undo()
        set_bool(probe, "policy/enable", False)

    def test_a_scene_reset_restarts_the_filtered_state(self, flexiv, monkeypatch):
        probe, node, _ = flexiv
        resets = []
        reset = node.agent.reset
        monkeypatch.setattr(node.agent, "reset", lambda batch: resets.append(batch) or reset(batch))
        assert set_bool(probe, "policy/enable", True).success
        frames(probe, 3)
        assert resets == [1]  # enabling starts afresh, then the state carries over
        assert probe.call(Trigger, "reset", Trigger.Request()).success
        frames(probe, 3)
        assert resets == [1, 1]
        monkeypatch.undo()

    def test_cutting_the_camera_stops_the_deltas_within_two_periods(self, flexiv):
        probe, node, relay = flexiv
        assert set_bool(probe, "policy/enable", True).success
        frames(probe, 3)
        relay.on = False
        cut = frames(probe, 1)
        frames(probe, 4)
        assert stamps(probe, "ee_delta", cut + P) == []
        assert node.safety.stale and "camera" in node.safety.last_fault
        assert any("no fresh camera frame" in line for line in probe.logs("policy"))
        relay.on = True
        back = frames(probe, 2)
        probe.wait(lambda: stamps(probe, "ee_delta", back), 5.0)


def test_go2_zero_velocity_within_two_periods_of_a_cut_camera(tmp_path):
    checkpoint = hand_policy(tmp_path / "go2.pt", "go2")
    probe = Probe("go2_policy_probe")
    probe.listen(Image, IMAGE, qos_profile_sensor_data)
    probe.listen(TwistStamped, "cmd_vel")
    relay = Relay(probe)
    overrides = parameter_overrides(GO2, "go2_driver", backend="sim", seed=1)
    driver = Spinning(lambda c: Go2Driver(context=c, parameter_overrides=overrides))
    node = policy(checkpoint, "go2", enable=True)
    try:
        probe.wait(lambda: probe.count("cmd_vel") >= 3, 20.0)
        start = stamps(probe, "cmd_vel")[-1]
        relay.on = False
        cut = frames(probe, 1)  # the last frame the policy may have seen is older
        frames(probe, 4)
        twists = [m for _, m in probe.received("cmd_vel") if stamp_ns(m) > start]
        after = [m for m in twists if stamp_ns(m) >= cut + 2 * P]
        assert after, "no command after the cut"
        for m in after:
            assert (m.twist.linear.x, m.twist.linear.y, m.twist.angular.z) == (0.0, 0.0, 0.0)
        low, high = (np.array(b) for b in (node.node.task.action_low, node.node.task.action_high))
        for m in twists:
            v = np.array([m.twist.linear.x, m.twist.linear.y, m.twist.angular.z])
            assert np.all(v >= low) and np.all(v <= high)
    finally:
        node.close()
        driver.close()
        probe.close()


@pytest.mark.parametrize(
    "case, expected",
    [("go2", "push_cube"), ("32px", "32px"), ("corrupt", "not a readable dmo_ros checkpoint")],
)
def test_a_checkpoint_that_does_not_fit_is_one_line(case, expected, tmp_path, ros_context):
    path = tmp_path / "bad.pt"
    if case == "corrupt":
        path.write_bytes(b"not a checkpoint")
    else:
        hand_policy(path, *(("go2",) if case == "go2" else ("pusht", 32)))
    overrides = parameter_overrides(None, "policy", checkpoint=str(path), robot="pusht")
    with pytest.raises(UserError) as caught:
        PolicyNode(context=ros_context, parameter_overrides=overrides)
    text = str(caught.value)
    assert expected in text and "\n" not in text and text.startswith("policy: ")


def test_a_bad_checkpoint_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    cmd = [sys.executable, "-m", "dmo_ros.nodes.policy", "--ros-args", "-p", f"checkpoint:={bad}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("policy: ") and str(bad) in lines[0], lines
