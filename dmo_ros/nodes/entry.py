"""`main()` of a node executable (`ros2 run dmo_ros <node>`): init, spin, clean shutdown.

A user mistake (unknown backend, a robot that does not answer, a bad parameter, an argument
that is not a ROS argument) prints one line and exits 2; `--help` prints what the node does
and its parameters, starting nothing.

Stop signals: see stop_signals.py (the first ends the spin, later ones are ignored until the
node is destroyed; exit 0).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from dmo_ros.errors import UserError
from dmo_ros.nodes import stop_signals
from dmo_ros.nodes.runtime import spin

N = TypeVar("N", bound=Node)


def executable_name(node_class: type) -> str:
    """'recorder' for dmo_ros.nodes.recorder, also when run as `python -m` (as __main__)."""
    spec = getattr(sys.modules.get(node_class.__module__), "__spec__", None)
    return (spec.name if spec is not None else node_class.__module__).rsplit(".", 1)[-1]


def answer_arguments(node_class: type, args: list[str] | None) -> int | None:
    """`--help`: print the usage, 0. An argument that is not a ROS one: one line, 2. Else None
    (start the node)."""
    name = executable_name(node_class)
    try:
        rest = remove_ros_args(args=sys.argv if args is None else args)[1:]
    except _rclpy.RCLInvalidROSArgsError as exc:  # e.g. a --params-file that does not open
        print(f"{name}: bad ROS arguments: {str(exc).split(', at ')[0]}", file=sys.stderr)
        return 2
    if "-h" in rest or "--help" in rest:
        from dmo_ros.nodes.usage import usage

        print(usage(node_class, name))
        return 0
    if rest:
        print(
            f"{name}: unknown argument '{rest[0]}' (parameters go after --ros-args: "
            f"-p NAME:=VALUE; see {name} --help)",
            file=sys.stderr,
        )
        return 2
    return None


def shut_down(node: Node | None) -> None:
    """Ignore stop signals, destroy `node`, shut rclpy down: never interrupted."""
    stop_signals.ignore()
    try:
        if node is not None:
            if stopped := stop_signals.received():
                node.get_logger().info(f"{stopped}: shutting down")
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


def run(
    make_node: type[N],
    args: list[str] | None = None,
    until: Callable[[N], bool] | None = None,
    exit_code: Callable[[N], int] | None = None,
) -> int:
    """Build the node, spin it until a stop signal (or `until(node)`), destroy it; exit
    `exit_code(node)` (default 0), 2 on a `UserError`, 0 when stopped while starting."""
    if (code := answer_arguments(make_node, args)) is not None:
        return code
    name = executable_name(make_node)
    node = None
    try:
        stop_signals.init(args)
        try:
            node = make_node()
        except UserError as exc:
            text = str(exc)
            print(text if text.startswith(name) else f"{name}: {text}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # a stop signal while starting: build() cleaned up
            return 0
        with contextlib.suppress(ExternalShutdownException):
            spin([node], until=(lambda: until(node)) if until else None)
    finally:
        shut_down(node)
    return exit_code(node) if exit_code else 0  # after destroy_node: a bag's close can fail


def build(node: Node, setup: Callable[[], None]) -> None:
    """Run a node's `setup`; on failure destroy the half-built node. Bad parameters (wrong type,
    out of range) become a one-line `UserError` naming the node and the parameter. A stop
    signal during `setup` interrupts it (stop_signals.py)."""
    name = node.get_name()
    try:
        with stop_signals.interruptible():
            setup()
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        node.destroy_node()
        raise UserError(f"{name}: bad parameter: {exc}") from None
    except BaseException:
        node.destroy_node()
        raise
