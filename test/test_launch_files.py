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


DEPLOY = ["deploy_flexiv.launch.py", "deploy_go2.launch.py"]


def declared_arguments(tree: ast.AST) -> dict[str, dict]:
    """DeclareLaunchArgument('name', default_value=..., choices=[...]) -> {name: keywords}
    (constants and lists of constants; anything else as its AST node)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            keywords = {}
            for kw in node.keywords:
                try:
                    keywords[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    keywords[kw.arg] = kw.value
            out[node.args[0].value] = keywords
    return out


def node_call(tree: ast.AST, executable: str) -> ast.Call:
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "Node"
        and any(
            kw.arg == "executable" and getattr(kw.value, "value", None) == executable
            for kw in node.keywords
        )
    ]
    assert len(calls) == 1, f"expected one Node(executable={executable!r}), found {len(calls)}"
    return calls[0]


def keyword(call: ast.Call, name: str) -> ast.AST:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    raise AssertionError(f"Node(...) has no {name}=")


def recorder_parameters() -> set[str]:
    source = (ROOT / "dmo_ros" / "nodes" / "recorder.py").read_text()
    return set(re.findall(r"declare\(\s*self,\s*\"(\w+)\"", source))


@pytest.mark.parametrize("name", DEPLOY)
def test_deploy_declares_record_and_bag_dir(name):
    tree = ast.parse((LAUNCH / name).read_text())
    args = declared_arguments(tree)
    assert args["record"]["default_value"] == "false", f"{name}: record:= must default to false"
    assert sorted(args["record"]["choices"]) == ["false", "true"]
    # the same argument, and default, as collect_play's (and the recorder's own parameter)
    collect = declared_arguments(ast.parse((LAUNCH / "collect_play.launch.py").read_text()))
    assert args["bag_dir"]["default_value"] == collect["bag_dir"]["default_value"]
    assert "bag_dir" in recorder_parameters()


@pytest.mark.parametrize("name", DEPLOY)
def test_deploy_runs_the_recorder_when_record_is_true(name):
    tree = ast.parse((LAUNCH / name).read_text())
    recorder = node_call(tree, "recorder")
    assert getattr(keyword(recorder, "package"), "value", None) == "dmo_ros"
    assert "recorder" in installed_executables()
    condition = keyword(recorder, "condition")
    assert ast.unparse(condition) == "IfCondition(LaunchConfiguration('record'))"

    # Its overrides are parameters the recorder declares (use_sim_time: every node has it).
    overrides = [p for p in ast.walk(keyword(recorder, "parameters")) if isinstance(p, ast.Dict)]
    assert len(overrides) == 1, f"{name}: the recorder takes the params file and one dict"
    keys = {k.value for k in overrides[0].keys}
    assert {"bag_dir", "sim", "use_sim_time"} <= keys
    assert keys - {"use_sim_time"} <= recorder_parameters(), keys - recorder_parameters()
    values = {k.value: ast.unparse(v) for k, v in zip(overrides[0].keys, overrides[0].values)}
    assert "LaunchConfiguration('bag_dir')" in values["bag_dir"]
    # the policy and the recorder both run on the simulator's clock under sim:=true
    policy = node_call(tree, "policy")
    policy_dict = next(
        p for p in ast.walk(keyword(policy, "parameters")) if isinstance(p, ast.Dict)
    )
    policy_values = {k.value: ast.unparse(v) for k, v in zip(policy_dict.keys, policy_dict.values)}
    assert values["use_sim_time"] == policy_values["use_sim_time"]

    # The deployment does not end with the recording (unlike collect_play's Shutdown).
    source = (LAUNCH / name).read_text()
    assert "OnProcessExit" not in source and "Shutdown(" not in source


@pytest.mark.parametrize("robot", ["flexiv", "go2"])
def test_recorder_config_records_the_deploy_topics(robot):
    """The recorder block of config/<robot>_nodes.yaml names the task whose command, state and
    camera topics the policy and driver use, and records the task/* status topics."""
    yaml = pytest.importorskip("yaml")
    from dmo_ros.task import load_task

    nodes = yaml.safe_load((ROOT / "config" / f"{robot}_nodes.yaml").read_text())
    recorder = nodes["recorder"]["ros__parameters"]
    task = load_task(recorder["task_config"])
    policy_robot = nodes["policy"]["ros__parameters"]["robot"]
    assert policy_robot in (task.name, task.robot), (task.name, task.robot, policy_robot)
    expected = {
        "flexiv": ("ee_delta", "geometry_msgs/msg/PoseStamped"),
        "go2": ("cmd_vel", "geometry_msgs/msg/TwistStamped"),
    }[robot]
    assert (task.action_topic, task.action_type) == expected
    extra = {entry.partition(":")[0] for entry in recorder["extra_topics"]}
    assert {"task/coverage", "task/success", "task/object_pose", "task/goal_pose"} <= extra
