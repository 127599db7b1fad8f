"""A Go2 stand-in: answers the Unitree SDK's sport and video requests over DDS on `lo`.

It speaks the SDK's RPC protocol (unitree_api Request_/Response_ on rt/api/<service>/request
and rt/api/<service>/response): it records every request it receives (api id, JSON
parameter, CLOCK_MONOTONIC time) as a JSON line, and answers request-reply calls with
success: the API version for the version probe, a JPEG camera frame for videohub, an empty
result otherwise. Like the robot's sport service it publishes SportModeState_ on
rt/sportmodestate (`STATE_HZ`): the body drives a steady arc (`trajectory`), position and
velocity in the odometry (world) frame. It runs in a process of its own because the SDK's
ChannelFactory is a one-per-process DDS participant bound to a single domain.

    with Go2StandIn(domain) as robot:       # in a test
        ... Go2Base(iface="lo", domain=domain) ...
        robot.requests("sport")             # what arrived
        robot.pose_at(t)                    # where it was at time.monotonic() t
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

SERVICES = ("sport", "videohub")
STATE_HZ = 50.0
START_POSE = (1.0, -0.5, 0.5)  # x, y (m), yaw (rad) in the odometry frame when it starts
BODY_VELOCITY = (0.3, 0.1, 0.3)  # vx, vy (m/s, body frame), yaw rate (rad/s): a steady arc


def trajectory(t: float) -> tuple[np.ndarray, np.ndarray]:
    """Pose (x, y, yaw; yaw wrapped to [-pi, pi)) and world-frame velocity (vx, vy) `t` s
    after the start: the body velocity `BODY_VELOCITY` integrated exactly."""
    x0, y0, yaw0 = START_POSE
    vx, vy, wz = BODY_VELOCITY
    s, c = math.sin(wz * t), math.cos(wz * t)
    dx, dy = (vx * s - vy * (1 - c)) / wz, (vx * (1 - c) + vy * s) / wz  # in the start frame
    c0, s0 = math.cos(yaw0), math.sin(yaw0)
    yaw = yaw0 + wz * t
    cy, sy = math.cos(yaw), math.sin(yaw)
    pose = np.array([x0 + c0 * dx - s0 * dy, y0 + s0 * dx + c0 * dy, _wrap(yaw)])
    return pose, np.array([cy * vx - sy * vy, sy * vx + cy * vy])


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


@cache
def sdk_domain() -> int:
    """A DDS domain for Unitree SDK tests in this process, locked against every other run."""
    from dmo_ros.nodes.dds_env import claim_domain_id

    return claim_domain_id()


def camera_image() -> np.ndarray:
    """The RGB image the stand-in's front camera shows: a red square on a blue-green ramp."""
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    frame[..., 1] = np.linspace(0, 200, 160, dtype=np.uint8)[None, :]
    frame[..., 2] = 120
    frame[30:90, 50:110] = (230, 20, 20)
    return frame


def publish_state(publishing: threading.Event, t0: float) -> None:
    """Write SportModeState_ on rt/sportmodestate at `STATE_HZ` while `publishing` is set."""
    from unitree_sdk2py.core.channel import ChannelPublisher
    from unitree_sdk2py.idl.default import unitree_go_msg_dds__SportModeState_
    from unitree_sdk2py.idl.unitree_go.msg.dds_ import SportModeState_

    writer = ChannelPublisher("rt/sportmodestate", SportModeState_)
    writer.Init()
    msg = unitree_go_msg_dds__SportModeState_()
    next_t = time.monotonic()
    while True:
        publishing.wait()
        now = time.monotonic()
        pose, velocity = trajectory(now - t0)
        yaw = float(pose[2])
        msg.stamp.sec, msg.stamp.nanosec = int(now), int((now % 1.0) * 1e9)
        msg.position = [float(pose[0]), float(pose[1]), 0.3]
        msg.velocity = [float(velocity[0]), float(velocity[1]), 0.0]
        msg.yaw_speed = BODY_VELOCITY[2]
        msg.imu_state.rpy = [0.0, 0.0, yaw]
        msg.imu_state.quaternion = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]  # w x y z
        writer.Write(msg)
        next_t = max(next_t + 1.0 / STATE_HZ, now)
        time.sleep(max(0.0, next_t - time.monotonic()))


