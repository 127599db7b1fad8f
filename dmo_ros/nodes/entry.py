"""`main()` of a node executable (`ros2 run dmo_ros <node>`): init, spin, clean shutdown.

A user mistake (unknown backend, a robot that does not answer, a bad parameter, an argument
that is not a ROS argument) prints one line and exits 2; `--help` prints what the node does
and its parameters, starting nothing.

Stop signals (SIGINT, SIGTERM, SIGHUP) are this module's, not rclpy's: rclpy's handler
chains to Python's, so a second Ctrl-C (or `ros2 launch` under `timeout -s INT`, where the
process group gets the SIGINT that launch forwards too) raised KeyboardInterrupt inside
destroy_node and killed a recorder between writing its last chunk and its metadata.yaml. Here:
* while a node builds (`build`) or a trainer trains (`interruptible`), the first stop signal
  raises KeyboardInterrupt, so a slow start (a robot that does not answer) can be cut short;
* while it spins, the first one ends the spin;
* from then on every stop signal is ignored: destroy_node (which stops the robot, closes the
  bag) always runs to its end, and the process exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from dmo_ros.errors import UserError
from dmo_ros.nodes.runtime import make_executor

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_S = 0.1  # how often the spin looks at the stop signals (Python runs handlers between waits)

N = TypeVar("N", bound=Node)


class _StopSignals:
    """The process's stop signals: which one came first, and whether it interrupts."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.interruptible = False
        self.handled: list[int] = []

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for s in STOP_SIGNALS:
            # SIGHUP ignored (nohup) stays ignored; SIGINT is taken over even when ignored, as
            # rclpy does: a script's `node &` starts with SIGINT ignored.
            if s != signal.SIGHUP or signal.getsignal(s) is not signal.SIG_IGN:
                signal.signal(s, self._handle)
                self.handled.append(s)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.received is not None:
            return
        self.received = signum
        if self.interruptible:
            raise KeyboardInterrupt

    def ignore(self) -> None:
        """From now on until the process ends (Python keeps SIG_IGN through finalisation)."""
        for s in self.handled:
            signal.signal(s, signal.SIG_IGN)

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""


_signals = _StopSignals()


@contextmanager
def interruptible() -> Iterator[None]:
    """Inside, the first stop signal raises KeyboardInterrupt (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _signals.received:  # stopped already: do not start what would be stopped at once
        raise KeyboardInterrupt
    before, _signals.interruptible = _signals.interruptible, True
    try:
        yield
    finally:
        _signals.interruptible = before


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


def ignore_stop_signals() -> None:
    """From here on a stop signal changes nothing: what shuts down runs to its end."""
    _signals.ignore()


def init(args: list[str] | None) -> None:
    """rclpy without its signal handlers: this module's stop signals instead (see above)."""
    _signals.install()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def shut_down(node: Node | None) -> None:
    """Ignore stop signals, destroy `node`, shut rclpy down: never interrupted."""
    ignore_stop_signals()
    try:
        if node is not None:
            if _signals.received:
                node.get_logger().info(f"{_signals.name}: shutting down")
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
        init(args)
        try:
            node = make_node()
        except UserError as exc:
            text = str(exc)
            print(text if text.startswith(name) else f"{name}: {text}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # a stop signal while starting: build() cleaned up
            return 0
        executor = make_executor()
        executor.add_node(node)
        try:
            while not _signals.received and rclpy.ok() and not (until and until(node)):
                executor.spin_once(timeout_sec=POLL_S)
        except ExternalShutdownException:
            pass
        finally:
            ignore_stop_signals()
            executor.shutdown()
    finally:
        shut_down(node)
    return exit_code(node) if exit_code else 0  # after destroy_node: a bag's close can fail


def build(node: Node, setup: Callable[[], None]) -> None:
    """Run a node's `setup`; on failure destroy the half-built node. Bad parameters (wrong type,
    out of range) become a one-line `UserError` naming the node and the parameter. A stop
    signal during `setup` interrupts it (see the module docstring)."""
    name = node.get_name()
    try:
        with interruptible():
            setup()
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        node.destroy_node()
        raise UserError(f"{name}: bad parameter: {exc}") from None
    except BaseException:
        node.destroy_node()
        raise
