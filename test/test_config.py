"""Strict config loading: every mistake names the file and the key."""

from dataclasses import dataclass, field

import pytest

from dmo_ros.config import apply_preset, build, load, load_yaml, ros_parameters
from dmo_ros.errors import UserError


@dataclass
class Inner:
    lr: float = 1e-4
    channels: list[int] = field(default_factory=lambda: [64, 64])


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    steps: int = 10


def test_build_nested_and_defaults():
    cfg = build(Outer, {"name": "x", "inner": {"lr": 3}})
    assert cfg.inner.lr == 3.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.channels == [64, 64] and cfg.steps == 10


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "x", "stpes": 3}, "unknown key 'stpes'"),
        ({"name": "x", "inner": {"lrr": 1}}, "unknown key 'inner.lrr'"),
        ({}, "missing key 'name'"),
        ({"name": "x", "steps": "many"}, "'steps' must be an integer"),
        ({"name": "x", "inner": {"channels": [1, "a"]}}, "'inner.channels[1]' must be an integer"),
    ],
)
def test_build_refuses_bad_keys(data, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(Outer, data, "cfg.yaml")


def test_presets_merge_and_refuse_unknown():
    data = {"model": {"width": 8, "presets": {"tiny": {"width": 2}, "paper": {}}}}
    assert apply_preset(data, "tiny")["model"] == {"width": 2}
    assert apply_preset(data, "paper")["model"] == {"width": 8}
    with pytest.raises(UserError, match="unknown preset 'cpu'"):
        apply_preset(data, "cpu", "f.yaml")
    bad = {"model": {"width": 8, "presets": {"tiny": {"depth": 2}}}}
    with pytest.raises(UserError, match="unknown key 'model.depth'"):
        apply_preset(bad, "tiny", "f.yaml")


def test_files_missing_and_malformed(tmp_path):
    with pytest.raises(UserError, match="nope.yaml: config file not found"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML"):
        load_yaml(bad)
    good = tmp_path / "good.yaml"
    good.write_text("section:\n  name: n\n  steps: 4\n")
    assert load(Outer, good, "section").steps == 4
    with pytest.raises(UserError, match="missing key 'other'"):
        load(Outer, good, "other")


def test_ros_parameter_files(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    rate: 5.0\n"
        "driver:\n  ros__parameters:\n    backend: sim\n    rate: 10.0\n"
    )
    assert ros_parameters(path, "driver") == {"rate": 10.0, "backend": "sim"}
    assert ros_parameters(path, "other") == {"rate": 5.0}