def serve(domain: int, record: Path, iface: str = "lo") -> None:
    """Answer sport and videohub requests, publish the sport state, until stdin closes.

    Lines on stdin: `pause` stops the state stream (a robot gone quiet), `resume` restarts it.
    """
    import cv2
    from unitree_sdk2py.core.channel import ChannelFactory, ChannelFactoryInitialize
    from unitree_sdk2py.core.channel_name import ChannelType, GetServerChannelName
    from unitree_sdk2py.go2.sport.sport_api import SPORT_API_VERSION
    from unitree_sdk2py.go2.video.video_api import VIDEO_API_ID_GETIMAGESAMPLE, VIDEO_API_VERSION
    from unitree_sdk2py.idl.unitree_api.msg.dds_ import (
        Request_,
        Response_,
        ResponseHeader_,
        ResponseStatus_,
    )
    from unitree_sdk2py.rpc.internal import RPC_API_ID_INTERNAL_API_VERSION

    ChannelFactoryInitialize(domain, iface)
    factory = ChannelFactory()
    versions = {"sport": SPORT_API_VERSION, "videohub": VIDEO_API_VERSION}
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(camera_image(), cv2.COLOR_RGB2BGR))
    assert ok
    lock = threading.Lock()
    log = record.open("a", buffering=1)

    def handler(service: str, responses: Any):
        def handle(request: Any) -> None:
            header = request.header
            api_id = header.identity.api_id
            with lock:
                log.write(
                    json.dumps(
                        {
                            "t": time.monotonic(),
                            "service": service,
                            "api_id": api_id,
                            "parameter": request.parameter,
                            "noreply": bool(header.policy.noreply),
                        }
                    )
                    + "\n"
                )
            if header.policy.noreply:
                return
            data, binary = "", []
            if api_id == RPC_API_ID_INTERNAL_API_VERSION:
                data = versions[service]
            elif service == "videohub" and api_id == VIDEO_API_ID_GETIMAGESAMPLE:
                binary = jpeg.reshape(-1).tolist()
            status = ResponseStatus_(0)
            responses.Write(Response_(ResponseHeader_(header.identity, status), data, binary), 1.0)

        return handle

    for service in SERVICES:
        responses = factory.CreateSendChannel(
            GetServerChannelName(service, ChannelType.SEND), Response_
        )
        factory.CreateRecvChannel(
            GetServerChannelName(service, ChannelType.RECV),
            Request_,
            handler(service, responses),
            10,
        )
    publishing = threading.Event()
    publishing.set()
    t0 = time.monotonic()
    threading.Thread(target=publish_state, args=(publishing, t0), daemon=True).start()
    print(f"ready {t0!r}", flush=True)
    for line in sys.stdin:  # ends at EOF: the parent closed the pipe or exited
        command = line.strip()
        if command == "pause":
            publishing.clear()
        elif command == "resume":
            publishing.set()


class Go2StandIn:
    """Runs `serve` in a child process; read what it received with `requests()`."""

    def __init__(self, domain: int, record: Path, iface: str = "lo", start_timeout: float = 20.0):
        self.domain = domain
        self.record = Path(record)
        self.record.touch()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent)])}
        cmd = [sys.executable, "-m", "support.go2_standin"]
        cmd += ["--domain", str(domain), "--record", str(self.record), "--iface", iface]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self._proc.stdout.readline()),
                                  daemon=True)  # fmt: skip
        reader.start()
        reader.join(start_timeout)
        if not ready or not ready[0].startswith("ready "):
            self.close()
            raise RuntimeError(f"Go2 stand-in did not start within {start_timeout} s")
        self.t0 = float(ready[0].split()[1])  # time.monotonic() when its trajectory started

    def pose_at(self, t: float) -> np.ndarray:
        """Its pose (x, y, yaw) at time.monotonic() `t`."""
        return trajectory(t - self.t0)[0]

    def time_of_yaw(self, yaw: float, near: float) -> float:
        """The time.monotonic() nearest `near` at which its yaw was `yaw` (it turns steadily)."""
        wz = BODY_VELOCITY[2]
        t = self.t0 + _wrap(yaw - START_POSE[2]) / wz
        period = 2 * math.pi / wz
        return t + round((near - t) / period) * period

    def pause_state(self) -> None:
        """Stop publishing the sport state (as a robot whose sport service went quiet)."""
        self._command("pause")

    def resume_state(self) -> None:
        self._command("resume")

    def _command(self, line: str) -> None:
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()

    def requests(self, service: str = "sport", since: float = 0.0) -> list[dict[str, Any]]:
        """Requests received for `service` at or after `since` (time.monotonic()), in order."""
        lines = self.record.read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.endswith("}")]
        return [r for r in rows if r["service"] == service and r["t"] >= since]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()  # serve() returns at EOF
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> Go2StandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--iface", default="lo")
    args = parser.parse_args()
    serve(args.domain, args.record, args.iface)
