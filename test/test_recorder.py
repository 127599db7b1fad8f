"""The recorder node over real DDS: raw CDR into a rosbag2 MCAP bag, read back with open_bag.

Publishers live in the test's own node; the recorder subscribes without deserialising.
"""

import time

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Empty, Header

from dmo_ros.data.bag_reader import open_bag
from dmo_ros.errors import UserError
from dmo_ros.nodes.recorder import ArrivalStamps, RecorderNode

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


def recorder(ctx, out, **params) -> RecorderNode:
    values = {"task_config": "pusht.yaml", "out": str(out), **params}
    overrides = [Parameter(k, value=v) for k, v in values.items()]
    return RecorderNode(context=ctx, parameter_overrides=overrides)


def frame(i: int) -> np.ndarray:
    return ((np.arange(48 * 64 * 3).reshape(48, 64, 3) + 7 * i) % 251).astype(np.uint8)


class Talker:
    """Publishes the Push-T task's topics at 10 Hz (images) from a node of the test."""

    def __init__(self, ctx):
        self.node = Node("talker", context=ctx)
        n = self.node
        self.image = n.create_publisher(Image, "camera/image_raw", 10)
        self.action = n.create_publisher(PoseStamped, "ee_delta", 10)
        # A best-effort publisher: the recorder must adapt its subscription to match it.
        self.state = n.create_publisher(PoseStamped, "ee_pose", qos_profile_sensor_data)
        self.intent = n.create_publisher(Bool, "intent", LATCHED)
        self.milestone = n.create_publisher(Empty, "milestone", 10)
        self.reset = n.create_publisher(Header, "reset", 10)  # a sim driver's new scene
        self.sent = 0
        self.sent_at: list[int] = []  # system time just before each image was published

    def publish(self, i: int) -> None:
        img = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
        img.data = frame(i).tobytes()
        self.sent_at.append(time.time_ns())
        self.image.publish(img)
        pose = PoseStamped()
        pose.pose.position.x = 0.01 * i
        self.action.publish(pose)
        self.state.publish(pose)
        if i == 3:
            self.milestone.publish(Empty())
        if i == 5:
            self.reset.publish(Header(frame_id="world"))
        self.sent += 1


def spin_for(executor, seconds: float, every=None, period: float = 0.1) -> None:
    deadline = time.monotonic() + seconds
    next_tick, i = time.monotonic(), 0
    while time.monotonic() < deadline:
        if every is not None and time.monotonic() >= next_tick:
            every(i)
            i += 1
            next_tick += period
        executor.spin_once(timeout_sec=0.01)


def spin_until(executor, done, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        executor.spin_once(timeout_sec=0.01)


def test_records_every_task_topic_and_the_latched_intent(ros_context, tmp_path):
    talker = Talker(ros_context)
    talker.intent.publish(Bool(data=True))  # before the recorder exists: latched delivery
    rec = recorder(ros_context, tmp_path / "bag")
    executor = SingleThreadedExecutor(context=ros_context)
    for node in (talker.node, rec):
        executor.add_node(node)
    publishers = [talker.image, talker.action, talker.state, talker.milestone, talker.reset]
    spin_until(executor, lambda: all(p.get_subscription_count() for p in publishers))
    spin_for(executor, 2.0, every=talker.publish)
    n = talker.sent
    expected = {"/camera/image_raw": n, "/ee_delta": n, "/ee_pose": n}
    expected |= {"/milestone": 1, "/reset": 1, "/intent": 1}
    spin_until(executor, lambda: all(rec.counts.get(t) == k for t, k in expected.items()))
    closed_at = time.time_ns()
    rec.destroy_node()
    talker.node.destroy_node()

    bag = open_bag(tmp_path / "bag")
    assert bag.recovered == []
    assert bag.metadata["dmo_ros.task"] == "pusht"
    assert bag.metadata["dmo_ros.robot"] == "flexiv"
    assert bag.metadata["dmo_ros.sim"] == "true"
    assert bag.metadata["dmo_ros.camera"] == "sim 64x64"
    topics = {t: n for t, (_, n) in bag.topics.items()}
    assert topics["/camera/image_raw"] == n
    assert topics["/ee_delta"] == n
    assert topics["/ee_pose"] == n
    assert topics["/milestone"] == 1
    assert topics["/reset"] == 1  # recorded by default, as the launch's parameter file lists it
    assert topics["/intent"] == 1
    assert bag.topics["/ee_delta"][0] == "geometry_msgs/msg/PoseStamped"
    info = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())
    offered = {
        t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"][0]
        for t in info["rosbag2_bagfile_information"]["topics_with_message_count"]
    }
    assert offered["/intent"]["durability"] == "transient_local"  # replays latched
    assert offered["/ee_pose"]["reliability"] == "best_effort"
    assert offered["/camera/image_raw"]["reliability"] == "reliable"
    images = [bag.decode(t, d) for t, _, d in bag.messages(["camera/image_raw"])]
    for i, msg in enumerate(images):
        assert (msg.height, msg.width, msg.encoding) == (48, 64, "rgb8")
        np.testing.assert_array_equal(np.asarray(msg.data).reshape(48, 64, 3), frame(i))
    ((_, _, data),) = bag.messages(["intent"])
    assert bag.decode("intent", data).data is True
    stamps = bag.timestamps("camera/image_raw")
    assert np.all(np.diff(stamps) > 0)
    # Stamped on receipt (as rosbag2 does): after its publisher sent it, before the bag closed.
    assert all(sent <= t <= closed_at for sent, t in zip(talker.sent_at, stamps, strict=True))


