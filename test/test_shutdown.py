"""Node processes under repeated stop signals: real signals, real processes, real bags.

A second SIGINT (Ctrl-C twice; `ros2 launch` under `timeout -s INT`, where the process group
gets the SIGINT that launch forwards too), or a SIGTERM during shutdown, must not kill a node:
exit 0, no traceback, and a recorder's metadata.yaml describes its files exactly. A `kill -9`
leaves a bag that `dmo-ros bag repair` closes.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader
from rosbags.rosbag2 import Reader

from dmo_ros.data.bag_reader import open_bag

# A node run by entry.run whose build or destroy_node waits on stdin: the test knows it is
# there and can send signals into it.
CHILD = """
import sys
from rclpy.node import Node
from dmo_ros.nodes import entry

def hold(what):
    print(what, flush=True)
    sys.stdin.readline()

class Held(Node):
    def __init__(self):
        super().__init__("held")
        entry.build(self, lambda: hold("building") if sys.argv[1] == "build" else None)
        self.create_timer(0.05, lambda: None)
        print("spinning", flush=True)

    def destroy_node(self):
        hold("destroying")
        print("destroyed", flush=True)
        super().destroy_node()

raise SystemExit(entry.run(Held, ["held"]))
"""


class Lines:
    """A child's stdout, line by line, read with a deadline (never a blocking readline)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.fd, self.buf, self.seen = proc.stdout.fileno(), b"", []

    def expect(self, text: str, poke=None, deadline_s: float = 60.0) -> None:
        """Until the line `text`; `poke()` every 50 ms meanwhile (e.g. Ctrl-C again)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                self.seen.append(line.decode().strip())
                if self.seen[-1] == text:
                    return
            if select.select([self.fd], [], [], 0.05)[0]:
                chunk = os.read(self.fd, 4096)
                assert chunk, f"the process ended before printing {text!r}: {self.seen}"
                self.buf += chunk
            elif poke is not None:
                poke()
        raise AssertionError(f"no {text!r} by the deadline: {self.seen}")


def assert_clean_exit(proc: subprocess.Popen, stderr: str) -> None:
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's `node &` starts it


@pytest.mark.parametrize("phase", ["spin", "build", "spin, started with SIGINT ignored"])
def test_signals_during_destroy_node_are_ignored(phase, python):
    """SIGINT while spinning (or while building: it interrupts the build), then SIGINT,
    SIGTERM and SIGHUP while destroy_node runs: destroy_node finishes, exit 0."""
    proc = subprocess.Popen(
        [python, "-c", CHILD, phase.split(",")[0]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        preexec_fn=ignore_sigint if "ignored" in phase else None,
    )
    try:
        out = Lines(proc)
        out.expect("building" if phase == "build" else "spinning")
        # Ctrl-C, again until it shows (one that lands just before the child blocks on stdin
        # would only be handled once the read returns).
        out.expect("destroying", poke=lambda: proc.send_signal(signal.SIGINT))
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            proc.send_signal(s)  # the process is inside destroy_node, waiting on stdin
        assert proc.poll() is None
        rest, err = proc.communicate(b"\n", timeout=60)
    finally:
        proc.kill()
    lines = out.seen + (out.buf + rest).decode().split()
    assert "destroyed" in lines
    assert phase != "build" or "spinning" not in lines  # a stopped build goes no further
    assert_clean_exit(proc, err.decode())


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def storm(proc: subprocess.Popen, deadline_s: float = 60.0) -> int:
    """SIGINT, then SIGTERM and SIGINT in turn as fast as they go, until the process exits."""
    deadline, sent = time.monotonic() + deadline_s, 0
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            os.kill(proc.pid, (signal.SIGINT, signal.SIGTERM)[sent % 2])
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(0.001)
    proc.wait(timeout=60)
    return sent


def wait_recording(bag: Path, proc: subprocess.Popen, deadline_s: float = 90.0) -> None:
    """Until the recorder's metadata.yaml shows messages on disk (it refreshes every second)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the recorder ended"
        meta = bag / "metadata.yaml"
        if meta.exists():
            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
            if info["message_count"] > 0:
                return
        time.sleep(0.2)
    raise AssertionError("the recorder wrote nothing by the deadline")


