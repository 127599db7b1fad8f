"""open_bag: clean, recovered and bad bags (one-line UserErrors naming the bag)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from play_bags import cdr, ros, write_play_bag
from rosbags.rosbag2 import StoragePlugin, Writer

from dmo_ros.data.bag_reader import open_bag
from dmo_ros.data.bag_writer import BagWriter, typestore
from dmo_ros.data.mcap_index import index_mcap
from dmo_ros.errors import UserError


@pytest.fixture(scope="module")
def play_bag(tmp_path_factory) -> Path:
    return write_play_bag(tmp_path_factory.mktemp("bags") / "play", steps=20, intent_on=(5,))


def user_error(path, match: str) -> str:
    with pytest.raises(UserError, match=match) as e:
        open_bag(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    return msg


def test_topics_metadata_and_time_order(play_bag: Path) -> None:
    bag = open_bag(play_bag)
    assert bag.topics == {
        "/camera/image_raw": ("sensor_msgs/msg/Image", 40),
        "/ee_delta": ("geometry_msgs/msg/PoseStamped", 20),
        "/intent": ("std_msgs/msg/Bool", 2),
        "/milestone": ("std_msgs/msg/Empty", 0),
    }
    assert bag.metadata == {"dmo_ros.robot": "flexiv", "dmo_ros.task": "pusht"}
    assert bag.recovered == []
    times = [t for _, t, _ in bag.messages()]
    assert times == sorted(times) and len(times) == 62
    assert (bag.start_ns, bag.end_ns) == (times[0], times[-1])
    assert bag.find_topic("ee_delta") == "/ee_delta"
    assert bag.find_topic("ee_delta", "geometry_msgs/msg/TwistStamped") is None
    cam = bag.timestamps("camera/image_raw")
    assert len(cam) == 40 and (cam[1:] - cam[:-1] == 100_000_000).all()
    only = {t for t, _, _ in bag.messages(["intent"])}
    assert only == {"/intent"}


def test_missing_topic_is_one_line(play_bag: Path) -> None:
    bag = open_bag(play_bag)
    with pytest.raises(UserError, match="no topic 'odom'") as e:
        list(bag.messages(["odom"]))
    assert "\n" not in str(e.value) and "/ee_delta" in str(e.value)
    with pytest.raises(UserError, match="expected geometry_msgs/msg/TwistStamped"):
        bag.require_topic("ee_delta", "geometry_msgs/TwistStamped")


def test_missing_or_stale_metadata_is_rebuilt(play_bag: Path, tmp_path: Path) -> None:
    bag = tmp_path / "play"
    shutil.copytree(play_bag, bag)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())
    info["rosbag2_bagfile_information"]["files"][0]["message_count"] = 3  # stale, from mid-run
    info["rosbag2_bagfile_information"]["topics_with_message_count"] = []
    (bag / "metadata.yaml").write_text(yaml.safe_dump(info))
    assert open_bag(bag).topics == open_bag(play_bag).topics
    (bag / "metadata.yaml").unlink()
    rebuilt = open_bag(bag)
    assert rebuilt.topics == open_bag(play_bag).topics
    assert rebuilt.metadata["dmo_ros.robot"] == "flexiv"  # kept inside the MCAP file too
    assert rebuilt.recovered == ["metadata.yaml missing: rebuilt from the MCAP files"]
    assert list(rebuilt.messages()) == list(open_bag(play_bag).messages())


def test_torn_tail_keeps_every_whole_message(tmp_path: Path) -> None:
    path = tmp_path / "torn"
    with BagWriter(path, chunk_bytes=1_000) as w:
        w.add_topic("n", "std_msgs/msg/Int32")
        for i in range(200):
            w.write("n", 10**9 + i, cdr(ros("std_msgs/msg/Int32")(i), "std_msgs/msg/Int32"))
    mcap = path / "torn_0.mcap"
    chunks = index_mcap(mcap).chunks
    assert len(chunks) > 5
    # A crash 100 bytes into chunk 4's records, without the summary: chunks 0..3 survive, and
    # so do the two whole 39-byte message records (31 header + 8 CDR) at the start of chunk 4.
    cut = chunks[4].offset + 100
    mcap.write_bytes(mcap.read_bytes()[:cut])
    (path / "metadata.yaml").unlink()  # a crash before the first refresh
    bag = open_bag(path)
    values = [bag.decode("n", d).data for _, _, d in bag.messages()]
    kept = sum(len(c.times[1]) for c in chunks[:4]) + 2
    assert values == list(range(kept)) and bag.topics["/n"][1] == kept
    assert bag.timestamps("n").tolist() == [10**9 + i for i in range(kept)]
    assert bag.end_ns == 10**9 + kept - 1  # the torn chunk's span is what it kept
    assert "22 torn bytes" in bag.recovered[1]


def test_bag_written_by_rosbags(tmp_path: Path) -> None:
    """Another writer's layout (schemas and channels inside chunks) reads the same."""
    ts = typestore()
    with Writer(tmp_path / "rb", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection("/intent", "std_msgs/msg/Bool", typestore=ts)
        for i in range(5):
            w.write(c, 100 + i, cdr(ros("std_msgs/msg/Bool")(i % 2 == 0), "std_msgs/msg/Bool"))
    bag = open_bag(tmp_path / "rb")
    assert bag.topics == {"/intent": ("std_msgs/msg/Bool", 5)}
    assert [bag.decode(t, d).data for t, _, d in bag.messages()] == [True, False, True, False, True]


def test_bad_bags_are_one_line_user_errors(play_bag: Path, tmp_path: Path) -> None:
    user_error(tmp_path / "nowhere", "no such bag")
    (tmp_path / "empty_dir").mkdir()
    user_error(tmp_path / "empty_dir", r"not a bag \(no metadata.yaml and no .mcap file\)")

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "garbage_0.mcap").write_bytes(b"this is not a bag at all" * 100)
    user_error(garbage, "garbage_0.mcap: not an MCAP file")

    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "stub_0.mcap").write_bytes(b"\x89MCA")
    user_error(stub, "cut short inside its header")

    zero = tmp_path / "zero"
    zero.mkdir()
    (zero / "zero_0.mcap").write_bytes(b"")
    user_error(zero, "empty file")

    truncated = tmp_path / "truncated"
    shutil.copytree(play_bag, truncated)
    f = truncated / "play_0.mcap"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    user_error(truncated, "play_0.mcap is truncated: metadata.yaml lists 62 messages")

    lost = tmp_path / "lost"
    shutil.copytree(play_bag, lost)
    (lost / "play_0.mcap").unlink()
    user_error(lost, r"play_0.mcap \(listed in metadata.yaml\) is missing")

    bad_meta = tmp_path / "bad_meta"
    shutil.copytree(play_bag, bad_meta)
    (bad_meta / "metadata.yaml").write_text("just: [a, list")
    user_error(bad_meta, "metadata.yaml is not rosbag2 metadata")

    sqlite = tmp_path / "sqlite"
    shutil.copytree(play_bag, sqlite)
    text = (
        (sqlite / "metadata.yaml")
        .read_text()
        .replace("storage_identifier: mcap", "storage_identifier: sqlite3")
    )
    (sqlite / "metadata.yaml").write_text(text)
    user_error(sqlite, "storage 'sqlite3' is not supported")

    nothing = tmp_path / "nothing"
    BagWriter(nothing).close()
    user_error(nothing, r"empty bag \(no messages\)")


