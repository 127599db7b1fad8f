"""Every executable setup.py installs answers `--help` (and a stray argument) without starting
anything; the parameters its help lists are the ones the built node declares."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from rclpy.parameter import Parameter

from dmo_ros.nodes.usage import node_parameters

ROOT = Path(__file__).resolve().parent.parent


def executables() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES":
            return [elt.value for elt in node.value.elts]
    raise AssertionError("setup.py has no NODES list")


def node_class(exe: str) -> type:
    import importlib

    from rclpy.node import Node

    module = importlib.import_module(f"dmo_ros.nodes.{exe}")
    (cls,) = {
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, Node) and v.__module__ == module.__name__
    }
    return cls


@pytest.mark.parametrize("exe", executables())
def test_help_prints_the_parameters_and_starts_nothing(exe, tmp_path):
    # Its main(), as `ros2 run dmo_ros <exe>` calls it, in an empty folder.
    done = subprocess.run(
        [sys.executable, "-m", f"dmo_ros.nodes.{exe}", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: ros2 run dmo_ros {exe} [--ros-args"), done.stdout
    name, params = node_parameters(node_class(exe))
    assert params, "no parameters found"
    for p in params:
        line = next(line for line in done.stdout.splitlines() if line.split()[:1] == [p.name])
        assert p.description in line and f"default {p.default!r}" in line, line
    assert f"parameters of node '{name}':" in done.stdout
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no bag, no rosbags/, no log, no model folder


def test_an_argument_that_is_not_a_ros_one_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "dmo_ros.nodes.recorder", "--duration", "5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "unknown argument '--duration'" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def built(exe: str, ctx, tmp_path: Path):
    """The node, built in this process with only what it needs to start here."""
    overrides = {
        "recorder": {"out": str(tmp_path / "bag")},
        "bag_replay": {"bag": str(tmp_path / "replayed")},
        "teleop": {"input": "joy"},
    }.get(exe, {})
    if exe == "bag_replay":
        from dmo_ros.data.bag_writer import BagWriter

        with BagWriter(tmp_path / "replayed") as w:
            w.add_topic("/intent", "std_msgs/msg/Bool")
            w.write("/intent", 1, b"\x00\x01\x00\x00\x01")
    params = [Parameter(k, value=v) for k, v in overrides.items()]
    return node_class(exe)(context=ctx, parameter_overrides=params), overrides


# camera needs a camera; go2_driver's MuJoCo scene is left to test_driver_go2.py.
@pytest.mark.parametrize(
    "exe", ["recorder", "bag_replay", "trainer", "intent_button", "teleop", "flexiv_driver"]
)
def test_help_lists_what_the_built_node_declares(exe, ros_context, tmp_path):
    from rclpy.node import Node

    bare = Node("bare", context=ros_context)
    standard = set(bare.list_parameters([], 0).names)  # rclpy's own: use_sim_time, ...
    bare.destroy_node()
    node, overrides = built(exe, ros_context, tmp_path)
    try:
        names = sorted(set(node.list_parameters([], 0).names) - standard)
        declared = {n: node.get_parameter(n).value for n in names}
        described = {
            n: d.description for n, d in zip(names, node.describe_parameters(names), strict=True)
        }
    finally:
        node.destroy_node()
    _, params = node_parameters(node_class(exe))
    assert sorted(p.name for p in params) == names
    for p in params:
        assert described[p.name] == p.description, p.name
        if p.name not in overrides:
            assert declared[p.name] == p.default, p.name
