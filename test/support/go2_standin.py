"""A Go2 stand-in: answers the Unitree SDK's sport and video requests over DDS on `lo`.

It speaks the SDK's RPC protocol (unitree_api Request_/Response_ on rt/api/<service>/request
and rt/api/<service>/response): it records every request it receives (api id, JSON
parameter, CLOCK_MONOTONIC time) as a JSON line, and answers request-reply calls with
success: the API version for the version probe, a JPEG camera frame for videohub, an empty
result otherwise. It runs in a process of its own because the SDK's ChannelFactory is a
one-per-process DDS participant bound to a single domain.

    with Go2StandIn(domain) as robot:       # in a test
        ... Go2Base(iface="lo", domain=domain) ...
        robot.requests("sport")             # what arrived
"""

from __future__ import annotations

import argparse
import json
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


def serve(domain: int, record: Path, iface: str = "lo") -> None:
    """Answer sport and videohub requests until stdin closes (the parent went away)."""
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
    print("ready", flush=True)
    sys.stdin.read()  # returns at EOF: the parent closed the pipe or exited


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
        ready = threading.Event()
        threading.Thread(target=lambda: ready.set() if self._proc.stdout.readline() else None,
                         daemon=True).start()  # fmt: skip
        if not ready.wait(start_timeout):
            self.close()
            raise RuntimeError(f"Go2 stand-in did not start within {start_timeout} s")

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
