"""`dmo-ros bag info`, `dmo-ros bag video` and `dmo-ros bag repair`, run as a user runs them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import recording_child
import yaml
from mcap.exceptions import McapError
from mcap.reader import make_reader
from play_bags import cdr, image, ros
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError

from dmo_ros.data.bag_reader import open_bag
from dmo_ros.data.bag_writer import BagWriter
from dmo_ros.data.mcap_index import index_mcap

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
    assert "task:      1 attempts (intent spans), success unknown (no task/success" in out
    assert "gaps:      1 over 1 s without /camera/image_raw: 1.5 s at +2.0 s" in out
    assert "dmo_ros.camera=sim 64x64, dmo_ros.robot=go2" in out


BOOL = "std_msgs/msg/Bool"


def write_attempts_bag(path: Path, with_success: bool) -> Path:
    """Three intent spans over 7 s: [1, 2) s with a milestone at 1.5 s and task/success True
    from 1.4 to 1.9 s; [3, 4) s with a milestone 0.3 s after it (within the grace); [5, 6) s
    with a milestone 1 s after it (too late). Camera frames at 5 Hz, task/success at 10 Hz."""
    bool_msg = ros("std_msgs/msg/Bool")
    with BagWriter(path, metadata={"dmo_ros.robot": "flexiv"}) as w:
        w.add_topic("camera/image_raw", "sensor_msgs/msg/Image")
        w.add_topic("intent", "std_msgs/msg/Bool")
        w.add_topic("milestone", "std_msgs/msg/Empty")
        if with_success:
            w.add_topic("task/success", "std_msgs/msg/Bool")
        events = []
        for i in range(36):
            t = T0 + 200 * MS * i
            events.append((t, "camera/image_raw", cdr(image(i, t, 8, 8), "sensor_msgs/msg/Image")))
        for i in range(71):
            if with_success:
                on = 1400 <= 100 * i <= 1900
                events.append((T0 + 100 * MS * i, "task/success", cdr(bool_msg(on), BOOL)))
        for t_ms, on in ((0, False), (1000, True), (2000, False), (3000, True), (4000, False)):
            events.append((T0 + t_ms * MS, "intent", cdr(bool_msg(on), BOOL)))
        for t_ms, on in ((5000, True), (6000, False)):
            events.append((T0 + t_ms * MS, "intent", cdr(bool_msg(on), BOOL)))
        empty = cdr(ros("std_msgs/msg/Empty")(), "std_msgs/msg/Empty")
        for t_ms in (1500, 4300, 7000):
            events.append((T0 + t_ms * MS, "milestone", empty))
        for t, topic, data in sorted(events, key=lambda e: e[0]):
            w.write(topic, t, data)
    return path


def test_bag_info_counts_task_attempts(tmp_path: Path) -> None:
    r = dmo_ros("bag", "info", str(write_attempts_bag(tmp_path / "sim", with_success=True)))
    assert r.returncode == 0, r.stderr
    assert (
        "task:      3 attempts (intent spans), 1 succeeded (33%) by task/success; "
        "2 with a milestone" in r.stdout
    )
    r = dmo_ros("bag", "info", str(write_attempts_bag(tmp_path / "human", with_success=False)))
    assert r.returncode == 0, r.stderr
    assert (
        "task:      3 attempts (intent spans), 2 succeeded (67%) by milestone (no task/success)"
        in r.stdout
    )


def test_bag_info_decodes_no_camera_frame(bag: Path, monkeypatch, capsys) -> None:
    """Fast on long bags: info reads the frames' index only, never their pixels."""
    import argparse

    from dmo_ros.data import bag_reader, bag_tools

    decoded = []
    real = bag_reader.Bag.decode
    monkeypatch.setattr(
        bag_reader.Bag,
        "decode",
        lambda self, topic, data: decoded.append(topic) or real(self, topic, data),
    )
    assert bag_tools.info(argparse.Namespace(bag=str(bag))) == 0
    assert "task:      1 attempts" in capsys.readouterr().out
    assert decoded and not any("image" in t for t in decoded)


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


# --- dmo-ros bag repair ------------------------------------------------------------------------


def read_with_other_tools(path: Path) -> list[int]:
    """Log times as rosbags' Reader and Foxglove's seeking MCAP reader (every CRC checked) see
    them; both must agree with metadata.yaml, file by file and in total."""
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    with Reader(path) as r:
        assert r.message_count == info["message_count"]
        times = [t for _, t, _ in r.messages()]
    fox = []
    for entry in info["files"]:
        with (path / entry["path"]).open("rb") as f:
            reader = make_reader(f, validate_crcs=True)
            assert reader.get_summary().statistics.message_count == entry["message_count"]
            fox += [m.log_time for _, _, m in reader.iter_messages(log_time_order=True)]
    assert len(times) == info["message_count"] == len(fox)
    assert sorted(fox) == times
    return times


