"""BagWriter: standard rosbag2 v9 MCAP files, splitting, refusals, threads, and kill -9."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import recording_child
import yaml
from mcap.reader import make_reader
from play_bags import cdr, header, image, ros
from rosbags.rosbag2 import Reader

from dmo_ros.data.bag_reader import open_bag
from dmo_ros.data.bag_writer import BagWriter, offered_qos, typestore
from dmo_ros.data.images import fill_image, image_to_array
from dmo_ros.data.mcap_file import McapFileWriter
from dmo_ros.errors import UserError

IMG = "sensor_msgs/msg/Image"
POSE = "geometry_msgs/msg/PoseStamped"
META = {"dmo_ros.task": "pusht", "dmo_ros.robot": "flexiv", "dmo_ros.camera": "sim 32x24"}


def test_bag_is_standard_rosbag2_mcap(tmp_path: Path) -> None:
    path = tmp_path / "run"
    with BagWriter(path, metadata={**META, "dmo_ros.sim": True}) as w:
        w.add_topic("camera/image_raw", IMG, offered_qos(reliable=False, depth=5))
        w.add_topic("intent", "std_msgs/msg/Bool", offered_qos(transient_local=True, depth=1))
        for i in range(12):
            t = 10**18 + i * 50_000_000
            w.write("camera/image_raw", t, cdr(image(i, t), IMG))
            w.write("intent", t + 1, cdr(ros("std_msgs/msg/Bool")(i >= 6), "std_msgs/msg/Bool"))
    assert sorted(p.name for p in path.iterdir()) == ["metadata.yaml", "run_0.mcap"]
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 9 and info["storage_identifier"] == "mcap"
    assert info["custom_data"] == {**META, "dmo_ros.sim": "true"}
    qos = {
        t["topic_metadata"]["name"]: t["topic_metadata"] for t in info["topics_with_message_count"]
    }
    assert qos["/intent"]["offered_qos_profiles"][0]["durability"] == "transient_local"

    # rosbags' own reader (what ros2 bag's metadata and MCAP layout must satisfy)
    with Reader(path) as r:
        assert r.message_count == 24 and r.storage.metadata.custom == info["custom_data"]
        got = [(c.topic, t, d) for c, t, d in r.messages()]
    images = [(t, d) for topic, t, d in got if topic == "/camera/image_raw"]
    assert [t for t, _ in images] == [10**18 + i * 50_000_000 for i in range(12)]
    for i, (_, d) in enumerate(images):
        px = image_to_array(typestore().deserialize_cdr(d, IMG))
        assert px.shape == (24, 32, 3) and (px == [i, 0, 7]).all()

    # Foxglove's MCAP reader, checking every CRC, and ros2msg schemas
    with (path / "run_0.mcap").open("rb") as f:
        reader = make_reader(f, validate_crcs=True)
        summary = reader.get_summary()
        assert summary.statistics.message_count == 24
        schemas = {s.name: s.encoding for s in summary.schemas.values()}
        assert schemas == {IMG: "ros2msg", "std_msgs/msg/Bool": "ros2msg"}
        chans = list(summary.channels.values())
        assert all(
            c.message_encoding == "cdr" and "offered_qos_profiles" in c.metadata for c in chans
        )
        assert sum(1 for _ in reader.iter_messages(log_time_order=True)) == 24

    # rclpy decodes the stored bytes: they are standard CDR
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    msg = deserialize_message(images[5][1], Image)
    assert (msg.height, msg.width, msg.encoding) == (24, 32, "rgb8")
    assert (image_to_array(msg) == [5, 0, 7]).all()


def test_rclpy_serialized_bytes_round_trip(tmp_path: Path) -> None:
    """What the recorder does: raw CDR from rclpy in, identical bytes out."""
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import serialize_message

    raws = []
    with BagWriter(tmp_path / "b") as w:
        w.add_topic("/ee_delta", POSE)
        for k in range(5):
            m = PoseStamped()
            m.header.frame_id = "world"
            m.pose.position.x = 0.01 * k
            raws.append(serialize_message(m))
            w.write("/ee_delta", 1000 + k, raws[-1])
    bag = open_bag(tmp_path / "b")
    got = [d for _, _, d in bag.messages(["ee_delta"])]
    assert got == raws
    assert bag.decode("ee_delta", got[3]).pose.position.x == pytest.approx(0.03)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    n, threads = 400, 4
    with BagWriter(tmp_path / "b", flush_period=0.05) as w:
        for j in range(threads):
            w.add_topic(f"t{j}", "std_msgs/msg/Int32")

        def produce(j: int) -> None:
            for i in range(n):
                w.write(
                    f"t{j}",
                    10**9 + i * 1000 + j,
                    cdr(ros("std_msgs/msg/Int32")(i), "std_msgs/msg/Int32"),
                )

        ts = [threading.Thread(target=produce, args=(j,)) for j in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    bag = open_bag(tmp_path / "b")
    for j in range(threads):
        values = [bag.decode(f"t{j}", d).data for _, _, d in bag.messages([f"t{j}"])]
        assert values == list(range(n))
    times = [t for _, t, _ in bag.messages()]
    assert times == sorted(times) and len(times) == n * threads


def test_split_by_size_and_duration(tmp_path: Path) -> None:
    big = np.zeros((120, 160, 3), np.uint8)  # 57.6 kB per message
    msg = ros(IMG)(header(0), 0, 0, "", 0, 0, np.zeros(0, np.uint8))
    with BagWriter(tmp_path / "size", split_size_mb=0.5, chunk_bytes=200_000) as w:
        w.add_topic("camera/image_raw", IMG)
        for i in range(40):
            w.write("camera/image_raw", 10**9 + i, cdr(fill_image(msg, big + i), IMG))
    # chunk_bytes=1: every message is a chunk of its own, so the split does not depend on
    # when the writer thread gets to run.
    with BagWriter(tmp_path / "dur", split_duration_s=1.0, chunk_bytes=1) as w:
        w.add_topic("n", "std_msgs/msg/Int32")
        for i in range(50):  # 5 s of messages, 10 Hz
            w.write(
                "n",
                10**9 + i * 100_000_000,
                cdr(ros("std_msgs/msg/Int32")(i), "std_msgs/msg/Int32"),
            )
    for name, min_files in (("size", 4), ("dur", 4)):
        path = tmp_path / name
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        files = info["relative_file_paths"]
        assert len(files) >= min_files, files
        assert files == [f"{name}_{i}.mcap" for i in range(len(files))]
        assert sorted(p.name for p in path.glob("*.mcap")) == sorted(files)
        assert [f["path"] for f in info["files"]] == files
        with Reader(path) as r:
            times = [t for _, t, _ in r.messages()]
        assert len(times) == (40 if name == "size" else 50) and times == sorted(times)
        assert sum(f["message_count"] for f in info["files"]) == len(times)
    with Reader(tmp_path / "size") as r:
        pix = [
            image_to_array(typestore().deserialize_cdr(d, IMG))[0, 0, 0] for _, _, d in r.messages()
        ]
    assert pix == list(range(40))


def test_refuses_an_existing_path_and_a_full_disk(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="already exists") as e:
        BagWriter(tmp_path / "old")
    assert str(tmp_path / "old") in str(e.value) and "\n" not in str(e.value)
    assert (tmp_path / "old" / "keep.txt").read_text() == "precious"
    with pytest.raises(UserError, match="not enough free disk space") as e:
        BagWriter(tmp_path / "new", planned_bytes=1 << 62)
    assert "\n" not in str(e.value) and not (tmp_path / "new").exists()


def test_metadata_is_written_at_open_and_refreshed(tmp_path: Path) -> None:
    path = tmp_path / "live"
    w = BagWriter(path, metadata=META, flush_period=0.1)
    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert info["relative_file_paths"] == ["live_0.mcap"] and info["message_count"] == 0
        w.add_topic("n", "std_msgs/msg/Int32")
        for i in range(10):
            w.write("n", 10**9 + i, cdr(ros("std_msgs/msg/Int32")(i), "std_msgs/msg/Int32"))
        deadline = time.monotonic() + 60
        while info["message_count"] < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
            info = yaml.safe_load((path / "metadata.yaml").read_text())[
                "rosbag2_bagfile_information"
            ]
        assert info["message_count"] == 10  # refreshed while still recording
        assert open_bag(path).topics == {"/n": ("std_msgs/msg/Int32", 10)}
    finally:
        w.close()
    with pytest.raises(UserError, match="write after close"):
        w.write("n", 1, b"")


def test_unknown_type_and_topic(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "b") as w:
        with pytest.raises(UserError, match="unknown message type 'nope_msgs/msg/X'"):
            w.add_topic("x", "nope_msgs/X")
        w.add_topic("a", "std_msgs/Bool")  # short type names are normalised
        w.add_topic("/a", "std_msgs/msg/Bool")  # the same topic again: fine
        with pytest.raises(UserError, match="is std_msgs/msg/Bool"):
            w.add_topic("a", "std_msgs/msg/Int32")
        with pytest.raises(ValueError, match="was not added"):
            w.write("b", 1, b"\x00\x01\x00\x00")


def test_kill_9_keeps_everything_flushed(tmp_path: Path) -> None:
    path = tmp_path / "crash"
    child = recording_child.start(path)
    try:
        flushed = recording_child.wait_on_disk(child, 100)  # what the writer said is on disk
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert (path / "metadata.yaml").exists()
    bag = open_bag(path)
    assert bag.recovered and "not closed" in bag.recovered[0]
    assert bag.metadata == {"dmo_ros.robot": "flexiv"}
    ids = recording_child.frame_ids(bag)
    assert ids == list(range(len(ids)))  # everything up to the crash, nothing skipped
    assert len(ids) >= flushed  # nothing the writer had flushed is lost
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["message_count"] <= len(ids)  # metadata.yaml never claims what is not there
    times = [t for _, t, _ in bag.messages()]

    # A crash in the middle of a write leaves a torn record: it is measured and left out.
    mcap = path / "crash_0.mcap"
    with mcap.open("ab") as f:
        f.write(bytes([0x06]) + (5_000_000).to_bytes(8, "little") + b"\x00" * 777)
    again = open_bag(path)
    assert "786 torn bytes" in again.recovered[0]
    assert [t for _, t, _ in again.messages()] == times


def test_ctrl_c_while_closing_still_closes_the_bag(tmp_path: Path, monkeypatch) -> None:
    """A KeyboardInterrupt (a second Ctrl-C under Python's default handler) that lands while
    close() waits for the writer thread: the bag is closed whole, then the interrupt goes on."""
    closing, delivered = threading.Event(), threading.Event()
    real_close = McapFileWriter.close

    def slow_close(self, metadata):  # holds the writer thread until the signal was handled
        closing.set()
        assert delivered.wait(60)
        time.sleep(0.3)  # and a while longer: a close() that returned early reads a stale bag
        real_close(self, metadata)

    def on_sigint(*_):  # Python's default handler, once: later signals change nothing
        if not delivered.is_set():
            delivered.set()
            raise KeyboardInterrupt

    def interrupt() -> None:
        # Again until handled: one that lands just before the main thread blocks waits there.
        assert closing.wait(60)
        while not delivered.wait(0.05):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    monkeypatch.setattr(McapFileWriter, "close", slow_close)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        w = BagWriter(tmp_path / "b")
        w.add_topic("n", "std_msgs/msg/Int32")
        for i in range(50):
            w.write("n", 10**9 + i, cdr(ros("std_msgs/msg/Int32")(i), "std_msgs/msg/Int32"))
        interrupter = threading.Thread(target=interrupt)
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            w.close()
        interrupter.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert delivered.is_set()
    info = yaml.safe_load((tmp_path / "b" / "metadata.yaml").read_text())
    assert info["rosbag2_bagfile_information"]["message_count"] == 50
    with Reader(tmp_path / "b") as r:
        assert [t for _, t, _ in r.messages()] == [10**9 + i for i in range(50)]
