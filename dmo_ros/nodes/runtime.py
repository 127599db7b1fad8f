"""Compose node classes in one process: the pip-only stand-in for `ros2 launch`.

Real nodes on real DDS topics with their parameters read from the same `config/*.yaml` files
the launch files pass, spun by the one executor every node of this package runs on.

Why single-threaded: rclpy's MultiThreadedExecutor (Kilted, 9.1.2) re-submits a ready callback
to its thread pool on every pass of its wait loop until a pool thread has started it; with the
GIL that start takes milliseconds, so the loop spins. bench/executor_spin.py, a sim driver at
time_scale 5 and a probe in one process: single-threaded 4 dispatches per /clock message, all
25 steps/s, slowest step 6-10 ms; multi-threaded 860-1,290 dispatches, 4-7 steps/s, slowest
step 0.24-0.39 s, 30-50x the CPU per step. No callback here blocks (hardware reads run on
capture threads, simulator steps take milliseconds), so one thread serves them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from dmo_ros.config import ros_parameters
from dmo_ros.nodes import stop_signals

DRAIN_S = 0.1  # after spinning, how long callbacks in flight get to finish


def parameter_overrides(
    path: str | Path | None, node_name: str, **overrides: Any
) -> list[Parameter]:
    """Parameters for `node_name` from a ROS parameter file, then `overrides` on top."""
    values = ros_parameters(path, node_name) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return [Parameter(name, value=value) for name, value in values.items()]


def make_executor(context: Context | None = None) -> SingleThreadedExecutor:
    """The executor every node of this package spins on (see the module docstring)."""
    return SingleThreadedExecutor(context=context)


def spin(
    nodes: Sequence[Node],
    duration: float | None = None,
    until: Callable[[], bool] | None = None,
) -> None:
    """Spin `nodes` until `duration` seconds pass, `until()` is true, or a stop signal
    (stop_signals.init() installs them; rclpy's own handlers end it by shutting rclpy down)."""
    executor = make_executor()
    for node in nodes:
        executor.add_node(node)
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while rclpy.ok() and not stop_signals.received():
            executor.spin_once(timeout_sec=0.05)
            if deadline is not None and time.monotonic() >= deadline:
                break
            if until is not None and until():
                break
    finally:
        for node in nodes:
            executor.remove_node(node)
        # rclpy's shutdown() destroys the executor's guard condition without waiting for the
        # callbacks still running on its threads, which then fail with InvalidHandle ("The
        # following exception was never retrieved" on stderr). Let them finish first.
        drained = time.monotonic() + DRAIN_S
        while rclpy.ok() and time.monotonic() < drained:
            executor.spin_once(timeout_sec=0.01)
        executor.shutdown()


def destroy(nodes: Iterable[Node]) -> None:
    """Destroy nodes in reverse order of creation (recorders close their bags last)."""
    for node in reversed(list(nodes)):
        node.destroy_node()
