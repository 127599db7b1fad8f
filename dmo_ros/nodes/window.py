"""The viewer's window (OpenCV HighGUI, no ROS): what it shows, and whether it can open.

`compose` draws the camera image scaled up by a whole factor (nearest neighbour: a 64x64
frame shows its real pixels), a green border while the intent label is on (as `dmo-ros bag
video` marks it), and a panel with the label and the keys. `Window` shows it; every HighGUI
call must come from one thread, so the node calls it from one timer only.

OpenCV's Qt backend aborts the whole process (SIGABRT) when it cannot reach a display, so
`display_problem` tries in a child process first: `dmo-ros collect --view` would otherwise
lose the recording it runs in.
"""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np

FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45
ROW, MARGIN = 22, 10  # px: panel row height, left and right margin
ON, OFF = (0, 200, 0), (140, 140, 140)  # BGR: intent on (the border and the dot), off
TEXT, PANEL, EMPTY = (235, 235, 235), (40, 40, 40), (70, 70, 70)
BORDER = 6  # px: the intent border's line width, half of it inside the image
PROBE = "import cv2; cv2.namedWindow('dmo_ros'); cv2.destroyAllWindows()"


def scale_factor(frame_height: int, height: int) -> int:
    """The whole factor that scales a frame up to at most `height` px (1: shown as it is)."""
    return max(1, height // max(1, frame_height))


def wrap(items: list[str], width: int) -> list[str]:
    """`items` joined into lines no wider than `width` px (an item never splits)."""
    lines: list[str] = []
    for item in items:
        joined = f"{lines[-1]}   {item}" if lines else item
        if lines and cv2.getTextSize(joined, FONT, FONT_SCALE, 1)[0][0] <= width:
            lines[-1] = joined
        else:
            lines.append(item)
    return lines


def _text(image: np.ndarray, text: str, x: int, y: int, colour=TEXT) -> None:
    cv2.putText(image, text, (x, y), FONT, FONT_SCALE, colour, 1, cv2.LINE_AA)


def compose(
    frame: np.ndarray | None,
    intent: bool | None,
    keys: list[str],
    height: int = 512,
    caption: str = "",
) -> np.ndarray:
    """The window's BGR image: `frame` (RGB, H x W x 3; None: not yet) scaled up, above a
    panel with the intent label (None: none received yet), `caption` and the `keys`."""
    if frame is None:
        camera = np.full((height, height, 3), EMPTY, np.uint8)
        _text(camera, "waiting for the camera", MARGIN, height // 2)
    else:
        k = scale_factor(frame.shape[0], height)
        camera = np.repeat(np.repeat(frame[:, :, ::-1], k, axis=0), k, axis=1)
        if intent:
            h, w = camera.shape[:2]
            cv2.rectangle(camera, (0, 0), (w - 1, h - 1), ON, BORDER)
    width = camera.shape[1]
    lines = wrap(keys, width - 2 * MARGIN)
    panel = np.full((ROW * (1 + len(lines)) + MARGIN // 2, width, 3), PANEL, np.uint8)
    cv2.circle(panel, (MARGIN + 6, ROW // 2 + 2), 6, ON if intent else OFF, -1)
    label = {True: "intent ON", False: "intent off", None: "intent: no label yet"}[intent]
    _text(panel, label, MARGIN + 18, ROW - 6)
    if caption:
        size = cv2.getTextSize(caption, FONT, FONT_SCALE, 1)[0][0]
        _text(panel, caption, width - MARGIN - size, ROW - 6)
    for i, line in enumerate(lines):
        _text(panel, line, MARGIN, ROW * (i + 2) - 6)
    return np.ascontiguousarray(np.vstack([camera, panel]))


def display_problem() -> str | None:
    """Why no OpenCV window can open here (one line), or None when one can."""
    display = os.environ.get("DISPLAY", "")
    if not display:
        return (
            "no display for the camera window (DISPLAY is not set; over SSH use ssh -X); "
            "record without it"
        )
    try:
        probe = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return f"the display {display} did not answer in 30 s; record without the camera window"
    if probe.returncode == 0:
        return None
    said = [line.strip() for line in probe.stderr.splitlines() if line.strip()]
    why = said[0] if said else f"exit {probe.returncode}"
    return f"OpenCV cannot open a window on DISPLAY={display} ({why}); record without it"


class Window:
    """An OpenCV window, opened by the first `show`; call it from one thread only."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.closed = False  # by the user (the window's close button) or by `close`
        self._open = False

    def show(self, image: np.ndarray) -> None:
        """Show `image` and let HighGUI handle its events (keys typed here are not read:
        the teleop reads the terminal)."""
        if self.closed:
            return
        cv2.imshow(self.title, image)
        self._open = True
        cv2.waitKey(1)
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.closed = True

    def close(self) -> None:
        if self._open and not self.closed:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # HighGUI closes it while handling events
        self.closed = True
