"""Unitree Go2 base on unitree_sdk2py: clamped body velocities, a command watchdog, the camera.

`SportClient.Move` is fire-and-forget and the robot's sport service expects it re-sent,
so `VelocityStream` repeats the last command at `resend_hz` (>= 5 Hz) and sends a stop
when no new command arrived for `timeout_periods` control periods: losing the command
stream stops the robot. The stream takes plain callables, so a `cmd_vel` pass-through to
a custom locomotion policy can reuse it without the SDK.

`SportState` keeps the latest sport-mode state the robot publishes on `rt/sportmodestate`
(planar pose in its odometry frame, velocity turned into the body frame); `Go2Base` opens
one on connect, and the pass-through can open one on its own.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from dmo_ros.errors import UserError
from dmo_ros.hw import ConnectError
from dmo_ros.hw.command_guard import CommandGuard

# Published Go2 limits (m/s, m/s, rad/s); configured limits must lie inside them.
GO2_LIMITS = {"vx": (-2.5, 3.8), "vy": (-1.0, 1.0), "wz": (-4.0, 4.0)}

# The robot's sport-mode state (unitree_go.msg.dds_.SportModeState_).
STATE_TOPIC = "rt/sportmodestate"

# The SDK's ChannelFactory is one DDS participant per process, bound to the first
# (domain, interface) it is given; a second, different one would be silently ignored.
_dds_opened: tuple[int, str] | None = None
_dds_lock = threading.Lock()


class VelocityStream:
    """Clamp, re-send at `resend_hz`, and `halt()` after `timeout_periods` periods of silence."""

    def __init__(
        self,
        send: Callable[[np.ndarray], None],
        halt: Callable[[], None],
        guard: CommandGuard,
        control_period: float = 0.2,
        timeout_periods: int = 2,
        resend_hz: float = 10.0,
    ) -> None:
        if resend_hz < 5.0:
            raise UserError(f"resend_hz {resend_hz} is below 5 Hz: the robot would stall")
        if control_period <= 0 or timeout_periods < 1:
            raise UserError("control_period must be > 0 and timeout_periods >= 1")
        self._send, self._halt, self.guard = send, halt, guard
        self.timeout = control_period * timeout_periods
        self._period = 1.0 / resend_hz
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._command: np.ndarray | None = None  # None: nothing to repeat
        self._last = 0.0  # when the current command arrived
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="velocity-stream", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._command is not None

    def command(self, velocity: Sequence[float]) -> np.ndarray:
        """Clamp (`BadCommand` on NaN/inf/wrong length), send now, repeat until silence."""
        clamped = self.guard.check(velocity)
        with self._lock:
            self._command, self._last = clamped, time.monotonic()
            self._send(clamped)
            self._wake.notify()
        return clamped

    def hold(self) -> None:
        """Stop repeating, without sending anything (an emergency path sends its own)."""
        with self._lock:
            self._command = None

    def stop(self) -> None:
        """Stop repeating and `halt()` now."""
        self.hold()
        self._halt()

    def close(self) -> None:
        with self._lock:
            self._command, self._closed = None, True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        next_send = time.monotonic()
        while True:
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                if self._command is None:
                    self._wake.wait()
                    next_send = time.monotonic() + self._period
                    continue
                deadline = self._last + self.timeout
                if now >= deadline:  # silence: the command stream is lost
                    self._command = None
                    expired = True
                else:
                    expired = False
                    if now >= next_send:
                        # Under the lock, so that no repeat can follow a hold()/stop().
                        self._send(self._command)
                        next_send = now + self._period
                    self._wake.wait(max(0.0, min(next_send, deadline) - time.monotonic()))
            if expired:
                self._halt()


def _import_sdk() -> Any:
    try:
        from unitree_sdk2py.core.channel import ChannelFactoryInitialize, ChannelSubscriber
        from unitree_sdk2py.go2.sport.sport_client import SportClient
        from unitree_sdk2py.go2.video.video_client import VideoClient
        from unitree_sdk2py.idl.unitree_go.msg.dds_ import SportModeState_
    except ImportError as exc:
        raise UserError(
            "unitree_sdk2py is not installed (pip install unitree-sdk2py-dimos cyclonedds)"
        ) from exc
    return SimpleNamespace(
        ChannelFactoryInitialize=ChannelFactoryInitialize,
        ChannelSubscriber=ChannelSubscriber,
        SportClient=SportClient,
        SportModeState_=SportModeState_,
        VideoClient=VideoClient,
    )


def open_dds(sdk: Any, domain: int, iface: str) -> None:
    """Open the SDK's DDS participant on `iface` (once per process; the same one again is fine)."""
    global _dds_opened
    names = [name for _, name in socket.if_nameindex()]
    if iface not in names:
        raise ConnectError(
            f"Go2: network interface {iface!r} does not exist (have: {', '.join(names)})"
        )
    with _dds_lock:
        wanted = (domain, iface)
        if _dds_opened is not None and _dds_opened != wanted:
            raise ConnectError(
                f"Go2: this process already opened DDS domain {_dds_opened[0]} on "
                f"{_dds_opened[1]!r}; the Unitree SDK allows one per process"
            )
        if _dds_opened is None:
            try:
                sdk.ChannelFactoryInitialize(domain, iface)
            except Exception as exc:  # the SDK raises a bare Exception
                raise ConnectError(
                    f"Go2: cannot open DDS domain {domain} on {iface!r} ({exc})"
                ) from exc
            _dds_opened = wanted