def test_repair_a_bag_killed_mid_recording(tmp_path: Path) -> None:
    crashed = tmp_path / "crash"
    child = recording_child.start(crashed)
    try:
        recording_child.wait_on_disk(child, 60)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    mcap = crashed / "crash_0.mcap"
    # And a crash in the middle of a write: the last message record torn 10 bytes short.
    last = index_mcap(mcap).chunks[-1]
    mcap.write_bytes(mcap.read_bytes()[: last.offset + last.compressed_size - 10])
    before = open_bag(crashed)
    ids, times = recording_child.frame_ids(before), [t for _, t, _ in before.messages()]
    assert ids == list(range(len(ids))) and len(ids) >= 59  # only the torn message is gone
    with pytest.raises(ReaderError, match="magic"):
        Reader(crashed).open()
    with mcap.open("rb") as f, pytest.raises(McapError):
        make_reader(f).get_summary()

    r = dmo_ros("bag", "info", str(crashed))
    assert r.returncode == 0, r.stderr
    assert f"run `dmo-ros bag repair {crashed}`" in r.stdout

    original = mcap.read_bytes()
    r = dmo_ros("bag", "repair", str(crashed), "--out", str(tmp_path / "fixed"))
    assert r.returncode == 0, r.stderr
    assert f"closed crash_0.mcap: {len(ids)} messages kept" in r.stdout
    assert mcap.read_bytes() == original  # --out leaves the crashed bag as it was
    assert read_with_other_tools(tmp_path / "fixed") == times
    assert open_bag(tmp_path / "fixed").recovered == []

    r = dmo_ros("bag", "repair", str(crashed))  # in place
    assert r.returncode == 0, r.stderr
    assert read_with_other_tools(crashed) == times
    fixed = open_bag(crashed)
    assert fixed.recovered == [] and recording_child.frame_ids(fixed) == ids
    assert fixed.metadata == {"dmo_ros.robot": "flexiv"}
    (backup,) = crashed.glob("before_repair_*")
    assert (backup / "crash_0.mcap").read_bytes() == original
    assert str(backup) in r.stdout

    r = dmo_ros("bag", "repair", str(crashed))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{crashed}: nothing to repair (every file is closed and " + (
        "metadata.yaml is exact)"
    )


def test_repair_rewrites_a_stale_or_missing_metadata_yaml(bag: Path, tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    shutil.copytree(bag, stale)
    meta = stale / "metadata.yaml"
    info = yaml.safe_load(meta.read_text())
    info["rosbag2_bagfile_information"]["message_count"] = 12  # as of a crash mid-recording
    info["rosbag2_bagfile_information"]["files"][0]["message_count"] = 12
    meta.write_text(yaml.safe_dump(info))
    files = (stale / "session_0.mcap").read_bytes()
    r = dmo_ros("bag", "repair", str(stale))
    assert r.returncode == 0, r.stderr
    assert "metadata.yaml: 40 messages in 1 file(s) (said 12)" in r.stdout
    assert (stale / "session_0.mcap").read_bytes() == files  # a closed file is not rewritten
    assert yaml.safe_load(meta.read_text()) == yaml.safe_load((bag / "metadata.yaml").read_text())
    assert len(read_with_other_tools(stale)) == 40

    meta.unlink()
    r = dmo_ros("bag", "repair", str(stale))
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(meta.read_text()) == yaml.safe_load((bag / "metadata.yaml").read_text())


def test_repair_of_bad_input_is_one_line(bag: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "taken").mkdir()
    cut = tmp_path / "cut"
    shutil.copytree(bag, cut)
    last = index_mcap(cut / "session_0.mcap").chunks[-1]  # no summary: an interrupted file
    data = (cut / "session_0.mcap").read_bytes()
    (cut / "session_0.mcap").write_bytes(data[: last.offset + last.compressed_size])
    for args, problem in (
        (("bag", "repair", str(tmp_path / "nope")), "no such bag"),
        (("bag", "repair", str(tmp_path / "empty")), "not a bag"),
        (("bag", "repair", str(bag / "session_0.mcap")), "give the bag folder"),
        (("bag", "repair", str(cut), "--out", str(tmp_path / "taken")), "already exists"),
        (("bag", "repair", str(bag), "--out", str(tmp_path / "taken")), "nothing to repair"),
    ):
        r = dmo_ros(*args)
        lines = (r.stdout + r.stderr).strip().splitlines()
        assert len(lines) == 1 and problem in lines[0], (args, lines)
        assert r.returncode == (0 if problem == "nothing to repair" else 2), (args, lines)
    assert list((tmp_path / "taken").iterdir()) == []
    assert sorted(p.name for p in cut.iterdir()) == ["metadata.yaml", "session_0.mcap"]