@pytest.mark.parametrize(
    ("compression", "chunked"), [("ZSTD", True), ("LZ4", True), ("NONE", False)]
)
def test_files_from_foxgloves_writer(tmp_path: Path, compression: str, chunked: bool) -> None:
    """Compressed chunks (rosbag2's zstd presets) and unchunked files read the same."""
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter

    msgdef, _ = typestore().generate_msgdef("std_msgs/msg/Int32", ros_version=2)
    bag = tmp_path / "fox"
    bag.mkdir()
    with (bag / "fox_0.mcap").open("wb") as f:
        w = McapWriter(
            f, chunk_size=200, compression=CompressionType[compression], use_chunking=chunked
        )
        w.start(profile="ros2", library="test")
        sid = w.register_schema("std_msgs/msg/Int32", "ros2msg", msgdef.encode())
        cid = w.register_channel("/n", "cdr", sid)
        for i in range(60):
            data = cdr(ros("std_msgs/msg/Int32")(i), "std_msgs/msg/Int32")
            w.add_message(cid, log_time=1000 + i, data=data, publish_time=1000 + i)
        w.finish()
    b = open_bag(bag)
    assert b.topics == {"/n": ("std_msgs/msg/Int32", 60)}
    assert [b.decode("n", d).data for _, _, d in b.messages()] == list(range(60))
    assert b.timestamps("n").tolist() == [1000 + i for i in range(60)]