def planar_state(msg: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Pose (x, y, yaw) and body velocity (vx, vy, wz) of a SportModeState_; None if not finite.

    The sport service reports `position` and `velocity` in its odometry (world) frame, as
    Unitree's own MuJoCo bridge does (free-joint qvel); the yaw is the IMU's rpy[2].
    """
    x, y = float(msg.position[0]), float(msg.position[1])
    vx_world, vy_world = float(msg.velocity[0]), float(msg.velocity[1])
    yaw, wz = float(msg.imu_state.rpy[2]), float(msg.yaw_speed)
    values = (x, y, yaw, vx_world, vy_world, wz)
    if not all(math.isfinite(v) for v in values):
        return None
    c, s = math.cos(yaw), math.sin(yaw)
    body = (c * vx_world + s * vy_world, -s * vx_world + c * vy_world, wz)
    return np.array([x, y, yaw]), np.array(body)


class SportState:
    """The latest sport-mode state the robot publishes on `rt/sportmodestate`."""

    def __init__(self, iface: str = "eth0", domain: int = 0, sdk: Any = None) -> None:
        self.iface, self.domain = iface, int(domain)
        self._sdk = sdk if sdk is not None else _import_sdk()
        self._lock = threading.Lock()
        self._latest: dict[str, Any] | None = None
        self._subscriber: Any = None
        self._listening = False  # off after close(): a late sample must not revive the state

    def open(self) -> None:
        """Open DDS on `iface` (if not yet) and subscribe; samples arrive in the background."""
        if self._subscriber is not None:
            return
        open_dds(self._sdk, self.domain, self.iface)
        subscriber = self._sdk.ChannelSubscriber(STATE_TOPIC, self._sdk.SportModeState_)
        self._listening = True
        # No queue: the handler runs on the DDS listener thread and only keeps the sample.
        subscriber.Init(self._on_sample, 0)
        self._subscriber = subscriber

    def _on_sample(self, msg: Any) -> None:
        planar = planar_state(msg)
        if planar is None or not self._listening:
            return  # a garbage sample is dropped: the state goes stale instead of wrong
        pose, velocity = planar
        with self._lock:
            self._latest = {"pose": pose, "velocity": velocity, "stamp": time.monotonic()}

    def state(self) -> dict[str, Any] | None:
        """{"pose": [x, y, yaw], "velocity": [vx, vy, wz] (body frame), "stamp": arrival
        time (time.monotonic())} of the latest sample, or None if none arrived."""
        with self._lock:
            return None if self._latest is None else dict(self._latest)

    def close(self) -> None:
        self._listening = False
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            subscriber.Close()


class Go2Base:
    """A Go2 driven by body velocities (vx, vy, yaw rate) through the SDK's SportClient."""

    def __init__(
        self,
        iface: str = "eth0",
        domain: int = 0,
        vx: tuple[float, float] = (-0.4, 0.8),
        vy: tuple[float, float] = (-0.4, 0.4),
        wz: tuple[float, float] = (-1.0, 1.0),
        control_period: float = 0.2,
        timeout_periods: int = 2,
        sdk: Any = None,
        *,
        resend_hz: float = 10.0,
        rpc_timeout: float = 1.0,
    ) -> None:
        limits = {"vx": vx, "vy": vy, "wz": wz}
        for name, (low, high) in limits.items():
            top_low, top_high = GO2_LIMITS[name]
            if not (top_low <= low <= 0.0 <= high <= top_high):
                raise UserError(
                    f"go2: {name} limits ({low}, {high}) must contain 0 and lie within "
                    f"the robot's ({top_low}, {top_high})"
                )
        self.iface, self.domain = iface, int(domain)
        self.guard = CommandGuard(
            [vx[0], vy[0], wz[0]], [vx[1], vy[1], wz[1]], names=("vx", "vy", "wz")
        )
        self.control_period, self.timeout_periods = control_period, timeout_periods
        self.resend_hz, self.rpc_timeout = resend_hz, rpc_timeout
        self._sdk = sdk if sdk is not None else _import_sdk()
        self._sport: Any = None
        self._video: Any = None
        self._stream: VelocityStream | None = None
        self._state = SportState(self.iface, self.domain, self._sdk)
        self._estopped = False
        self.last_error: str | None = None  # the last SDK call that failed, for the node

    def connect(self, timeout: float = 5.0) -> None:
        """Open DDS on `iface`, start the SportClient, and wait until the robot answers."""
        if self._stream is not None:
            return
        self._state.open()  # opens DDS too; the state streams while the probe waits
        sport = self._sdk.SportClient()
        sport.SetTimeout(self.rpc_timeout)
        sport.Init()
        # The version request is answered by the robot's sport service: a reachability probe.
        deadline = time.monotonic() + timeout
        code = None
        while code != 0 and time.monotonic() < deadline:
            code, _ = sport.GetServerApiVersion()
        if code != 0:
            self._state.close()
            raise ConnectError(
                f"Go2 on interface {self.iface!r} (DDS domain {self.domain}) did not answer its "
                f"sport service within {timeout:g} s (code {code}); is it on and on this network?"
            )
        self._sport = sport
        self._stream = VelocityStream(
            self._send_move,
            self._send_stop,
            self.guard,
            self.control_period,
            self.timeout_periods,
            self.resend_hz,
        )

    def _send_move(self, v: np.ndarray) -> None:
        code = self._sport.Move(float(v[0]), float(v[1]), float(v[2]))
        if code != 0:
            self.last_error = f"Move failed (code {code})"

    def _send_stop(self) -> None:
        code = self._sport.StopMove()
        if code != 0:
            self.last_error = f"StopMove failed (code {code})"

    def _connected(self) -> VelocityStream:
        if self._stream is None:
            raise RuntimeError("Go2: not connected; call connect()")
        return self._stream

    def move(self, vx: float, vy: float, wz: float) -> np.ndarray:
        """Command body velocities; returns what is commanded (clamped; zeros while e-stopped).

        Re-sent until the next command; StopMove after `timeout_periods` periods of silence.
        NaN/inf -> `BadCommand`, and nothing is sent.
        """
        stream = self._connected()
        if self._estopped:
            self.guard.check([vx, vy, wz])  # still refuse garbage loudly
            return np.zeros(3)
        return stream.command([vx, vy, wz])

    def stop(self) -> None:
        """StopMove now (the robot stands still, balancing)."""
        self._connected().stop()

    def damp(self) -> None:
        """Emergency stop: Damp (joints go limp). Latched: moves are ignored until recover()."""
        stream = self._connected()
        self._estopped = True
        stream.hold()
        code = self._sport.Damp()
        if code != 0:
            self.last_error = f"Damp failed (code {code})"

    def recover(self) -> None:
        """Release the emergency stop: StandUp, BalanceStand, then moves are accepted again.

        Does nothing unless damp() latched the emergency stop.
        """
        self._connected()
        if not self._estopped:
            return
        for call in (self._sport.StandUp, self._sport.BalanceStand):
            code = call()
            if code != 0:
                raise ConnectError(f"Go2: {call.__name__} failed (code {code})")
        self._estopped = False

    @property
    def estopped(self) -> bool:
        return self._estopped

    def state(self) -> dict[str, Any] | None:
        """The latest sport-mode state, or None if none arrived (see `SportState.state`)."""
        return self._state.state()

    def camera_frame(self) -> np.ndarray | None:
        """The front camera's latest image, RGB uint8 (H, W, 3), or None if none came."""
        import cv2  # only here: the arm-only 3.12 venv has no OpenCV

        self._connected()
        if self._video is None:
            video = self._sdk.VideoClient()
            video.SetTimeout(self.rpc_timeout)
            video.Init()
            self._video = video
        code, data = self._video.GetImageSample()
        if code != 0 or not data:
            return None
        bgr = cv2.imdecode(np.frombuffer(bytes(data), dtype=np.uint8), cv2.IMREAD_COLOR)
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        """StopMove, stop the stream and the state subscription. Safe to call twice."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            if not self._estopped:
                stream.stop()
        finally:
            stream.close()
            self._state.close()

    def __enter__(self) -> Go2Base:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
