"""Bag replay over real DDS: original spacing, raw CDR republished, path and intent marker;
`dmo-ros replay` end to end and on bad input; the shipped RViz configs."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path as PathMsg
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from visualization_msgs.msg import Marker

from dmo_ros import cli
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


def test_replay_keeps_the_original_spacing_and_publishes_path_and_marker(ros_context, tmp_path):
    times = write_bag(tmp_path / "bag")
    listener = Node("listener", context=ros_context)
    got: dict[str, list] = {"image": [], "path": [], "marker": [], "intent": []}

    def keep(key):
        return lambda msg: got[key].append((time.monotonic(), msg))

    listener.create_subscription(Image, "camera/image_raw", keep("image"), 10)
    listener.create_subscription(PathMsg, "replay/path", keep("path"), LATCHED)
    listener.create_subscription(Marker, "replay/intent_marker", keep("marker"), LATCHED)
    listener.create_subscription(Bool, "intent", keep("intent"), LATCHED)
    params = [Parameter("bag", value=str(tmp_path / "bag")), Parameter("start_delay_s", value=1.0)]
    replay = BagReplayNode(context=ros_context, parameter_overrides=params)
    executor = SingleThreadedExecutor(context=ros_context)
    for node in (listener, replay):
        executor.add_node(node)
    deadline = time.monotonic() + 15
    while not replay.done and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.005)
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.005)
    replay.destroy_node()
    listener.destroy_node()

    assert replay.done
    frames = [msg for _, msg in got["image"]]
    assert [m.header.frame_id for m in frames] == [f"f{i}" for i in range(len(times))]
    assert bytes(frames[3].data) == bytes([3] * 48)
    arrived = np.diff([t for t, _ in got["image"]])
    expected = np.diff(times) / 1e9
    assert np.median(np.abs(arrived - expected)) < 0.02, (arrived, expected)
    assert np.max(np.abs(arrived - expected)) < 0.1, (arrived, expected)

    assert [m.data for _, m in got["intent"]] == [False, True]
    path = got["path"][-1][1]
    assert path.header.frame_id == "world"
    assert len(path.poses) == len(times) - 1  # thinned to 0.1 s: the pose 50 ms after one is out
    assert path.poses[-1].pose.position.x == pytest.approx(0.1 + 0.01 * (len(times) - 1))
    marker = got["marker"][-1][1]
    assert marker.header.frame_id == "world"
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
