"""Test harness: DDS stays on loopback and every run gets its own ROS domain.

This runs before any test module imports rclpy, so the variables reach DDS.
"""

import os
import sys

import pytest

from dmo_ros.nodes.dds_env import claim_domain_id

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A domain of our own even when the caller exported one: parallel runs must not see each other.
os.environ["ROS_DOMAIN_ID"] = str(claim_domain_id())
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


def pytest_addoption(parser):
    parser.addoption(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="bf16 autocast in the tests that train (auto: where the CPU has it natively); "
        "tests of exact numerics pin their own precision",
    )


@pytest.fixture
def bf16(request) -> str:
    """The `train.bf16` config value (auto | true | false) of --bf16, for training tests."""
    return {"auto": "auto", "on": "true", "off": "false"}[request.config.getoption("bf16")]


@pytest.fixture
def ros_context():
    """An rclpy context of the test's own, shut down afterwards."""
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    yield context
    if context.ok():
        rclpy.shutdown(context=context)


@pytest.fixture(scope="session")
def python() -> str:
    """The interpreter of this venv, for child processes (they inherit the DDS variables)."""
    return sys.executable


@pytest.fixture(scope="session")
def pusht_policy(tmp_path_factory):
    """A tiny Push-T policy trained with the simulator as forward model (about 5 s)."""
    from dmo_ros import cli

    out = tmp_path_factory.mktemp("pol")
    args = ["train", "policy", "--preset", "tiny", "--forward", "sim", "--reward", "sim"]
    assert cli.main([*args, "--out", str(out)]) == 0
    return out
