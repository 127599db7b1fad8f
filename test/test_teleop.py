"""Teleop: keys from a real pseudo-terminal, the key and joystick mappings, and the teleop +
intent_button nodes over DDS on a sim clock the test drives (one action per control step only
while the deadman is held, intent toggle, milestone)."""

import os
import termios
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Empty

from dmo_ros.errors import UserError
from dmo_ros.nodes.intent_button import IntentButtonNode
from dmo_ros.nodes.keyboard import KeyReader, decode_keys
from dmo_ros.nodes.teleop import JoyMapper, KeyboardMapper, TeleopNode, scale_to_bounds
from dmo_ros.task import task_for_robot

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_key_reader_decodes_a_real_terminal_and_restores_it(pty):
    master, device = pty
    fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
    before = termios.tcgetattr(fd)
    reader = KeyReader(device)
    lflag = termios.tcgetattr(fd)[3]
    assert not lflag & termios.ICANON and not lflag & termios.ECHO  # keys arrive one by one
    assert lflag & termios.ISIG  # Ctrl-C still stops the node
    os.write(master, b"w\x1b[Aa \x1bOCm+")
    assert reader.read(timeout=1.0) == ["w", "up", "a", "space", "right", "m", "+"]
    assert reader.read(timeout=0.05) == []
    reader.close()
    assert termios.tcgetattr(fd) == before
    os.close(fd)


