"""replay.launch.py against a stand-in for `launch` (it cannot be installed here) and the real
ament index: with RViz installed it starts RViz; without, one line says so and the replay runs.

The stand-in records each action's arguments; `ament_index_python` (a real wheel) reads a
prefix the test builds, as a ROS install's AMENT_PREFIX_PATH would give it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import launch_standin as standin
from support.launch_standin import ament_prefix

from dmo_ros.data.bag_writer import BagWriter


@pytest.fixture
def launch_standin(monkeypatch):
    standin.install(monkeypatch)


def launch(bag: Path, **arguments: str) -> list:
    return standin.run_launch("replay.launch.py", {"bag": str(bag), **arguments})


@pytest.fixture
def bag(tmp_path) -> Path:
    with BagWriter(tmp_path / "bag", metadata={"dmo_ros.robot": "go2"}):
        pass
    return tmp_path / "bag"


def kinds(actions) -> list[str]:
    """Each action's class name; a Node's executable instead."""
    return [a.kwargs.get("executable", type(a).__name__) for a in actions]


def test_with_rviz_installed_it_starts_rviz_on_the_bags_view(
    launch_standin, bag, tmp_path, monkeypatch
):
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(ament_prefix(tmp_path / "ros", "rviz2")))
    actions = launch(bag)
    assert kinds(actions) == ["ExecuteProcess", "bag_replay", "rviz2"]
    rviz = actions[-1]
    assert rviz.kwargs["package"] == "rviz2" and rviz.kwargs["arguments"][0] == "-d"
    assert rviz.kwargs["arguments"][1].args[0][-1] == "push_cube.rviz"  # go2, from the bag


@pytest.mark.parametrize("prefix", ["other packages", "no ROS environment"])
def test_without_rviz_it_says_so_in_one_line_and_replays(
    prefix, launch_standin, bag, tmp_path, monkeypatch
):
    if prefix == "other packages":
        monkeypatch.setenv("AMENT_PREFIX_PATH", str(ament_prefix(tmp_path / "ros", "rclpy")))
    else:
        monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    actions = launch(bag)  # rviz:=true is the default
    assert kinds(actions) == ["ExecuteProcess", "bag_replay", "LogInfo"]
    message = actions[-1].kwargs["msg"]
    assert "RViz is not installed" in message and "\n" not in message
    play = actions[0].kwargs["cmd"]
    assert play[:4] == ["ros2", "bag", "play", str(bag)]
    assert actions[1].kwargs["parameters"][0]["mode"] == "viz"


def test_rviz_false_asks_for_nothing(launch_standin, bag, tmp_path, monkeypatch):
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(ament_prefix(tmp_path / "ros", "rviz2")))
    assert kinds(launch(bag, rviz="false")) == ["ExecuteProcess", "bag_replay"]


def test_loop_and_rate_reach_the_player_and_the_path_publisher(
    launch_standin, bag, tmp_path, monkeypatch
):
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(ament_prefix(tmp_path / "ros", "rviz2")))
    actions = launch(bag, loop="true", rate="2.0")
    assert actions[0].kwargs["cmd"] == ["ros2", "bag", "play", str(bag), "--rate", "2.0", "--loop"]
    replay = standin.nodes(actions)["bag_replay"]
    assert (replay["mode"], replay["loop"], replay["rate"]) == ("viz", True, 2.0)
