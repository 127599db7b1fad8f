"""`main()` of a node executable (`ros2 run dmo_ros <node>`): init, spin, clean shutdown.

A user mistake (unknown backend, a robot that does not answer, a bad parameter) prints one
line and exits 2; SIGINT/SIGTERM shut down cleanly, and the node's destroy_node() stops its
robot.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from dmo_ros.errors import UserError
from dmo_ros.nodes.runtime import make_executor


def run(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Build the node, spin it until shutdown; 2 on a `UserError`, else 0."""
    rclpy.init(args=args)
    try:
        try:
            node = make_node()
        except UserError as exc:
            print(exc, file=sys.stderr)
            return 2
        executor = make_executor()
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            executor.shutdown()
            node.destroy_node()
        return 0
    finally:
        rclpy.try_shutdown()


def build(node: Node, setup: Callable[[], None]) -> None:
    """Run a node's `setup`; on failure destroy the half-built node. Bad parameters (wrong type,
    out of range) become a one-line `UserError` naming the node and the parameter."""
    name = node.get_name()
    try:
        setup()
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        node.destroy_node()
        raise UserError(f"{name}: bad parameter: {exc}") from None
    except BaseException:
        node.destroy_node()
        raise
