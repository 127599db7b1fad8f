"""Run nodes on real DDS for tests: each in a context (participant) and executor thread of its own,
on the executor the nodes run on in the product (dmo_ros.nodes.runtime.make_executor).

driver = Spinning(lambda context: FlexivDriver(context=context, parameter_overrides=...))
probe = Probe()                       # the test's side: listens, publishes, calls services
probe.listen(Image, "camera/image_raw", qos_profile_sensor_data)
probe.wait(lambda: probe.count("camera/image_raw") >= 3)

A topic has one subscription however often it is listened to, and `count`/`next`/`steps` count
distinct messages of a stamped topic (by header stamp, or a Clock's time): a duplicated
delivery can never pass for a step.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import Log
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile

from dmo_ros.nodes.runtime import make_executor


def stamp_ns(msg: Any) -> int | None:
    """A message's time in ns: its header stamp, a Clock's clock; None for unstamped types."""
    stamp = getattr(getattr(msg, "header", None), "stamp", None) or getattr(msg, "clock", None)
    if stamp is None or not hasattr(stamp, "nanosec"):
        return None
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class Spinning:
    """A node built in a fresh rclpy context, spun in a thread of its own."""

    def __init__(self, make_node: Callable[[Context], Node]) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        try:
            self.node = make_node(self.context)
        except BaseException:
            rclpy.shutdown(context=self.context)
            raise
        self._executor = make_executor(self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(ExternalShutdownException):
            self._executor.spin()

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join(timeout=10)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class Probe(Spinning):
    """The test's node: records what arrives per topic, publishes, calls services."""

    def __init__(self, name: str = "probe") -> None:
        super().__init__(lambda context: Node(name, context=context))
        self._lock = threading.Lock()
        self._received: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        self._seen: dict[str, set[int]] = defaultdict(set)  # stamps kept, per stamped topic
        self._duplicates: dict[str, int] = defaultdict(int)
        self._listening: set[str] = set()
        self._publishers: dict[str, Any] = {}

    def listen(self, msg_type: type, topic: str, qos: QoSProfile | int = 10) -> None:
        """Keep what arrives on `topic`: one subscription however often this is called."""
        if topic in self._listening:
            return
        self._listening.add(topic)

        def keep(msg: Any) -> None:
            key = stamp_ns(msg)
            with self._lock:
                if key is not None:
                    if key in self._seen[topic]:
                        self._duplicates[topic] += 1
                        return
                    self._seen[topic].add(key)
                self._received[topic].append((time.monotonic(), msg))

        self.node.create_subscription(msg_type, topic, keep, qos)

    def duplicates(self, topic: str) -> int:
        """Messages on `topic` whose stamp had already arrived (dropped from `received`)."""
        with self._lock:
            return self._duplicates[topic]

    def listen_log(self) -> None:
        """Record /rosout: what the nodes log (warnings about refused commands, ...)."""
        self.listen(Log, "/rosout", 100)

    def logs(self, node_name: str, level: int = Log.WARN) -> list[str]:
        return [
            m.msg for _, m in self.received("/rosout") if m.name == node_name and m.level >= level
        ]

    def received(self, topic: str, since: float = 0.0) -> list[tuple[float, Any]]:
        """(arrival time, message) on `topic` at or after `since` (time.monotonic())."""
        with self._lock:
            return [(t, m) for t, m in self._received[topic] if t >= since]

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self._received[topic])

    def last(self, topic: str) -> Any:
        with self._lock:
            items = self._received[topic]
            return items[-1][1] if items else None

    def wait(self, condition: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Poll `condition` until truthy (returned) or `timeout` (AssertionError)."""
        deadline = time.monotonic() + timeout
        while not (result := condition()):
            assert time.monotonic() < deadline, "condition not reached in time"
            time.sleep(0.01)
        return result

    def next(self, topic: str, timeout: float = 5.0) -> Any:
        """Wait for the next message on `topic` and return it."""
        n = self.count(topic)
        self.wait(lambda: self.count(topic) > n, timeout)
        return self.last(topic)

    def advertise(self, msg_type: type, topic: str, qos: QoSProfile | int = 10) -> None:
        if topic not in self._publishers:
            self._publishers[topic] = self.node.create_publisher(msg_type, topic, qos)

    def publish(self, msg_type: type, topic: str, msg: Any, qos: QoSProfile | int = 10) -> None:
        self.advertise(msg_type, topic, qos)
        self._publishers[topic].publish(msg)

    def matched(self, topic: str) -> bool:
        """Whether a subscriber listens to what this probe publishes on `topic`."""
        return self._publishers[topic].get_subscription_count() > 0

    def call(self, srv_type: type, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"no service {name}"
            future = client.call_async(request)
            self.wait(future.done, timeout)
            return future.result()
        finally:
            self.node.destroy_client(client)
