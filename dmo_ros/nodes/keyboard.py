"""Read single key presses from a terminal (local or over SSH) without waiting for Enter.

The terminal is put in cbreak mode (no echo, no line buffering, Ctrl-C still sends SIGINT
so nodes shut down cleanly) and restored on `close()`, at exit, and by the context manager.
Arrow keys arrive as escape sequences and are decoded to 'up', 'down', 'left', 'right'.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import sys
import termios
import tty

from dmo_ros.errors import UserError

_ESCAPES = {
    "[A": "up",
    "[B": "down",
    "[C": "right",
    "[D": "left",
    "OA": "up",  # application cursor mode (some terminals, tmux)
    "OB": "down",
    "OC": "right",
    "OD": "left",
}
_NAMES = {" ": "space", "\t": "tab", "\r": "enter", "\n": "enter", "\x7f": "backspace"}


def decode_keys(data: str) -> list[str]:
    """Split terminal input into key names: printable characters, 'space', 'up', ..."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == "\x1b":
            seq = data[i + 1 : i + 3]
            if seq in _ESCAPES:
                keys.append(_ESCAPES[seq])
                i += 3
                continue
            keys.append("esc")
        else:
            keys.append(_NAMES.get(ch, ch))
        i += 1
    return keys


class KeyReader:
    """Non-blocking key reader on a terminal: `device` path, file descriptor, or stdin."""

    def __init__(self, device: str | int | None = None) -> None:
        if device is None or device == "":
            self._fd, self._owned = sys.stdin.fileno(), False
            name = "stdin"
        elif isinstance(device, int):
            self._fd, self._owned = device, False
            name = f"fd {device}"
        else:
            try:
                self._fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
            except OSError as exc:
                raise UserError(f"{device}: cannot open the terminal ({exc.strerror})") from None
            self._owned = True
            name = device
        if not os.isatty(self._fd):
            if self._owned:
                os.close(self._fd)
            raise UserError(
                f"keyboard teleop: {name} is not a terminal (run it in a terminal, over SSH, "
                "or under launch with prefix 'xterm -e')"
            )
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd, termios.TCSANOW)
        self._open = True
        atexit.register(self.close)

    def read(self, timeout: float = 0.0) -> list[str]:
        """Keys typed since the last call, waiting at most `timeout` seconds for the first."""
        if not self._open:
            return []
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self._fd, 1024)
        except OSError:  # the terminal went away (SSH dropped): no more keys
            return []
        return decode_keys(data.decode("utf-8", errors="ignore"))

    def close(self) -> None:
        """Restore the terminal settings (idempotent)."""
        if not self._open:
            return
        self._open = False
        with contextlib.suppress(termios.error):  # the terminal may already be gone
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        if self._owned:
            os.close(self._fd)
        atexit.unregister(self.close)

    def __enter__(self) -> KeyReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
