"""Compose node classes in one process: the pip-only stand-in for `ros2 launch`.

Real nodes on real DDS topics, spun by a multi-threaded executor, with their
parameters read from the same `config/*.yaml` files the launch files pass.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from dmo_ros.config import ros_parameters


def parameter_overrides(
    path: str | Path | None, node_name: str, **overrides: Any
) -> list[Parameter]:
    """Parameters for `node_name` from a ROS parameter file, then `overrides` on top."""
    values = ros_parameters(path, node_name) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return [Parameter(name, value=value) for name, value in values.items()]


def spin(
    nodes: Sequence[Node],
    duration: float | None = None,
    until: Callable[[], bool] | None = None,
    threads: int = 4,
) -> None:
    """Spin `nodes` until `duration` seconds pass, `until()` is true, or SIGINT/SIGTERM."""
    executor = MultiThreadedExecutor(num_threads=threads)
    for node in nodes:
        executor.add_node(node)
    stop = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if threading.current_thread() is threading.main_thread():
        for s in previous:
            signal.signal(s, lambda *_: stop.set())
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while rclpy.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
            if deadline is not None and time.monotonic() >= deadline:
                break
            if until is not None and until():
                break
    finally:
        if threading.current_thread() is threading.main_thread():
            for s, handler in previous.items():
                signal.signal(s, handler)
        for node in nodes:
            executor.remove_node(node)
        executor.shutdown()


def destroy(nodes: Iterable[Node]) -> None:
    """Destroy nodes in reverse order of creation (recorders close their bags last)."""
    for node in reversed(list(nodes)):
        node.destroy_node()
