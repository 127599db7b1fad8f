"""A process that records camera frames to a bag until it is killed (test helper).

Frame i is a flat colour naming i (play_bags.frame_colour), so a reader can tell that nothing
was skipped. It prints `on disk N` whenever the writer thread has flushed more messages (no
close needed), so a test can kill it once a known number of messages is on disk.
"""

from __future__ import annotations

import select
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import sys, time
from dmo_ros.data.bag_writer import BagWriter
sys.path.insert(0, sys.argv[2])
from play_bags import cdr, image
w = BagWriter(sys.argv[1], metadata={"dmo_ros.robot": "flexiv"}, flush_period=0.1)
w.add_topic("camera/image_raw", "sensor_msgs/msg/Image")
i = on_disk = 0
while True:
    t = time.time_ns()
    w.write("camera/image_raw", t, cdr(image(i, t, 160, 120), "sensor_msgs/msg/Image"))
    i += 1
    if w.stats["messages"] != on_disk:
        on_disk = w.stats["messages"]
        print("on disk", on_disk, flush=True)
    time.sleep(0.005)
"""


def start(path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(path), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_on_disk(proc: subprocess.Popen, at_least: int, deadline_s: float = 120.0) -> int:
    """Read the child's reports until `at_least` messages are on disk; that number."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            assert line, f"the recording child ended (exit {proc.poll()})"
            if (n := int(line.split()[-1])) >= at_least:
                return n
    raise AssertionError(f"fewer than {at_least} messages on disk by the deadline")


def frame_ids(bag) -> list[int]:
    """The frame numbers of an open_bag'd recording, in bag order."""
    from dmo_ros.data.images import image_to_array

    pixels = [image_to_array(bag.decode(t, d))[0, 0] for t, _, d in bag.messages()]
    return [int(px[0]) + 256 * int(px[1]) for px in pixels]
