"""`dmo-ros collect` end to end: driver + auto-play + intent button + recorder in one process,
talking over real DDS, recording a real rosbag2 MCAP bag; read back with open_bag.

Also: a kill -9 mid-run leaves a bag that opens with everything its metadata.yaml already
listed; SIGINT closes the bag cleanly; bad input is one line and exit 2; with --time-scale the
bag holds sim times, one step per control period; a reset of the scene mid-recording is an
event in the bag at the new scene's first step, and the play data splits exactly there.
No wall-clock duration is asserted: time is the simulator's.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from std_srvs.srv import Trigger
from support import launch_standin
from support.ros_probe import Probe

from dmo_ros import cli
from dmo_ros.data.bag_reader import open_bag
from dmo_ros.data.play_data import load_play_data
from dmo_ros.data.windows import WindowDataset
from dmo_ros.sim import make_sim
from dmo_ros.task import task_for_robot

# Seed 7: auto-play first plays (intent off) for 22 steps, then does the task (intent on)
# for 61 (its schedule depends on the seed alone), so >= 30 control steps hold both labels.
SEED = "7"


def collect(robot: str, out: Path, duration: float, time_scale: float = 1.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dmo_ros.cli", "collect", "--robot", robot, "--sim"]
    cmd += ["--teleop", "auto", "--duration", str(duration), "--seed", SEED, "--out", str(out)]
    cmd += ["--time-scale", str(time_scale)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def counts_on_disk(out: Path) -> dict[str, int]:
    """Message counts per topic from metadata.yaml (the recorder refreshes it every second)."""
    try:
        info = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, TypeError, KeyError, yaml.YAMLError):
        return {}
    return {
        t["topic_metadata"]["name"]: t["message_count"]
        for t in info["topics_with_message_count"] or []
    }


def wait_for(proc: subprocess.Popen, out: Path, topic: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while counts_on_disk(out).get(topic, 0) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{topic}: fewer than {count} messages on disk"
        time.sleep(0.25)


def check_play_bag(out: Path, robot: str, min_steps: int) -> None:
    """Counts, 5 Hz action timing, both intent labels, camera pixels, metadata."""
    task = task_for_robot(robot)
    bag = open_bag(out)
    assert bag.metadata["dmo_ros.robot"] == task.robot
    assert bag.metadata["dmo_ros.task"] == task.name
    assert bag.metadata["dmo_ros.sim"] == "true"
    action = bag.require_topic(task.action_topic, task.action_type)
    bag.require_topic(task.state_topic, task.state_type)
    image = bag.require_topic(task.image_topic, "sensor_msgs/msg/Image")
    intent = bag.require_topic(task.intent_topic, "std_msgs/msg/Bool")
    bag.require_topic("task/object_pose", "geometry_msgs/msg/PoseStamped")
    assert bag.topics[action][1] >= min_steps
    assert bag.topics[image][1] >= min_steps

    gaps = np.diff(bag.timestamps(action)) / 1e9
    assert abs(np.median(gaps) - task.control_period) < 0.02, gaps
    assert np.percentile(gaps, 90) < 1.5 * task.control_period, gaps

    low, high = np.array(task.action_low), np.array(task.action_high)
    for _, _, data in bag.messages([action]):
        msg = bag.decode(action, data)
        if task.robot == "flexiv":
            a = np.array([msg.pose.position.x, msg.pose.position.y])
        else:
            a = np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.angular.z])
        assert np.all(a >= low - 1e-6) and np.all(a <= high + 1e-6), a

    labels = {bool(bag.decode(intent, d).data) for _, _, d in bag.messages([intent])}
    assert labels == {True, False}, "auto-play recorded only one intent label"

    frames = []
    for _, _, data in bag.messages([image]):
        msg = bag.decode(image, data)
        assert (msg.height, msg.width, msg.encoding) == (64, 64, "rgb8")
        frames.append(np.asarray(msg.data, np.uint8).reshape(64, 64, 3))
    assert min(f.std() for f in frames) > 10, "a blank camera frame"
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 50, "a frozen scene"


def test_collect_pusht_with_auto_play(tmp_path):
    out = tmp_path / "pusht"
    proc = collect("pusht", out, duration=13)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"bag: {out}" in stdout
    assert "intent on:" in stdout and "object contact" in stdout
    check_play_bag(out, "pusht", min_steps=50)
    assert open_bag(out).recovered == []  # closed cleanly: nothing to rebuild


def test_collect_go2_with_auto_play_stops_cleanly_on_sigint(tmp_path):
    out = tmp_path / "go2"
    proc = collect("go2", out, duration=300)
    try:
        wait_for(proc, out, "/cmd_vel", 56, timeout=90)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"bag: {out}" in stdout
    bag = open_bag(out)
    assert bag.recovered == []  # metadata.yaml and every MCAP summary were written at close
    check_play_bag(out, "go2", min_steps=56)


def frames_by_stamp(bag, topic: str) -> dict[int, np.ndarray]:
    out = {}
    for _, t, data in bag.messages([topic]):
        msg = bag.decode(topic, data)
        out[t] = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
    return out


def test_collect_faster_than_real_time_records_sim_time_and_a_reset(tmp_path):
    """--time-scale 4, every node on the sim clock, and the scene reset through the driver's
    service mid-recording: the bag's steps are 0.2 s of sim time apart (as in a real-time
    bag), the reset is one `reset` event at the new scene's first frame (a step of its own),
    and the play data's segments split exactly there, with no window across it."""
    out, sim_s = tmp_path / "fast", 30.0
    probe = Probe("collect_probe")  # discovers the driver's service while the run starts
    proc = collect("pusht", out, duration=sim_s, time_scale=4)
    try:
        wait_for(proc, out, "/ee_delta", 40, timeout=90)
        response = probe.call(Trigger, "reset", Trigger.Request(), timeout=30)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        probe.close()
    assert proc.returncode == 0, stderr
    assert response.success and f"seed {int(SEED) + 1}" in response.message, response.message
    assert "x real time" in stdout
    check_play_bag(out, "pusht", min_steps=140)

    task = task_for_robot("pusht")
    bag = open_bag(out)
    period = round(task.control_period * 1e9)
    actions = np.array(bag.timestamps(bag.require_topic(task.action_topic)))
    images = np.array(bag.timestamps(bag.require_topic(task.image_topic)))
    assert abs(len(actions) - sim_s / task.control_period) <= 2, len(actions)
    # Every stamp is a step time (the recorder stamps with the last /clock tick delivered before
    # the message), one image per step, the reset's included; one action per step too, as the
    # sim waits for a late command as long as a real-time step would (only a longer delay
    # could drop one).
    assert np.all((actions - images[0]) % period == 0) and np.all(
        (images - images[0]) % period == 0
    )
    assert np.all(np.diff(images) == period), np.unique(np.diff(images), return_counts=True)
    gaps = np.diff(actions)
    assert np.mean(gaps == period) >= 0.98, np.unique(gaps, return_counts=True)

    # The reset: one event, logged at its own stamp, a step time after the 40th action.
    reset = bag.require_topic("reset", "std_msgs/msg/Header")
    ((_, reset_ns, data),) = list(bag.messages([reset]))
    header = bag.decode(reset, data)
    assert header.stamp.sec * 10**9 + header.stamp.nanosec == reset_ns
    assert header.frame_id == "world"
    assert reset_ns in set(images) and reset_ns > actions[39]
    # The new scene is the first scene of the next seed, from its first frame and pose on.
    sim = make_sim("flexiv", image_size=64, control_period=task.control_period)
    new_frame, new_gt = sim.reset(seed=int(SEED) + 1)
    sim.close()
    frames = frames_by_stamp(bag, bag.require_topic(task.image_topic))
    np.testing.assert_array_equal(frames[reset_ns], new_frame)
    assert not np.array_equal(frames[reset_ns - period], new_frame)
    pose = bag.require_topic("task/object_pose")
    poses = {t: bag.decode(pose, d).pose.position for _, t, d in bag.messages([pose])}
    np.testing.assert_allclose(
        [poses[reset_ns].x, poses[reset_ns].y], new_gt["object"][:2], atol=1e-6
    )

    (seq,) = load_play_data([out], task, cache_dir=tmp_path / "cache")
    assert len(seq) == len(actions)
    assert seq.frames.shape == (len(actions), 64, 64, 3)
    first_new = int(np.searchsorted(seq.t_ns, reset_ns))
    assert seq.t_ns[first_new] == reset_ns  # the new scene's first step has its action
    np.testing.assert_array_equal(seq.frames[first_new], new_frame)
    # Two segments, cut exactly at the reset: the old scene's last step ends the first.
    assert seq.segment.tolist() == [0] * first_new + [1] * (len(seq) - first_new)
    windows = WindowDataset([seq], length=5)
    starts = windows.index[:, 1]
    assert len(starts) == (first_new - 4) + (len(seq) - first_new - 4)
    assert all(s + 4 < first_new or s >= first_new for s in starts)