def test_never_overwrites_an_existing_bag(ros_context, tmp_path):
    out = tmp_path / "bag"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="already exists"):
        recorder(ros_context, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"


def test_refuses_when_the_disk_cannot_hold_the_plan(ros_context, tmp_path):
    # 4k frames at 120 Hz for 115 days: petabytes planned, no disk has that free.
    with pytest.raises(UserError, match="not enough free disk space"):
        recorder(ros_context, tmp_path / "bag", duration_s=1e7, camera_sim=[4096.0, 4096.0, 120.0])
    assert not (tmp_path / "bag").exists()


def test_duration_closes_the_bag_and_splits_by_duration(ros_context, tmp_path):
    talker = Talker(ros_context)
    rec = recorder(ros_context, tmp_path / "bag", duration_s=2.5, split_duration_s=0.8)
    executor = SingleThreadedExecutor(context=ros_context)
    for node in (talker.node, rec):
        executor.add_node(node)
    spin_for(executor, 1.0)
    deadline = time.monotonic() + 60
    i = 0
    while not rec.finished and time.monotonic() < deadline:
        talker.publish(i)
        i += 1
        spin_for(executor, 0.1)
    assert rec.finished, "the recorder did not stop after duration_s"
    rec.destroy_node()
    talker.node.destroy_node()
    bag = open_bag(tmp_path / "bag")
    assert len(bag.files) >= 2, "no split after split_duration_s"
    assert bag.topics["/camera/image_raw"][1] == rec.counts["/camera/image_raw"] > 5
    assert sum(1 for _ in bag.messages(["camera/image_raw"])) == rec.counts["/camera/image_raw"]


def test_sim_stamps_follow_the_arrival_order_not_the_callback_order():
    """Under use_sim_time a message gets the sim time of the last /clock tick delivered before
    it, even when its callback runs after later ticks (times: DDS receive ns, sim ns)."""
    stamps = ArrivalStamps()
    assert stamps.add("intent", 5, b"before") == []  # no tick yet: held
    assert stamps.tick(10, 1_000) == []  # it predates the sim clock: dropped
    assert stamps.add("image", 12, b"i1") == []  # after the last tick: the next one decides
    assert stamps.add("action", 14, b"a1") == []
    assert stamps.tick(20, 1_200) == [("image", 1_000, b"i1"), ("action", 1_000, b"a1")]
    assert stamps.tick(30, 1_400) == []
    # delivered between the first two ticks, its callback only now: still the first tick's time
    assert stamps.add("milestone", 19, b"m") == [("milestone", 1_000, b"m")]
    assert stamps.add("image", 31, b"i3") == []
    assert stamps.flush() == [("image", 1_400, b"i3")]  # the recording ends: the last tick
    assert stamps.flush() == []
