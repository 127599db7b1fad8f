"""replay.launch.py against a stand-in for `launch` (it cannot be installed here) and the real
ament index: with RViz installed it starts RViz; without, one line says so and the replay runs.

The stand-in records each action's arguments; `ament_index_python` (a real wheel) reads a
prefix the test builds, as a ROS install's AMENT_PREFIX_PATH would give it.
"""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

import pytest

from dmo_ros.data.bag_writer import BagWriter

ROOT = Path(__file__).resolve().parent.parent


class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Config(_Action):
    def perform(self, context):
        return context[self.args[0]]


LAUNCH_API = {
    "launch": ["LaunchDescription"],
    "launch.actions": ["DeclareLaunchArgument", "ExecuteProcess", "LogInfo", "OpaqueFunction"],
    "launch.substitutions": ["PathJoinSubstitution"],
    "launch_ros": [],
    "launch_ros.actions": ["Node"],
    "launch_ros.substitutions": ["FindPackageShare"],
}


@pytest.fixture
def launch_standin(monkeypatch):
    for module, names in LAUNCH_API.items():
        stub = types.ModuleType(module)
        for name in names:
            setattr(stub, name, type(name, (_Action,), {}))
        monkeypatch.setitem(sys.modules, module, stub)
    sys.modules["launch.substitutions"].LaunchConfiguration = _Config


def ament_prefix(root: Path, *packages: str) -> Path:
    """An install prefix whose ament index lists `packages` (what colcon/apt install)."""
    index = root / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    for package in packages:
        (index / package).write_text("")
    return root


def launch(bag: Path, **arguments: str) -> list:
    """The actions the launch file's OpaqueFunction returns for these launch arguments."""
    description = runpy.run_path(str(ROOT / "launch" / "replay.launch.py"))
    entities = description["generate_launch_description"]().args[0]
    declared = {
        a.args[0]: a.kwargs.get("default_value")
        for a in entities
        if type(a).__name__ == "DeclareLaunchArgument"
    }
    assert set(arguments) <= set(declared)
    values = {k: v for k, v in declared.items() if v is not None} | {"bag": str(bag)} | arguments
    (opaque,) = [a for a in entities if type(a).__name__ == "OpaqueFunction"]
    return opaque.kwargs["function"](values)


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