def test_kill_9_keeps_what_the_bag_listed(tmp_path):
    out = tmp_path / "pusht"
    proc = collect("pusht", out, duration=300)
    try:
        wait_for(proc, out, "/camera/image_raw", 15, timeout=90)
        listed = counts_on_disk(out)  # metadata.yaml describes only what is already on disk
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    bag = open_bag(out)
    assert bag.recovered  # never closed: read back from what the chunks hold
    assert listed["/camera/image_raw"] >= 15
    for topic, count in listed.items():
        assert bag.topics[topic][1] >= count, topic
    image = bag.require_topic("camera/image_raw")
    frames = [bag.decode(image, d) for _, _, d in bag.messages([image])]
    assert len(frames) == bag.topics[image][1]
    assert all(len(f.data) == 64 * 64 * 3 for f in frames)
    stamps = np.diff(bag.timestamps(image))
    assert np.all(stamps == round(0.2e9)), np.unique(stamps)  # no hole: every step is there


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep").write_text("x")
    cases = [
        ["--robot", "pusht", "--out", str(out)],  # never overwrite a bag
        ["--robot", "go2", "--duration", "0", "--out", str(tmp_path / "a")],
        ["--robot", "pusht", "--teleop", "auto", "--real", "--out", str(tmp_path / "b")],
        ["--robot", "pusht", "--teleop", "keyboard", "--out", str(tmp_path / "c")],  # no tty
        ["--robot", "go2", "--time-scale", "0", "--out", str(tmp_path / "d")],
        [
            "--robot",
            "go2",
            "--real",
            "--teleop",
            "joy",
            "--time-scale",
            "2",
            "--out",
            str(tmp_path / "e"),
        ],
    ]
    for args in cases:
        assert cli.main(["collect", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dmo-ros collect: error:"), err
    assert [p.name for p in out.iterdir()] == ["keep"]
    assert not any((tmp_path / n).exists() for n in "abcde")
    with pytest.raises(SystemExit) as exc:
        cli.main(["collect", "--robot", "spot"])
    assert exc.value.code == 2


# --- the launch files' choices, run against a minimal stand-in for `launch` -----------------
# (support/launch_standin.py: the Python of collect_play.launch.py for each combination)


@pytest.mark.parametrize(
    "robot,sim,teleop,expected",
    [
        ("flexiv", "true", "auto", {"flexiv_driver", "auto_play", "intent_button", "recorder"}),
        ("go2", "true", "keyboard", {"go2_driver", "teleop", "intent_button", "recorder"}),
        (
            "flexiv",
            "false",
            "joy",
            {"flexiv_driver", "camera", "joy_node", "teleop", "intent_button", "recorder"},
        ),
    ],
)
def test_collect_play_launch_starts_what_collect_composes(
    monkeypatch, robot, sim, teleop, expected
):
    launch_standin.install(monkeypatch)
    context = {"robot": robot, "sim": sim, "teleop": teleop, "robot_sn": "Rizon4-1"}
    context |= {"duration": "30"} | ({"time_scale": "4.0"} if sim == "true" else {})
    actions = launch_standin.run_launch("collect_play.launch.py", context)
    nodes = launch_standin.nodes(actions)
    assert set(nodes) == expected
    params = f"{robot}_nodes.yaml"
    for exe in expected - {"joy_node"}:
        assert nodes[exe]["files"] == [params], exe
    driver = nodes[f"{robot}_driver"]
    assert driver["backend"] == (
        "sim" if sim == "true" else {"flexiv": "flexiv", "go2": "unitree"}[robot]
    )
    assert nodes["recorder"]["duration_s"] == 30.0 and nodes["recorder"]["sim"] == (sim == "true")
    # A sim run is on the simulator's clock: every node, the driver at the asked time_scale.
    assert all(nodes[exe]["use_sim_time"] == (sim == "true") for exe in expected)
    assert driver["time_scale"] == (4.0 if sim == "true" else 1.0)
    if robot == "flexiv":
        assert driver["robot_sn"] == "Rizon4-1"
    if teleop == "keyboard":
        assert nodes["teleop"]["input"] == "keyboard" and nodes["teleop"]["prefix"]
    # The recording is the launch's purpose: its end shuts the launch down.
    assert any(type(a).__name__ == "RegisterEventHandler" for a in actions)


def test_collect_play_launch_refuses_auto_play_on_a_real_robot(monkeypatch):
    launch_standin.install(monkeypatch)
    with pytest.raises(RuntimeError, match="sim"):
        launch_standin.run_launch("collect_play.launch.py", {"sim": "false", "teleop": "auto"})
    with pytest.raises(RuntimeError, match="time_scale:=2 needs sim:=true"):
        launch_standin.run_launch(
            "collect_play.launch.py", {"sim": "false", "teleop": "joy", "time_scale": "2"}
        )


def test_collect_play_launch_view_opens_the_camera_window(monkeypatch):
    launch_standin.install(monkeypatch)
    context = {"robot": "go2", "teleop": "keyboard", "view": "true"}
    nodes = launch_standin.nodes(launch_standin.run_launch("collect_play.launch.py", context))
    viewer = nodes["viewer"]
    assert viewer["files"] == ["go2_nodes.yaml"]  # its layout and size from the robot's file
    assert viewer["teleop"] == "keyboard" and viewer["use_sim_time"] is True
    assert "viewer" not in launch_standin.nodes(
        launch_standin.run_launch("collect_play.launch.py", {"robot": "go2"})
    )
