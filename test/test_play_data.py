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
from dmo_ros.data.play_data import (
    CACHE_VERSION,
    MILESTONE_GRACE,
    PlaySequence,
    TaskSegment,
    load_play_data,
    split_bags,
    split_sequences,
    task_segments,
)
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


def write_task_bag(path: Path, steps: int = 20) -> Path:
    """A Push-T play bag with the sim driver's ground truth: step k's task/coverage,
    task/success and task/object_pose logged at its time, before its command and frame (as
    the driver publishes them); none for steps 0 and 1."""
    from play_bags import cdr, header, image, ros

    from dmo_ros.data.bag_writer import BagWriter

    meta = {"dmo_ros.robot": "flexiv", "dmo_ros.task": "pusht"}
    with BagWriter(path, metadata=meta) as w:
        for topic, msgtype in (
            ("camera/image_raw", "sensor_msgs/msg/Image"),
            ("ee_delta", "geometry_msgs/msg/PoseStamped"),
            ("intent", "std_msgs/msg/Bool"),
            ("task/coverage", "std_msgs/msg/Float32"),
            ("task/success", "std_msgs/msg/Bool"),
            ("task/object_pose", "geometry_msgs/msg/PoseStamped"),
        ):
            w.add_topic(topic, msgtype)
        point, quat = ros("geometry_msgs/msg/Point"), ros("geometry_msgs/msg/Quaternion")
        pose_stamped, pose = ros("geometry_msgs/msg/PoseStamped"), ros("geometry_msgs/msg/Pose")
        w.write("intent", T0, cdr(ros("std_msgs/msg/Bool")(True), "std_msgs/msg/Bool"))
        for k in range(steps):
            t = T0 + k * STEP_NS
            if k >= 2:
                yaw = 0.1 * k
                obj = pose_stamped(
                    header(t),
                    pose(
                        point(0.1 + 0.01 * k, 0.2, 0.0),
                        quat(0, 0, np.sin(yaw / 2), np.cos(yaw / 2)),
                    ),
                )
                w.write("task/object_pose", t, cdr(obj, "geometry_msgs/msg/PoseStamped"))
                cov = ros("std_msgs/msg/Float32")(k / steps)
                w.write("task/coverage", t, cdr(cov, "std_msgs/msg/Float32"))
                ok = ros("std_msgs/msg/Bool")(k >= 15)
                w.write("task/success", t, cdr(ok, "std_msgs/msg/Bool"))
            delta = pose_stamped(header(t), pose(point(0.01, 0.0, 0.0), quat(0, 0, 0, 1)))
            w.write("ee_delta", t, cdr(delta, "geometry_msgs/msg/PoseStamped"))
            w.write("camera/image_raw", t, cdr(image(k, t), "sensor_msgs/msg/Image"))
    return path


def test_ground_truth_arrays_for_evaluation(bags: Path, tmp_path: Path) -> None:
    assert CACHE_VERSION >= 2
    (seq,) = load_play_data(write_task_bag(tmp_path / "truth"), PUSHT, cache_dir=tmp_path / "c")
    k = np.arange(20)
    assert seq.coverage.dtype == np.float32 and seq.success.dtype == bool
    assert np.isnan(seq.coverage[:2]).all() and np.isnan(seq.object_pose[:2]).all()
    np.testing.assert_allclose(seq.coverage[2:], k[2:] / 20, atol=1e-6)
    assert seq.success.tolist() == (k >= 15).tolist()
    assert seq.object_pose.shape == (20, 3) and seq.object_pose.dtype == np.float32
    np.testing.assert_allclose(seq.object_pose[2:, 0], 0.1 + 0.01 * k[2:], atol=1e-6)
    np.testing.assert_allclose(seq.object_pose[2:, 1], 0.2, atol=1e-6)
    np.testing.assert_allclose(seq.object_pose[2:, 2], 0.1 * k[2:], atol=1e-5)
    # they survive slicing and pickling (DataLoader workers), and the cache
    back = pickle.loads(pickle.dumps(seq.slice(10, 18)))
    np.testing.assert_array_equal(back.coverage, seq.coverage[10:18])
    assert back.success.tolist() == seq.success[10:18].tolist()
    np.testing.assert_array_equal(back.object_pose, seq.object_pose[10:18])
    (again,) = load_play_data(tmp_path / "truth", PUSHT, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.coverage, seq.coverage)
    assert task_segments(seq) == [TaskSegment(0, 20, True)]  # by task/success

    # a bag without them: NaN / False
    (plain,) = load_play_data(bags / "play", PUSHT, cache_dir=tmp_path)
    assert np.isnan(plain.coverage).all() and not plain.success.any()
    assert plain.object_pose.shape == (35, 3) and np.isnan(plain.object_pose).all()
    # a sequence built by hand gets them too
    hand = PlaySequence(
        "x",
        np.arange(3),
        np.zeros((3, 1, 1, 3), np.uint8),
        np.zeros((3, 2)),
        np.zeros(3, bool),
        np.zeros(3, bool),
        np.zeros(3, np.int32),
    )
    assert np.isnan(hand.coverage).all() and hand.object_pose.shape == (3, 3)


def synthetic(intent: str, segment: str, milestones=(), success=()) -> PlaySequence:
    """A frameless sequence: intent as a string of 0/1, segment ids as a string of digits."""
    n = len(intent)
    flags = lambda at: np.isin(np.arange(n), list(at))  # noqa: E731
    return PlaySequence(
        bag="synthetic",
        t_ns=np.arange(n, dtype=np.int64) * STEP_NS,
        frames=np.zeros((n, 1, 1, 3), np.uint8),
        actions=np.zeros((n, 2), np.float32),
        intent=np.array([c == "1" for c in intent]),
        milestone=flags(milestones),
        segment=np.array([int(c) for c in segment], np.int32),
        success=flags(success),
    )


def test_task_segments() -> None:
    assert MILESTONE_GRACE == 3
    intent = "0011100111111000110001110"
    segment = "0000000000000000000111111"  # a new segment at step 19
    seq = synthetic(intent, segment, milestones=(9, 18))
    assert task_segments(seq) == [
        TaskSegment(2, 5, False),
        TaskSegment(7, 13, True),  # milestone inside
        TaskSegment(16, 18, True),  # milestone at 18: just after the end, same segment
        TaskSegment(21, 24, False),
    ]
    # a milestone 3 steps after the end is too late; one in the next segment does not count
    assert not task_segments(synthetic("0110000", "0000000", milestones=(6,)))[0].succeeded
    assert task_segments(synthetic("0110000", "0000000", milestones=(5,)))[0].succeeded
    assert not task_segments(synthetic("0110000", "0001111", milestones=(3,)))[0].succeeded
    # ... nor one that belongs to the next run
    got = task_segments(synthetic("01101100", "00000000", milestones=(4,)))
    assert got == [TaskSegment(1, 3, False), TaskSegment(4, 6, True)]
    # a run is cut where a segment ends, even with intent on across
    assert task_segments(synthetic("011111", "000111")) == [
        TaskSegment(1, 3, False),
        TaskSegment(3, 6, False),
    ]
    # ground truth success inside a run (sim bags)
    assert task_segments(synthetic("001110", "000000", success=(4,))) == [TaskSegment(2, 5, True)]
    assert task_segments(synthetic("001110", "000000", success=(5,)))[0].succeeded is False
    assert task_segments(synthetic("", "")) == []
    part = seq.slice(7, 20)  # indices are into the sequence given
    assert task_segments(part)[0] == TaskSegment(0, 6, True)
    with pytest.raises(AttributeError):
        task_segments(seq)[0].start = 3  # frozen
