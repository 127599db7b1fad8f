"""Bag replay over real DDS: spacing on the clock, raw CDR republished, path and intent marker;
`dmo-ros replay` end to end and on bad input; the shipped RViz configs."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path as PathMsg
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from visualization_msgs.msg import Marker

from dmo_ros import cli
from dmo_ros.data.bag_reader import open_bag
from dmo_ros.data.bag_writer import BagWriter
from dmo_ros.nodes.bag_replay import BagReplayNode

ROOT = Path(__file__).resolve().parent.parent
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
# Irregular spacing (s) between camera frames, so that a fixed-rate replay would fail.
GAPS = [0.1, 0.1, 0.3, 0.05, 0.2, 0.1, 0.25, 0.1, 0.15, 0.1]


def write_bag(path: Path) -> list[int]:
    """A Push-T bag: images at GAPS, an ee_pose after each, intent off then on. Image times."""
    t = 1_700_000_000_000_000_000
    times = []
    with BagWriter(path, metadata={"dmo_ros.robot": "flexiv", "dmo_ros.task": "pusht"}) as w:
        w.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        w.add_topic("/ee_pose", "geometry_msgs/msg/PoseStamped")
        w.add_topic("/intent", "std_msgs/msg/Bool")
        w.write("/intent", t - 1000, serialize_message(Bool(data=False)))
        for i, gap in enumerate([0.0, *GAPS]):
            t += int(gap * 1e9)
            img = Image(height=4, width=4, encoding="rgb8", step=12)
            img.header.frame_id = f"f{i}"
            img.data = bytes([i] * 48)
            w.write("/camera/image_raw", t, serialize_message(img))
            pose = PoseStamped()
            pose.header.frame_id = "world"
            pose.pose.position.x, pose.pose.position.y = 0.1 + 0.01 * i, 0.2
            pose.pose.orientation.w = 1.0
            w.write("/ee_pose", t + 1000, serialize_message(pose))
            times.append(t)
            if i == 6:
                w.write("/intent", t + 2000, serialize_message(Bool(data=True)))
    return times


def ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def wait_for(executor, done, deadline_s: float = 30.0, every=None) -> None:
    deadline = time.monotonic() + deadline_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        if every is not None:
            every()
        executor.spin_once(timeout_sec=0.005)


def test_replay_follows_the_clock_and_stamps_path_and_marker_with_bag_time(ros_context, tmp_path):
    """Under use_sim_time the test owns /clock: a message may only come once the clock has
    reached its bag offset / rate, and each must come once it has (no wall-clock timing)."""
    times = write_bag(tmp_path / "bag")
    bag = open_bag(tmp_path / "bag")
    rate, c0 = 2.0, 1_000 * 1_000_000_000  # the sim clock starts at 1000 s
    due = {"image": [], "pose": [], "intent": []}
    kind = {"/camera/image_raw": "image", "/ee_pose": "pose", "/intent": "intent"}
    for topic, t, _ in bag.messages():
        due[kind[topic]].append(c0 + round((t - bag.start_ns) / rate))

    listener = Node("listener", context=ros_context)
    clock = [c0]  # the clock the test has published last
    got: dict[str, list] = {"image": [], "pose": [], "intent": [], "path": [], "marker": []}

    def keep(key):
        return lambda msg: got[key].append((clock[0], msg))

    listener.create_subscription(Image, "camera/image_raw", keep("image"), 10)
    listener.create_subscription(PoseStamped, "ee_pose", keep("pose"), 10)
    listener.create_subscription(Bool, "intent", keep("intent"), LATCHED)
    listener.create_subscription(PathMsg, "replay/path", keep("path"), LATCHED)
    listener.create_subscription(Marker, "replay/intent_marker", keep("marker"), LATCHED)
    clock_pub = listener.create_publisher(Clock, "/clock", 10)

    def tick() -> None:
        clock_pub.publish(Clock(clock=Time(nanoseconds=clock[0]).to_msg()))

    params = {"bag": str(tmp_path / "bag"), "rate": rate, "start_delay_s": 0.5}
    replay = BagReplayNode(
        context=ros_context,
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
        + [Parameter("use_sim_time", value=True)],
    )
    executor = SingleThreadedExecutor(context=ros_context)
    for node in (listener, replay):
        executor.add_node(node)
    try:
        # The clock stands at c0 until the first message (the intent, at offset 0) is out.
        wait_for(executor, lambda: got["intent"], every=tick)

        def arrived() -> int:
            return sum(len(got[k]) for k in due)

        halfway = sorted(d for ds in due.values() for d in ds)[12]
        while not replay.done:
            clock[0] += 10_000_000  # 10 ms of sim time per step
            tick()
            expected = sum(d <= clock[0] for ds in due.values() for d in ds)
            wait_for(executor, lambda expected=expected: arrived() >= expected)
            if halfway <= clock[0] < halfway + 10_000_000:
                # The clock stands still for a second of wall time: nothing more may come
                # (a replay paced by the wall clock would run on through the bag).
                hold = time.monotonic() + 1.0
                wait_for(executor, lambda hold=hold: time.monotonic() > hold, every=tick)
            assert arrived() == expected, "a message came before its time"
        # Path and marker come after the pose they show: wait for the last pose's.
        last_pose = times[-1] + 1000
        wait_for(executor, lambda: got["path"] and ns(got["path"][-1][1].header.stamp) == last_pose)
        wait_for(
            executor,
            lambda: got["marker"] and ns(got["marker"][-1][1].header.stamp) == last_pose,
        )
    finally:
        replay.destroy_node()
        listener.destroy_node()

    for key, dues in due.items():
        assert len(got[key]) == len(dues), key
        for (at, _), d in zip(got[key], dues):
            assert d <= at, (key, d, at)  # never published before the clock reached its time
    frames = [msg for _, msg in got["image"]]
    assert [m.header.frame_id for m in frames] == [f"f{i}" for i in range(len(times))]
    assert bytes(frames[3].data) == bytes([3] * 48)
    assert [m.data for _, m in got["intent"]] == [False, True]

    pose_times = [t + 1000 for t in times]  # each ee_pose is logged 1 us after its image
    kept, last = [], None
    for t in pose_times:  # the path keeps one pose per 0.1 s of bag time
        if last is None or t - last >= 100_000_000:
            kept.append(t)
            last = t
    path = got["path"][-1][1]
    assert path.header.frame_id == "world"
    assert [ns(p.header.stamp) for p in path.poses] == kept  # bag times, not zero, not now
    assert ns(path.header.stamp) == kept[-1] == pose_times[-1]
    assert path.poses[-1].pose.position.x == pytest.approx(0.1 + 0.01 * (len(times) - 1))
    marker = got["marker"][-1][1]
    assert marker.header.frame_id == "world" and ns(marker.header.stamp) == kept[-1]
    assert marker.color.g > 0.8 and marker.color.r < 0.5  # green: intent on at the end
    assert marker.pose.position.x == pytest.approx(path.poses[-1].pose.position.x)


def test_dmo_ros_replay_runs_a_bag_to_the_end(tmp_path):
    write_bag(tmp_path / "bag")
    out = subprocess.run(
        [sys.executable, "-m", "dmo_ros.cli", "replay", str(tmp_path / "bag"), "--rate", "4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "replaying" in out.stdout
    assert "published 24 messages" in out.stdout  # 11 images, 11 poses, 2 intents


def test_replay_of_a_missing_or_broken_bag_is_one_line(tmp_path, capsys):
    assert cli.main(["replay", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "junk_0.mcap").write_bytes(b"not an mcap file at all")
    assert cli.main(["replay", str(tmp_path / "junk"), "--rate", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "junk" in err[0]
    assert cli.main(["replay", str(tmp_path / "junk"), "--rate", "0"]) == 2


@pytest.mark.parametrize("name,frame", [("pusht", "world"), ("push_cube", "odom")])
def test_rviz_configs_show_camera_path_and_intent(name, frame):
    config = yaml.safe_load((ROOT / "rviz" / f"{name}.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == frame
    shown = {d["Class"]: d for d in manager["Displays"]}
    topics = {d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    assert {"/camera/image_raw", "/replay/path", "/replay/intent_marker"} <= topics
    for cls in ("Image", "Path", "Marker", "Grid"):
        assert f"rviz_default_plugins/{cls}" in shown
    assert shown["rviz_default_plugins/Image"]["Topic"]["Reliability Policy"] == "Best Effort"
