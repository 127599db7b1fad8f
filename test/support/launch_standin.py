"""A stand-in for `launch` / `launch_ros` (they cannot be installed here), to run the Python of
the launch files: each action records its arguments, launch arguments resolve from a dict.
test_launch_files.py checks the names they use statically; this runs them.

    install(monkeypatch)
    actions = run_launch("collect_play.launch.py", {"robot": "go2"})
    nodes(actions)["go2_driver"]["files"]   # parameter files, overrides and Node kwargs
"""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAUNCH_API = {
    "launch": ["LaunchDescription"],
    "launch.actions": [
        "DeclareLaunchArgument",
        "EmitEvent",
        "ExecuteProcess",
        "LogInfo",
        "OpaqueFunction",
        "RegisterEventHandler",
    ],
    "launch.event_handlers": ["OnProcessExit"],
    "launch.events": ["Shutdown"],
    "launch.substitutions": ["PathJoinSubstitution"],
    "launch_ros": [],
    "launch_ros.actions": ["Node"],
    "launch_ros.substitutions": ["FindPackageShare"],
}


class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Config(_Action):
    def perform(self, context):
        return context[self.args[0]]


def install(monkeypatch) -> None:
    """Put the stand-in modules in sys.modules for this test."""
    for module, names in LAUNCH_API.items():
        stub = types.ModuleType(module)
        for name in names:
            setattr(stub, name, type(name, (_Action,), {}))
        monkeypatch.setitem(sys.modules, module, stub)
    sys.modules["launch.substitutions"].LaunchConfiguration = _Config


def run_launch(name: str, context: dict) -> list:
    """The actions the launch file's OpaqueFunction returns for these launch arguments (the
    declared defaults for the others)."""
    description = runpy.run_path(str(ROOT / "launch" / name))["generate_launch_description"]()
    entities = description.args[0]
    declared = {
        a.args[0]: a.kwargs.get("default_value")
        for a in entities
        if type(a).__name__ == "DeclareLaunchArgument"
    }
    assert set(context) <= set(declared), set(context) - set(declared)
    values = {k: v for k, v in declared.items() if v is not None} | context
    (opaque,) = [a for a in entities if type(a).__name__ == "OpaqueFunction"]
    return opaque.kwargs["function"](values)


def nodes(actions) -> dict[str, dict]:
    """Per Node executable: its parameter files, parameter overrides and Node kwargs."""
    out = {}
    for a in actions:
        if type(a).__name__ == "Node":
            params = a.kwargs.get("parameters", [])
            files = [p.args[0][-1] for p in params if type(p).__name__ == "PathJoinSubstitution"]
            overrides = {k: v for p in params if isinstance(p, dict) for k, v in p.items()}
            out[a.kwargs["executable"]] = {"files": files, **overrides, **a.kwargs}
    return out


def ament_prefix(root: Path, *packages: str) -> Path:
    """An install prefix whose ament index lists `packages` (what colcon/apt install)."""
    index = root / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    for package in packages:
        (index / package).write_text("")
    return root