def test_key_reader_refuses_what_is_not_a_terminal(tmp_path):
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(UserError, match="not a terminal"):
            KeyReader(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    with pytest.raises(UserError, match="cannot open"):
        KeyReader(str(tmp_path / "no_tty"))


def test_decode_keys_handles_escape_sequences():
    assert decode_keys("\x1b[B\x1b[D\x1bx") == ["down", "left", "esc", "x"]


def test_keyboard_mapping_holds_keys_like_a_terminal_sends_them():
    keys = KeyboardMapper(3, speed=0.5, first_hold_s=0.7, repeat_hold_s=0.25)
    assert keys.command(0.0) is None  # deadman: nothing held, no action
    keys.press("w", 0.0)
    np.testing.assert_allclose(keys.command(0.65), [0.5, 0, 0])  # bridges auto-repeat delay
    assert keys.command(0.75) is None
    keys.press("a", 1.0)
    keys.press("a", 1.5)  # auto-repeat: now the key lets go soon after release
    keys.press("e", 1.5)
    np.testing.assert_allclose(keys.command(1.7), [0, 0.5, -0.5])
    assert keys.command(1.8) is not None and keys.command(2.3) is None
    keys.press("up", 3.0)
    keys.press("down", 3.0)
    np.testing.assert_allclose(keys.command(3.1), [0, 0, 0])  # both held: held still
    assert keys.press("space", 4.0) == "intent_toggle"
    assert keys.press("m", 4.0) == "milestone"
    for _ in range(10):
        assert keys.press("+", 4.0) == "speed"
    assert keys.speed == 1.0
    for _ in range(20):
        keys.press("-", 4.0)
    assert keys.speed == pytest.approx(0.1)


def test_image_layout_moves_the_pusher_the_way_the_screen_shows():
    keys = KeyboardMapper(2, layout="image", speed=1.0)
    keys.press("w", 0.0)  # up the image: -y on the board (y points down the image)
    np.testing.assert_allclose(keys.command(0.1), [0, -1])
    keys.press("right", 0.0)
    np.testing.assert_allclose(keys.command(0.1), [1, -1])
    with pytest.raises(UserError, match="keyboard_layout"):
        KeyboardMapper(3, layout="image")


def test_commands_scale_to_asymmetric_bounds():
    go2 = task_for_robot("go2")  # vx in [-0.4, 0.8]
    np.testing.assert_allclose(scale_to_bounds(go2, np.array([1.0, -0.5, 0.0])), [0.8, -0.2, 0.0])
    np.testing.assert_allclose(scale_to_bounds(go2, np.array([-1.0, 0.0, 2.0])), [-0.4, 0.0, 1.0])


def test_joy_mapping_needs_the_deadman_and_steps_speed():
    joy = JoyMapper(axes=[1, 0, 3], signs=[1.0, -1.0, 1.0], deadman_button=4, speed=0.5)
    joy.update(Joy(axes=[0.5, 1.0, 0.0, -0.05], buttons=[0, 0, 0, 0, 0]))
    assert joy.command() is None
    joy.update(Joy(axes=[0.5, 1.0, 0.0, -0.05], buttons=[0, 0, 0, 0, 1]))
    np.testing.assert_allclose(joy.command(), [0.5, -0.25, 0.0])  # -0.05 is in the dead zone
    joy.update(Joy(axes=[0.5, 1.0, 0.0, 0.0], buttons=[0, 0, 0, 1, 1]))  # speed up, once
    joy.update(Joy(axes=[0.5, 1.0, 0.0, 0.0], buttons=[0, 0, 0, 1, 1]))  # still held
    assert joy.speed == pytest.approx(0.6)


def make_nodes(ctx, **teleop_params):
    """teleop + intent_button on the test's sim clock, and a listener that also drives it."""
    params = {"task_config": "push_cube.yaml", "use_sim_time": True, **teleop_params}
    teleop = TeleopNode(
        context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )
    button = IntentButtonNode(
        context=ctx, parameter_overrides=[Parameter("use_sim_time", value=True)]
    )
    listener = Node("listener", context=ctx)
    got = {"cmd_vel": [], "intent": [], "milestone": []}
    listener.create_subscription(TwistStamped, "cmd_vel", got["cmd_vel"].append, 10)
    listener.create_subscription(Bool, "intent", lambda m: got["intent"].append(m.data), LATCHED)
    listener.create_subscription(Empty, "milestone", lambda m: got["milestone"].append(1), 10)
    executor = SingleThreadedExecutor(context=ctx)
    for node in (teleop, button, listener):
        executor.add_node(node)
    return [teleop, button, listener], executor, got


def spin(executor, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.005)


class SimClock:
    """The test owns /clock: each `tick` advances sim time one 0.2 s control period."""

    PERIOD_NS = 200_000_000

    def __init__(self, node, executor) -> None:
        self.ns = 1_000 * 10**9
        self._executor = executor
        self._pub = node.create_publisher(Clock, "/clock", 10)

    def tick(self, steps: int = 1, before=None) -> None:
        for _ in range(steps):
            if before is not None:
                before()
                spin(self._executor, 0.06)  # the key/joy input lands before the step
            self.ns += self.PERIOD_NS
            self._pub.publish(Clock(clock=Time(sec=self.ns // 10**9, nanosec=self.ns % 10**9)))
            spin(self._executor, 0.06)


def stamps_ns(messages) -> list[int]:
    return [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in messages]


def test_keyboard_teleop_over_dds(ros_context, pty):
    master, device = pty
    nodes, executor, got = make_nodes(ros_context, keyboard_device=device, speed=0.5)
    clock = SimClock(nodes[2], executor)
    try:
        spin(executor, 0.5)
        clock.tick(3)
        assert got["cmd_vel"] == [] and got["intent"][-1] is False  # no key, no action
        clock.tick(10, before=lambda: os.write(master, b"w"))  # held (auto-repeat)
        held = len(got["cmd_vel"])
        spin(executor, 1.0)  # released: longer than the first-press hold (0.7 s)
        clock.tick(5)
        os.write(master, b" m")
        spin(executor, 0.5)
        clock.tick(1)
    finally:
        for node in nodes:
            node.destroy_node()
    # One action per control step of sim time while held, each stamped with its step; none
    # after the release. (A step may miss the key only if the machine stalls > 0.25 s.)
    assert 1 <= held <= 10 and len(got["cmd_vel"]) == held
    stamps = np.array(stamps_ns(got["cmd_vel"]))
    assert np.all(stamps % SimClock.PERIOD_NS == 0) and len(set(stamps)) == len(stamps)
    assert stamps[0] > 1_000 * 10**9 + 3 * SimClock.PERIOD_NS  # not before the key
    assert stamps[-1] <= 1_000 * 10**9 + 13 * SimClock.PERIOD_NS  # not after the release
    for msg in got["cmd_vel"]:
        assert (msg.twist.linear.x, msg.twist.linear.y, msg.twist.angular.z) == (0.4, 0.0, 0.0)
    assert got["intent"][-1] is True
    assert got["milestone"] == [1]


def test_joystick_buttons_toggle_intent_once_per_press(ros_context):
    nodes, executor, got = make_nodes(ros_context, input="joy")
    clock = SimClock(nodes[2], executor)
    pub = nodes[2].create_publisher(Joy, "joy", 10)
    a_held = Joy(axes=[1.0, 0.0, 0.0, 0.0], buttons=[1, 0, 0, 0, 1])  # A + deadman, stick left
    try:
        spin(executor, 0.5)
        clock.tick(5, before=lambda: [pub.publish(a_held) for _ in range(3)])
    finally:
        for node in nodes:
            node.destroy_node()
    assert got["intent"][-1] is True and nodes[1].toggles == 1  # held for 15 messages
    assert 1 <= len(got["cmd_vel"]) <= 5
    assert np.all(np.array(stamps_ns(got["cmd_vel"])) % SimClock.PERIOD_NS == 0)
    twist = got["cmd_vel"][-1].twist
    assert (twist.linear.x, twist.linear.y) == (0.0, pytest.approx(0.5 * 0.4))
