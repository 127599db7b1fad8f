"""Bag replay node and `dmo-ros replay BAG`: the pip-only stand-in for `ros2 bag play`.

Publishes every message of a bag on its topic with the original spacing (divided by
`rate`), as serialized CDR (no decoding), and, for RViz, the robot path so far as
`nav_msgs/Path` on `replay/path` and the intent label as a sphere marker on the robot
(green: intent on, grey: off) on `replay/intent_marker`.

mode 'all' publishes the bag and the path/marker; mode 'viz' publishes only the path and
marker (replay.launch.py runs `ros2 bag play` beside it for the bag's own topics).

The spacing is kept on a steady clock, or on /clock under `use_sim_time` (a replay can then
be stepped, and its timing checked, from sim time). Path and marker carry the bag time of the
newest pose: the time the replayed messages were recorded at and the one `ros2 bag play
--clock` puts on /clock, so they line up with the bag in RViz; the node clock would put today's
time beside poses from another day.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

import rclpy
from geometry_msgs.msg import Pose, PoseStamped
from nav_msgs.msg import Path
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from dmo_ros.data.bag_reader import Bag, open_bag
from dmo_ros.errors import UserError
from dmo_ros.nodes import entry, stop_signals
from dmo_ros.nodes.entry import build
from dmo_ros.nodes.params import declare
from dmo_ros.nodes.recorder import message_class
from dmo_ros.nodes.runtime import destroy, spin
from dmo_ros.task import task_for_robot

PATH_PERIOD_NS = 100_000_000  # one path pose per 0.1 s of bag time is plenty for RViz
POLL_S = 0.02  # how often a sim clock is read while waiting for a message's time
LATCHED_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
STATE_TYPES = ("geometry_msgs/msg/PoseStamped", "nav_msgs/msg/Odometry")
MARKER_SIZE = {"flexiv": 0.03, "go2": 0.4}  # metres: the end-effector disc / the dog


def _bare(topic: str) -> str:
    return topic.lstrip("/")


class BagReplayNode(Node):
    """Replays `bag` in a thread; `done` turns true at the end (never with `loop`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bag_replay", **kwargs)
        self._thread: threading.Thread | None = None
        build(self, self._setup)

    def _setup(self) -> None:
        path = declare(self, "bag", "", "bag folder to replay")
        self.rate = declare(self, "rate", 1.0, "playback speed factor", 0.01, 100.0)
        self.loop = declare(self, "loop", False, "start over at the end")
        self.mode = declare(self, "mode", "all", "all: bag + path/marker; viz: path/marker only")
        delay = declare(self, "start_delay_s", 1.0, "wait for subscribers first", 0.0, 60.0)
        if self.mode not in ("all", "viz"):
            raise UserError(f"bag_replay.mode: unknown mode '{self.mode}' (all or viz)")
        if not path:
            raise UserError("bag_replay: parameter 'bag' is empty (which bag to replay?)")
        self.bag: Bag = open_bag(path)
        robot = self.bag.metadata.get("dmo_ros.robot", "")
        self._marker_size = MARKER_SIZE.get(robot, 0.1)
        self.state_topic = self._find_state_topic(robot)
        self.intent_topic = self.bag.find_topic("intent", "std_msgs/msg/Bool")
        self._pubs = {}
        if self.mode == "all":
            for topic, (msgtype, _) in self.bag.topics.items():
                qos = LATCHED_QOS if topic == self.intent_topic else 10
                self._pubs[topic] = self.create_publisher(message_class(msgtype), topic, qos)
        self._path_pub = self.create_publisher(Path, "replay/path", LATCHED_QOS)
        self._marker_pub = self.create_publisher(Marker, "replay/intent_marker", LATCHED_QOS)
        self.published = 0
        self.done = False
        self.intent = False
        self._path = Path()
        self._last_path_ns = -PATH_PERIOD_NS
        self._pose: Pose | None = None
        self._header = Header()  # frame and bag time of the newest pose
        self._clock = (
            self.get_clock()
            if self.get_parameter("use_sim_time").value
            else Clock(clock_type=ClockType.STEADY_TIME)
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, args=(delay,), daemon=True)
        self._thread.start()

    def _find_state_topic(self, robot: str) -> str | None:
        """The robot's pose topic: the task's state topic, else the bag's one pose-typed topic."""
        if robot in ("flexiv", "go2"):
            return self.bag.find_topic(task_for_robot(robot).state_topic)
        candidates = [
            t
            for t, (msgtype, _) in self.bag.topics.items()
            if msgtype in STATE_TYPES and not _bare(t).startswith(("task/", "ee_delta"))
        ]
        return candidates[0] if len(candidates) == 1 else None

    def _play(self, delay: float) -> None:
        if self._stop.wait(delay):
            return
        while not self._stop.is_set():
            self._play_once()
            if not self.loop:
                break
            self._path = Path()
            self._last_path_ns = -PATH_PERIOD_NS
        self.done = True

    def _clock_start(self) -> int | None:
        """The clock's reading once it runs (sim time: from the first /clock); None: stopped."""
        while not (now := self._clock.now().nanoseconds):
            if self._stop.wait(POLL_S):
                return None
        return now

    def _wait_until(self, due_ns: int) -> bool:
        """Wait until the clock reads `due_ns`; False once stopped."""
        while (left := due_ns - self._clock.now().nanoseconds) > 0:
            if self._stop.wait(min(left * 1e-9, POLL_S)):
                return False
        return not self._stop.is_set()

    def _play_once(self) -> None:
        start_ns = self.bag.start_ns
        if (t0 := self._clock_start()) is None:
            return
        for topic, t_ns, data in self.bag.messages():
            if not self._wait_until(t0 + round((t_ns - start_ns) / self.rate)):
                return
            if topic in self._pubs:
                self._pubs[topic].publish(data)
                self.published += 1
            if topic == self.state_topic:
                self._on_state(t_ns, self.bag.decode(topic, data))
            elif topic == self.intent_topic:
                value = bool(self.bag.decode(topic, data).data)
                if value != self.intent:
                    self.intent = value
                    self._publish_marker()

    def _on_state(self, t_ns: int, msg: Any) -> None:
        pose = msg.pose.pose if hasattr(msg, "child_frame_id") else msg.pose  # Odometry / Pose
        self._pose = Pose()
        self._pose.position.x, self._pose.position.y = pose.position.x, pose.position.y
        self._pose.position.z = pose.position.z
        q = pose.orientation
        self._pose.orientation.x, self._pose.orientation.y = q.x, q.y
        self._pose.orientation.z, self._pose.orientation.w = q.z, q.w
        self._header = Header(frame_id=msg.header.frame_id, stamp=Time(nanoseconds=t_ns).to_msg())
        if t_ns - self._last_path_ns < PATH_PERIOD_NS:
            return
        self._last_path_ns = t_ns
        self._path.header = self._header
        self._path.poses.append(PoseStamped(header=self._header, pose=self._pose))
        self._path_pub.publish(self._path)
        self._publish_marker()

    def _publish_marker(self) -> None:
        if self._pose is None:
            return
        m = Marker(ns="intent", id=0, type=Marker.SPHERE, action=Marker.ADD, pose=self._pose)
        m.header = self._header
        m.scale.x = m.scale.y = m.scale.z = self._marker_size
        m.color.a = 0.8
        if self.intent:
            m.color.r, m.color.g, m.color.b = 0.1, 0.9, 0.2
        else:
            m.color.r = m.color.g = m.color.b = 0.6
        self._marker_pub.publish(m)

    def destroy_node(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2.0)
        super().destroy_node()


def run(args: argparse.Namespace) -> int:
    """`dmo-ros replay BAG [--rate r] [--loop]`."""
    from dmo_ros.nodes.dds_env import use_local_dds
    from dmo_ros.nodes.runtime import parameter_overrides

    if not args.rate > 0:
        raise UserError(f"--rate {args.rate}: must be positive")
    domain = use_local_dds()
    stop_signals.init(None)
    try:
        node = BagReplayNode(
            parameter_overrides=parameter_overrides(
                None, "bag_replay", bag=str(args.bag), rate=float(args.rate), loop=args.loop
            )
        )
        count = sum(n for _, n in node.bag.topics.values())
        print(
            f"replaying {args.bag}: {count} messages on {len(node.bag.topics)} topics, "
            f"{(node.bag.end_ns - node.bag.start_ns) / 1e9:.1f} s at rate {args.rate:g}"
            f"{' (loop)' if args.loop else ''}; ROS_DOMAIN_ID={domain} (localhost only); "
            "path on replay/path, intent on replay/intent_marker",
            flush=True,
        )
        try:
            spin([node], until=lambda: node.done)
        finally:
            stop_signals.ignore()
            published = node.published
            destroy([node])
        print(f"published {published} messages", flush=True)
    finally:
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    """`ros2 run dmo_ros bag_replay`: runs until the bag ends or a stop signal."""
    return entry.run(BagReplayNode, args, until=lambda node: node.done)


if __name__ == "__main__":
    raise SystemExit(main())
