"""Stop signals (SIGINT, SIGTERM, SIGHUP) of a process running nodes: one mechanism for
`ros2 run` (entry.py), `dmo-ros collect` and `dmo-ros replay` (runtime.spin).

They are this module's, not rclpy's: rclpy's handler chains to Python's, so a second Ctrl-C
(or `ros2 launch` under `timeout -s INT`, where the process group gets the SIGINT that launch
forwards too) raised KeyboardInterrupt inside destroy_node and killed a recorder between
writing its last chunk and its metadata.yaml. Here:
* while nodes build (`interruptible`, entry.build) or a trainer trains, the first stop signal
  raises KeyboardInterrupt, so a slow start (a robot that does not answer) can be cut short;
* while they spin, the first one ends the spin (runtime.spin polls `received()`);
* after `ignore()` every stop signal is ignored: destroy_node (which stops the robot, closes
  the bag) always runs to its end.
The handler only sets a value or raises: it runs between any two bytecodes of the main thread,
also inside a lock it would take (an Event.set() there deadlocked under a burst of signals).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import rclpy
from rclpy.signals import SignalHandlerOptions

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _State:
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


_state = _State()


@contextmanager
def interruptible() -> Iterator[None]:
    """Inside, the first stop signal raises KeyboardInterrupt (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state.received:  # stopped already: do not start what would be stopped at once
        raise KeyboardInterrupt
    before, _state.interruptible = _state.interruptible, True
    try:
        yield
    finally:
        _state.interruptible = before


def ignore() -> None:
    """From here on a stop signal changes nothing: what shuts down runs to its end."""
    _state.ignore()


def received() -> str:
    """The first stop signal's name ('SIGINT'), or '' while none came."""
    return _state.name


def init(args: list[str] | None) -> None:
    """rclpy without its signal handlers: this module's stop signals instead."""
    _state.install()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
