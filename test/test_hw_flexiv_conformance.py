"""The Flexiv adapter against the real flexivrdk 2.x, in the Python 3.12 venv (no cp311 wheel).

Every name in dmo_ros.hw.flexiv.SDK_CALLS / SDK_ATTRIBUTES must exist in the real module
with a signature that accepts exactly the keywords the adapter passes and returns what it
relies on; the test double must declare the same parameters and enum values. No Robot is
constructed (that would search the network).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from dmo_ros.hw import flexiv

ROOT = Path(__file__).resolve().parent.parent
PY312 = ROOT / ".venv312" / "bin" / "python"

SCRIPT = r'''
import inspect, json, re, time
import flexivrdk
from dmo_ros.hw import flexiv
from support.flexiv_double import FlexivDouble

problems, checked = [], []
SIG = re.compile(r"^(?:\d+\.\s+)?(\w+)\((.*)\)\s*->\s*(.+)$")


def split_top(text):
    """Split a pybind11 parameter list on the commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur.strip()); cur = ""
        else:
            cur += ch
    return parts + ([cur.strip()] if cur.strip() else [])


def overloads(obj, name):
    """(parameter names, required names, return type) for each documented overload."""
    out = []
    for line in (obj.__doc__ or "").splitlines():
        m = SIG.match(line.strip())
        if not m or m.group(1) != name:
            continue
        params = [p for p in split_top(m.group(2)) if not p.startswith("self")]
        names = [p.split(":")[0].strip() for p in params]
        required = {p.split(":")[0].strip() for p in params if " = " not in p}
        out.append((names, required, m.group(3).replace("flexivrdk.flexivrdk.", "").strip()))
    return out


def resolve(root, path):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


double = FlexivDouble()
fake_robot = double.Robot(robot_sn=double.serial_number)
for path, (kwargs, returns) in flexiv.SDK_CALLS.items():
    is_class = "." not in path
    try:
        real = resolve(flexivrdk, path)
    except AttributeError:
        problems.append(f"flexivrdk has no {path}")
        continue
    target, name = (real.__init__, "__init__") if is_class else (real, path.split(".")[-1])
    found = overloads(target, name)
    if not found:
        problems.append(f"{path}: no signature in its docstring")
        continue
    fits = [o for o in found if set(kwargs) <= set(o[0]) and o[1] <= set(kwargs)]
    if not fits:
        problems.append(f"{path}: no overload takes exactly {kwargs}: {[o[0] for o in found]}")
        continue
    if not any(o[2] == returns for o in fits):
        problems.append(f"{path}: returns {[o[2] for o in fits]}, adapter expects {returns}")
    # The double must declare the same parameters, in the same order.
    fake = getattr(double, path) if is_class else getattr(fake_robot, name)
    fake_params = [p for p in inspect.signature(fake).parameters if p != "self"]
    if not any(fake_params == o[0] for o in fits):
        problems.append(f"double {path}{fake_params} != real {[o[0] for o in fits]}")
    checked.append(path)

for path in flexiv.SDK_ATTRIBUTES:
    try:
        real = resolve(flexivrdk, path)
    except AttributeError:
        problems.append(f"flexivrdk has no {path}")
        continue
    owner = path.split(".")[0]
    if owner in ("Mode", "JointGroup"):
        fake = resolve(double, path)
        if int(fake) != int(real):
            problems.append(f"{path}: double value {int(fake)} != real {int(real)}")
    elif not hasattr(resolve(double, owner)(), path.split(".")[1]):
        problems.append(f"double {owner} has no field {path.split('.')[1]}")
    checked.append(path)

# The double's enums carry every real member with the real value.
for enum_name in ("Mode", "JointGroup", "OperationalStatus"):
    real = {k: int(v) for k, v in getattr(flexivrdk, enum_name).__members__.items()}
    fake = {k: int(v) for k, v in getattr(FlexivDouble, enum_name).__members__.items()}
    if real != fake:
        problems.append(f"{enum_name}: double {fake} != real {real}")

# The adapter builds real command objects and resolves its joint group on the real module.
pose = [0.5, 0.0, 0.2, 0.0, 0.0, 1.0, 0.0]
cmd = flexiv.make_command(flexivrdk, pose, 0.1)
if list(cmd.pose_d) != pose or abs(cmd.max_linear_vel - 0.1) > 1e-12:
    problems.append(f"make_command: pose_d {list(cmd.pose_d)}, vel {cmd.max_linear_vel}")
arm = flexiv.FlexivArm("Rizon4-000000", [0.3, -0.2, 0.1], [0.7, 0.2, 0.3])  # no connect()
if arm._sdk is not flexivrdk or arm._group != flexivrdk.JointGroup.ARM_1:
    problems.append("FlexivArm did not bind the real flexivrdk")
# And it runs here on 3.12: connect, stream a delta, close (against the double).
sim = FlexivDouble()
with flexiv.FlexivArm(sim.serial_number, [0.3, -0.2, 0.1], [0.7, 0.2, 0.3], sdk=sim) as arm:
    arm.connect(timeout=5.0)
    end = arm.apply_delta([0.02, 0.01])
    deadline = time.monotonic() + 10.0  # the stream reaches the target one period later
    while max(abs(a - b) for a, b in zip(sim.sent()[-1].kwargs["pose_d"], end)) > 1e-12:
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
last = sim.sent()[-1].kwargs["pose_d"]
if sim.names()[-1] != "Stop" or max(abs(a - b) for a, b in zip(last, end)) > 1e-12:
    problems.append("FlexivArm did not stream and stop on Python 3.12")
print(json.dumps({"version": flexivrdk.__version__, "checked": checked, "problems": problems}))
'''


def test_adapter_matches_the_real_flexivrdk():
    if not PY312.exists():
        pytest.skip(f"{PY312} missing: build it with `make venv312` (needs python3.12)")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'test'}"}
    run = subprocess.run(
        [str(PY312), "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["version"].startswith("2.")
    assert report["problems"] == []
    assert report["checked"] == [*flexiv.SDK_CALLS, *flexiv.SDK_ATTRIBUTES]


def test_the_double_offers_only_what_the_adapter_declares():
    """A new SDK call in the adapter fails its unit tests until the double and the list have it."""
    from support.flexiv_double import FlexivDouble, RobotDouble

    robot_methods = {f"Robot.{n}" for n in vars(RobotDouble) if not n.startswith("_")}
    declared = {name for name in flexiv.SDK_CALLS if name.startswith("Robot.")}
    assert robot_methods == declared
    for path in flexiv.SDK_CALLS:
        assert hasattr(FlexivDouble, path.split(".")[0])
