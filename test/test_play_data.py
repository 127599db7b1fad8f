"""Bags -> PlaySequence: exact alignment, labels, segments, cache, wrong robot, splits."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from play_bags import STEP_NS, T0, flexiv_action, frame_colour, go2_action, write_play_bag

from dmo_ros.data.images import fill_image, image_to_array
from dmo_ros.data.play_data import load_play_data, split_bags, split_sequences
from dmo_ros.errors import UserError
from dmo_ros.task import task_for_robot

PUSHT = task_for_robot("pusht")
GO2 = task_for_robot("go2")


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bags")
    write_play_bag(
        root / "play",
        steps=40,
        skip_steps=range(25, 30),  # 1.2 s without commands: a gap
        intent_on=(10,),
        intent_off=(20,),
        milestones=(15,),
    )
    return root


def test_round_trip_exact_contents(bags: Path, tmp_path: Path) -> None:
    (seq,) = load_play_data([bags / "play"], PUSHT, cache_dir=tmp_path)
    steps = [k for k in range(40) if k not in range(25, 30)]
    assert len(seq) == len(steps) == 35
    assert seq.bag == str(bags / "play")
    assert seq.t_ns.tolist() == [T0 + k * STEP_NS for k in steps]
    assert seq.frames.shape == (35, 64, 64, 3) and seq.frames.dtype == np.uint8
    assert isinstance(seq.frames, np.memmap)
    for j, k in enumerate(steps):
        # the frame logged at the command's own time (written after the command)
        assert (seq.frames[j] == frame_colour(2 * k)).all(), (j, k)
    expected = np.array([flexiv_action(k) for k in steps]) / 0.04
    assert seq.actions.dtype == np.float32
    np.testing.assert_allclose(seq.actions, expected, atol=1e-6)
    assert seq.intent.tolist() == [10 <= k < 20 for k in steps]
    assert seq.milestone.tolist() == [k == 15 for k in steps]
    assert seq.segment.tolist() == [0] * 25 + [1] * 10


def test_go2_round_trip_and_reset_marker(tmp_path: Path) -> None:
    bag = write_play_bag(tmp_path / "go2", robot="go2", steps=30, resets=(12,), cam_size=(80, 60))
    (seq,) = load_play_data(bag, GO2)
    lo, hi = np.array(GO2.action_low), np.array(GO2.action_high)
    expected = 2 * (np.array([go2_action(k) for k in range(30)]) - lo) / (hi - lo) - 1
    np.testing.assert_allclose(seq.actions, expected, atol=1e-6)
    assert seq.segment.tolist() == [0] * 12 + [1] * 18
    assert not seq.intent.any() and not seq.milestone.any()
    # the default cache sits beside the bag, never inside it
    assert sorted(p.name for p in bag.iterdir()) == ["go2_0.mcap", "metadata.yaml"]
    assert len(list((tmp_path / ".dmo_cache").glob("go2-*/frames.npy"))) == 1


def test_cache_is_reused_and_rebuilt_when_the_bag_changes(tmp_path: Path) -> None:
    bag = write_play_bag(tmp_path / "b", steps=10)
    (first,) = load_play_data(bag, PUSHT)
    meta = next((tmp_path / ".dmo_cache").glob("b-*/meta.json"))
    stamp = meta.stat().st_mtime_ns
    (again,) = load_play_data(bag, PUSHT)
    assert meta.stat().st_mtime_ns == stamp and again.frames.filename == first.frames.filename
    assert len(again) == 10

    shutil.rmtree(bag)  # the bag is recorded anew under the same name
    write_play_bag(bag, steps=14, intent_on=(3,))
    (rebuilt,) = load_play_data(bag, PUSHT)
    assert len(rebuilt) == 14 and rebuilt.intent[3:].all()
    assert json.loads(next((tmp_path / ".dmo_cache").glob("b-*/meta.json")).read_text())["n"] == 14
    assert len(list((tmp_path / ".dmo_cache").iterdir())) == 1  # the stale copy is gone


def test_sequences_pickle_as_a_reference_to_the_cache(bags: Path, tmp_path: Path) -> None:
    (seq,) = load_play_data(bags, PUSHT, cache_dir=tmp_path)  # a folder of bags works too
    part = seq.slice(5, 20)
    data = pickle.dumps(part)
    assert len(data) < 5_000  # no pixels inside
    back = pickle.loads(data)
    assert isinstance(back.frames, np.memmap)
    assert (np.asarray(back.frames) == np.asarray(seq.frames[5:20])).all()
    assert back.t_ns.tolist() == seq.t_ns[5:20].tolist()


def test_wrong_robot_missing_topics_and_bad_encoding(tmp_path: Path) -> None:
    go2 = write_play_bag(tmp_path / "go2", robot="go2", steps=5)
    with pytest.raises(
        UserError, match="recorded with robot 'go2', task 'pusht' is for 'flexiv'"
    ) as e:
        load_play_data(go2, PUSHT)
    assert str(go2) in str(e.value) and "\n" not in str(e.value)

    unlabelled = write_play_bag(tmp_path / "unlabelled", robot="go2", steps=5, metadata={})
    with pytest.raises(UserError, match="no action topic 'ee_delta'"):
        load_play_data(unlabelled, PUSHT)

    from play_bags import cdr, header, ros

    from dmo_ros.data.bag_writer import BagWriter

    for name, encoding, topic in (
        ("yuv", "yuv422", "camera/image_raw"),
        ("nocam", "rgb8", "other"),
    ):
        with BagWriter(tmp_path / name, metadata={"dmo_ros.robot": "flexiv"}) as w:
            w.add_topic(topic, "sensor_msgs/msg/Image")
            w.add_topic("ee_delta", "geometry_msgs/msg/PoseStamped")
            img = ros("sensor_msgs/msg/Image")(header(T0), 0, 0, "", 0, 0, np.zeros(0, np.uint8))
            fill_image(img, np.zeros((4, 4, 3), np.uint8))
            img.encoding = encoding
            w.write(topic, T0, cdr(img, "sensor_msgs/msg/Image"))
            point = ros("geometry_msgs/msg/Point")(0.0, 0.0, 0.0)
            quat = ros("geometry_msgs/msg/Quaternion")(0.0, 0.0, 0.0, 1.0)
            pose = ros("geometry_msgs/msg/PoseStamped")(
                header(T0), ros("geometry_msgs/msg/Pose")(point, quat)
            )
            w.write("ee_delta", T0, cdr(pose, "geometry_msgs/msg/PoseStamped"))
    with pytest.raises(UserError, match=r"yuv: /camera/image_raw: image encoding 'yuv422'"):
        load_play_data(tmp_path / "yuv", PUSHT, cache_dir=tmp_path / "c")
    with pytest.raises(UserError, match="nocam: no topic 'camera/image_raw'"):
        load_play_data(tmp_path / "nocam", PUSHT, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").glob("*/meta.json"))  # nothing half-built left behind


def test_image_step_padding_and_encodings() -> None:
    class Msg:  # duck-typed, like rclpy and rosbags messages
        pass

    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    m = fill_image(Msg.__new__(Msg), rgb)
    m.data = b"".join(row.tobytes() + b"\xee\xee" for row in rgb)  # 2 bytes of row padding
    m.step = 11
    assert (image_to_array(m) == rgb).all()
    m.encoding = "bgr8"
    assert (image_to_array(m) == rgb[:, :, ::-1]).all()
    grey = fill_image(Msg.__new__(Msg), rgb[:, :, 0], "mono8")
    assert (image_to_array(grey) == np.repeat(rgb[:, :, :1], 3, axis=2)).all()
    rgba = fill_image(Msg.__new__(Msg), np.dstack([rgb, np.full((2, 3), 9, np.uint8)]), "bgra8")
    assert (image_to_array(rgba) == rgb[:, :, ::-1]).all()
    m.data = m.data[:-5]
    with pytest.raises(UserError, match="image data has 17 bytes"):
        image_to_array(m)


def test_split_by_bag_and_in_time(bags: Path, tmp_path: Path) -> None:
    names = [f"b{i}" for i in range(5)]
    train, val = split_bags(names, 0.2, seed=3)
    assert len(val) == 1 and sorted(train + val) == names
    assert split_bags(names, 0.2, seed=3) == (train, val)
    assert split_bags(["only"], 0.2) == (["only"], [])

    (seq,) = load_play_data(bags / "play", PUSHT, cache_dir=tmp_path)
    (tr,), (va,) = split_sequences([seq], 0.3)
    assert len(tr) == 25 and len(va) == 10  # cut at the segment boundary nearest 70%
    assert tr.t_ns[-1] < va.t_ns[0]
    (tr,), (va,) = split_sequences([seq], 0.1)
    assert (len(tr), len(va)) == (32, 3)  # no boundary near 90%: cut in time there


def test_parallel_loaders_share_one_cache(tmp_path: Path) -> None:
    """Two readers building at once (as DDP ranks do) both get the full, same cache."""
    import threading

    bag = write_play_bag(tmp_path / "shared", steps=30)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(load_play_data(bag, PUSHT)[0]))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(len(r) == 30 for r in results)
    assert (np.asarray(results[0].frames) == np.asarray(results[1].frames)).all()
    assert [p.name.split("-")[0] for p in (tmp_path / ".dmo_cache").iterdir()] == ["shared"]
