"""The `dmo-ros` command: help texts, usage errors, unbuilt subcommands, runner table."""

import importlib
import subprocess
import sys

import pytest

from dmo_ros import cli


def dmo_ros(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dmo_ros.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_every_subcommand():
    out = dmo_ros("--help")
    assert out.returncode == 0
    for verb in ("collect", "train", "eval", "deploy", "replay", "bag", "demo", "bench"):
        assert verb in out.stdout


@pytest.mark.parametrize("verb", ["collect", "train", "eval", "deploy", "replay", "bag", "bench"])
def test_each_subcommand_has_real_help(verb):
    out = dmo_ros(verb, "--help")
    assert out.returncode == 0
    assert "usage: dmo-ros " + verb in out.stdout
    assert len(out.stdout.splitlines()) > 3


def test_unknown_subcommand_and_flag_exit_2_with_usage():
    for args in (["fly"], ["bag", "info", "x", "--bogus"]):
        out = dmo_ros(*args)
        assert out.returncode == 2
        assert "usage:" in out.stderr
        assert "Traceback" not in out.stderr


def test_every_built_runner_resolves_to_a_function():
    for (verb, what), target in cli.RUNNERS.items():
        if target is None:
            continue
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), (verb, what)