def counts_agree(bag: Path) -> dict[str, int]:
    """metadata.yaml's counts, per topic and per file, are what rosbags and Foxglove's MCAP
    reader find in the files; returns them per topic."""
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    claimed = {
        t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]
    }
    with Reader(bag) as r:
        assert r.message_count == info["message_count"]
        found: dict[str, int] = {}
        for conn, _, _ in r.messages():
            found[conn.topic] = found.get(conn.topic, 0) + 1
    assert {t: n for t, n in claimed.items() if n} == found
    for entry in info["files"]:
        with (bag / entry["path"]).open("rb") as f:
            reader = make_reader(f, validate_crcs=True)
            assert reader.get_summary().statistics.message_count == entry["message_count"]
            assert sum(1 for _ in reader.iter_messages()) == entry["message_count"]
    assert open_bag(bag).recovered == []
    return found


def recorder_cmd(bag: Path) -> list[str]:
    return [sys.executable, "-m", "dmo_ros.nodes.recorder", "--ros-args", "-p", f"out:={bag}"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """One simulated Push-T driver (camera, ee_pose, task status) for the recorders here."""
    log = tmp_path_factory.mktemp("driver") / "driver.log"
    proc = start([sys.executable, "-m", "dmo_ros.nodes.flexiv_driver"], log)
    yield proc, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_repair_a_recorder_killed_mid_recording(driver, tmp_path):
    bag = tmp_path / "bag"
    rec = start(recorder_cmd(bag), tmp_path / "recorder.log")
    try:
        wait_recording(bag, rec)
    finally:
        rec.send_signal(signal.SIGKILL)
        rec.wait(timeout=60)
    with pytest.raises(Exception, match="magic"):
        Reader(bag).open()
    kept = open_bag(bag).message_count
    done = subprocess.run(
        [sys.executable, "-m", "dmo_ros.cli", "bag", "repair", str(bag)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{kept} messages kept" in done.stdout
    assert sum(counts_agree(bag).values()) == kept


def test_recorder_survives_a_storm_of_stop_signals(driver, tmp_path):
    bag = tmp_path / "bag"
    log = tmp_path / "recorder.log"
    rec = start(recorder_cmd(bag), log)
    try:
        wait_recording(bag, rec)
        sent = storm(rec)
    finally:
        rec.kill()
    output = log.read_text()
    assert_clean_exit(rec, output)
    assert sent > 1 and "SIGINT: shutting down" in output
    found = counts_agree(bag)
    assert found["/camera/image_raw"] > 0 and found["/ee_pose"] > 0


def test_driver_survives_a_storm_of_stop_signals(driver):
    """Last here: it ends the module's driver."""
    proc, log = driver
    assert proc.poll() is None
    storm(proc)
    assert_clean_exit(proc, log.read_text())


def test_collect_survives_a_storm_of_stop_signals(tmp_path):
    """`dmo-ros collect` (all nodes in one process): stopped early, the bag is whole."""
    bag = tmp_path / "bag"
    log = tmp_path / "collect.log"
    cmd = [sys.executable, "-m", "dmo_ros.cli", "collect", "--robot", "pusht", "--sim"]
    proc = start([*cmd, "--duration", "600", "--time-scale", "4", "--out", str(bag)], log)
    try:
        wait_recording(bag, proc)
        sent = storm(proc)
    finally:
        proc.kill()
    output = log.read_text()
    assert_clean_exit(proc, output)
    assert sent > 1 and f"bag: {bag}" in output  # it said what it kept
    found = counts_agree(bag)
    assert found["/camera/image_raw"] > 0 and found["/ee_delta"] > 0
