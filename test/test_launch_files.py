"""Static check of the launch files (`launch` cannot be installed here).

Every `Node(package='dmo_ros', executable=X)` must name an executable that setup.py
installs (and whose module has `main`), and every config/rviz file they name must exist.
"""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
REQUIRED = [
    "collect_play.launch.py",
    "deploy_flexiv.launch.py",
    "deploy_go2.launch.py",
    "train.launch.py",
    "replay.launch.py",
]


def installed_executables() -> set[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES":
            return {elt.value for elt in node.value.elts}
    raise AssertionError("setup.py has no NODES list")


def node_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Node":
            yield {
                kw.arg: kw.value.value for kw in node.keywords if isinstance(kw.value, ast.Constant)
            }


def test_required_launch_files_exist():
    missing = [name for name in REQUIRED if not (LAUNCH / name).is_file()]
    assert not missing


@pytest.mark.parametrize("name", REQUIRED)
def test_launch_file_is_consistent(name):
    path = LAUNCH / name
    source = path.read_text()
    tree = ast.parse(source)
    names = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    assert "generate_launch_description" in names
    assert "DeclareLaunchArgument" in source

    executables = installed_executables()
    for call in node_calls(tree):
        if call.get("package") != "dmo_ros":
            continue
        exe = call.get("executable")
        assert exe in executables, f"{name}: executable {exe!r} is not installed by setup.py"
        module = importlib.import_module(f"dmo_ros.nodes.{exe}")
        assert callable(getattr(module, "main", None)), f"dmo_ros.nodes.{exe} has no main()"

    for ref in re.findall(r"['\"]([\w./-]+\.(?:yaml|rviz))['\"]", source):
        folder = "rviz" if ref.endswith(".rviz") else "config"
        assert (ROOT / folder / Path(ref).name).is_file(), f"{name}: {ref} does not exist"


def test_setup_installs_every_node_module():
    for exe in installed_executables():
        module = importlib.import_module(f"dmo_ros.nodes.{exe}")
        assert callable(getattr(module, "main", None)), exe
