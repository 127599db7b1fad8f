"""`dmo-ros bag info` and `dmo-ros bag video`, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from play_bags import cdr, image, ros

from dmo_ros.data.bag_writer import BagWriter

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
GAP = range(21, 35)  # camera frames 2.1 s .. 3.4 s are missing: a 1.5 s gap


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "session"
    with BagWriter(path, metadata={"dmo_ros.robot": "go2", "dmo_ros.camera": "sim 64x64"}) as w:
        w.add_topic("camera/image_raw", "sensor_msgs/msg/Image")
        w.add_topic("intent", "std_msgs/msg/Bool")
        for i in range(51):
            if i not in GAP:
                t = T0 + 100 * MS * i
                w.write("camera/image_raw", t, cdr(image(i, t, 64, 64), "sensor_msgs/msg/Image"))
        for t_ms, on in ((0, False), (1000, True), (3000, False)):
            w.write(
                "intent", T0 + t_ms * MS, cdr(ros("std_msgs/msg/Bool")(on), "std_msgs/msg/Bool")
            )
    return path


def dmo_ros(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dmo_ros.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_bag_info(bag: Path) -> None:
    r = dmo_ros("bag", "info", str(bag))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "duration:  5.00 s" in out and "messages:  40" in out
    cam = next(line for line in out.splitlines() if "/camera/image_raw" in line and "Hz" in line)
    assert cam.split()[1:] == ["sensor_msgs/msg/Image", "37", "7.20", "Hz"]
    assert "intent:    on 40.0% of the time (turned on 1 times)" in out
    assert "gaps:      1 over 1 s without /camera/image_raw: 1.5 s at +2.0 s" in out
    assert "dmo_ros.camera=sim 64x64, dmo_ros.robot=go2" in out


def test_bag_video(bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "videos" / "session.mp4"
    r = dmo_ros("bag", "video", str(bag), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1 and "37 frames" in r.stdout
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(7.2, abs=0.05)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 37 and frames[0].shape == (256, 256, 3)  # 64x64 scaled up to read
    green = [f[2, 128, 1] > 150 and f[2, 128, 2] < 100 for f in frames]  # border, BGR
    # intent is on for frames logged in [1.0 s, 3.0 s): frames 10..20 (21.. are in the gap)
    kept = [i for i in range(51) if i not in GAP]
    assert [k for k, g in zip(kept, green) if g] == list(range(10, 21))
    # the picture itself is the camera frame (flat colour of frame 0: R=0, G=0, B=7)
    assert np.abs(frames[0][128, 128].astype(int) - [7, 0, 0]).max() < 12


def test_bad_bag_and_missing_topic_exit_2_with_one_line(bag: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken_0.mcap").write_bytes(b"\x00" * 64)
    for args, problem in (
        (("bag", "info", str(broken)), f"{broken}: broken_0.mcap: not an MCAP file"),
        (
            ("bag", "video", str(bag), "--out", str(tmp_path / "x.mp4"), "--topic", "/front/image"),
            f"{bag}: no topic '/front/image'",
        ),
    ):
        r = dmo_ros(*args)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and problem in lines[0], r.stderr
