"""Blocking frame sources (an OpenCV camera, the Go2's video RPC) read on a thread of their own.

Every node here spins on a single-threaded executor (see runtime.py), so a callback must never
wait for hardware: a camera read waits up to a frame period, an RPC up to its timeout, and a
command arriving meanwhile would wait with it. The thread reads at `rate` and hands each
frame to `publish` (rclpy publishers are thread-safe).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np


class CaptureThread:
    """Call `read()` at most `rate` times a second; `publish(frame)` each frame it returns,
    `on_missing()` for each None (a dropout, the end of a file)."""

    def __init__(
        self,
        read: Callable[[], np.ndarray | None],
        publish: Callable[[np.ndarray], None],
        on_missing: Callable[[], None],
        rate: float,
        name: str = "capture",
    ) -> None:
        self._read, self._publish, self._on_missing = read, publish, on_missing
        self._period = 1.0 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            frame = self._read()
            if self._stop.is_set():
                break
            if frame is None:
                self._on_missing()
            else:
                self._publish(frame)
            # Fixed rate without drift; after a slow read, carry on from now (no burst).
            next_at = max(next_at + self._period, time.monotonic())
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self, timeout: float = 5.0) -> None:
        """Stop reading; waits for a read in progress (at most `timeout` s)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
