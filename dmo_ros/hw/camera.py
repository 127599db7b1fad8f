"""A camera on OpenCV: a USB device index, an RTSP/HTTP stream, or a video file.

Used for the fixed Push-T camera. Frames come out RGB uint8 at the configured size
(resized when the source delivers another one), so a node publishes what it declares.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dmo_ros.errors import UserError

_STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")


class OpenCVCamera:
    """`read()` returns the next frame as RGB uint8 (height, width, 3), or None."""

    def __init__(
        self,
        source: int | str,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        *,
        open_timeout: float = 5.0,
    ) -> None:
        if width <= 0 or height <= 0 or fps <= 0:
            raise UserError(f"camera {source!r}: width, height and fps must be positive")
        # "0" from a config or a command line means device 0, not a file named 0.
        if isinstance(source, str) and source.strip().isdigit():
            source = int(source)
        self.source, self.width, self.height, self.fps = source, int(width), int(height), fps
        is_file = isinstance(source, str) and not source.startswith(_STREAM_PREFIXES)
        if is_file and not Path(source).is_file():
            raise UserError(f"camera {source!r}: no such video file or stream URL")
        # Without these an unreachable stream blocks for FFmpeg's default ~30 s.
        ms = int(open_timeout * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        self._cap = cv2.VideoCapture(source, cv2.CAP_ANY, params)
        if not self._cap.isOpened():
            self._cap.release()
            what = f"device /dev/video{source}" if isinstance(source, int) else "source"
            raise UserError(f"camera {source!r}: cannot open the {what}")
        # Requests; a device may pick the nearest mode, a file ignores them.
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # latest frame, not a queue of old ones

    def read(self) -> np.ndarray | None:
        """The next frame, RGB uint8 (height, width, 3); None when none came (end, dropout)."""
        if self._cap is None:
            return None
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        if bgr.shape[:2] != (self.height, self.width):
            bgr = cv2.resize(bgr, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> OpenCVCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
