"""Policy evaluation in the simulated Push-T robot, with scripted agents."""

import argparse
import json
import sys
import types

import numpy as np
import pytest
import torch

from dmo_ros.errors import UserError
from dmo_ros.rl import evaluate
from dmo_ros.rl.evaluate import evaluate_agent, plot_curves, table
from dmo_ros.sim.pusht_table import PushTTable
from dmo_ros.task import load_task

NEAR = {"position": 0.1, "angle_deg": 30.0, "steps": 64}


class ConstantAgent:
    """Always the same normalised action; records the batch sizes it was reset with."""

    def __init__(self, action=(0.0, 0.0)):
        self.action = torch.tensor(action)
        self.resets = []

    def reset(self, batch: int) -> None:
        self.resets.append(batch)

    def act(self, frames: torch.Tensor) -> torch.Tensor:
        assert frames.dtype == torch.uint8 and frames.shape[1:] == (64, 64, 3)
        return self.action.expand(frames.shape[0], -1)


class SolvedAfterAPush(PushTTable):
    """A table that reports success once the end-effector is 5 cm from where it started
    (the episode bookkeeping under test, not the physics)."""

    def reset(self, seed=None, options=None):
        out = super().reset(seed=seed, options=options)
        self.set_ee((0.05, self.ee[1]))  # room to push in +x
        self._start = self.ee
        return out

    def step(self, action):
        image, cover, success, trunc, truth = super().step(action)
        if np.hypot(*(self.ee - self._start)) > 0.05:
            cover, success = 1.0, True
        return image, cover, success, trunc, truth


@pytest.fixture(scope="module")
def task():
    return load_task("pusht.yaml")


def test_fields_and_a_still_agent_never_succeeds(task):
    agent = ConstantAgent()
    r = evaluate_agent(agent, task, "near", steps=5, episodes=3, batch=2, seed=10, near=NEAR)
    assert agent.resets == [2, 1]  # lockstep batches, the last one short
    assert (r["episodes"], r["successes"], r["success_rate"]) == (3, 0, 0.0)
    assert r["steps_to_success"] == {"mean": None, "median": None}
    assert len(r["coverage_curve"]) == 6  # the start and 5 steps
    # a pusher that stays put leaves the T (clear of it at the start) where it was
    assert np.allclose(r["coverage_curve"], r["coverage_curve"][0])
    assert [row["seed"] for row in r["rows"]] == [10, 11, 12]
    assert all(row["steps"] == 5 and not row["success"] for row in r["rows"])
    assert all(row["max_coverage"] < 0.95 for row in r["rows"])
    json.dumps(r)  # JSON-able as it is


def test_seeded_and_the_same_starts_for_every_policy(task):
    kwargs = dict(variant="full", steps=6, episodes=2, batch=2, seed=3, near=None)
    push = [evaluate_agent(ConstantAgent((1.0, 0.5)), task, **kwargs) for _ in range(2)]
    assert push[0] == push[1]
    still = evaluate_agent(ConstantAgent(), task, **kwargs)
    assert still["coverage_curve"][0] == push[0]["coverage_curve"][0]  # same starts
    # batch size does not change the episodes
    one = evaluate_agent(ConstantAgent((1.0, 0.5)), task, **{**kwargs, "batch": 1})
    assert one["rows"] == push[0]["rows"]


def test_episodes_end_at_success(task, monkeypatch):
    monkeypatch.setattr(evaluate, "make_table", lambda task: SolvedAfterAPush())
    push = ConstantAgent((1.0, 0.0))
    r = evaluate_agent(push, task, "near", steps=10, episodes=2, batch=2, seed=0, near=NEAR)
    assert r["successes"] == 2 and r["success_rate"] == 1.0
    steps = [row["steps"] for row in r["rows"]]
    assert all(2 <= s < 10 for s in steps), steps  # 4 cm per step at most, ended early
    assert r["steps_to_success"]["mean"] == np.mean(steps)
    # ended episodes keep their final value: the curve ends at full coverage
    assert r["coverage_curve"][-1] == 1.0 and r["final_coverage_mean"] == 1.0
    assert len(r["coverage_curve"]) == 11


def test_table_and_plot(tmp_path):
    rows = [
        {"run": "dmo-sapo", "variant": "near", "successes": 9, "episodes": 10,
         "success_rate": 0.9, "steps_to_success": {"mean": 21.25, "median": 20.0}},
        {"run": "ppo", "variant": "near", "successes": 0, "episodes": 10,
         "success_rate": 0.0, "steps_to_success": {"mean": None, "median": None}},
    ]  # fmt: skip
    text = table(rows)
    lines = text.strip().splitlines()
    assert len(lines) == 4 and "success %" in lines[0]
    assert "| dmo-sapo | - | - | near | 9 / 10 | 90.0 | 21.2 / 20 |" in lines[2]
    assert lines[3].endswith("| 0.0 | - |")
    path = tmp_path / "fig" / "success.png"
    curves = [
        {"label": "a", "samples": [0, 100, 200], "minutes": [0, 1, 2], "success": [0, 0.5, 1]},
        {"label": "b", "samples": [0, 100], "minutes": [0, 3], "success": [0, 0.1]},
    ]
    plot_curves(curves, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _args(**kw):
    base = dict(robot="pusht", model=None, episodes=2, variant="near", seed=None, out=None,
                device="cpu", config="pusht.yaml")  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_run_writes_json_and_table(tmp_path, monkeypatch, capsys):
    model = tmp_path / "models" / "run1"
    model.mkdir(parents=True)
    loaded = []

    def load_agent(path, task, device):
        loaded.append((path, task.name, str(device)))
        return ConstantAgent((0.0, 1.0)), {}

    monkeypatch.setitem(
        sys.modules, "dmo_ros.rl.agent", types.SimpleNamespace(load_agent=load_agent)
    )
    assert evaluate.run(_args(model=str(model), seed=5)) == 0
    assert loaded == [(model, "pusht", "cpu")]
    result = json.loads((model / "eval" / "policy_near.json").read_text())
    assert result["run"] == "run1" and result["episodes"] == 2 and result["steps"] == 100
    assert [row["seed"] for row in result["rows"]] == [5, 6]
    md = (model / "eval" / "policy_near.md").read_text()
    assert "| run1 | - | - | near | " in md and md in capsys.readouterr().out
    # --out, the full variant and the config's seed
    evaluate.run(_args(model=str(model), variant="full", episodes=1, out=str(tmp_path / "o")))
    full = json.loads((tmp_path / "o" / "policy_full.json").read_text())
    assert full["steps"] == 300 and full["rows"][0]["seed"] == 1000


def test_run_bad_input(tmp_path):
    with pytest.raises(UserError, match="no near starts.*--variant full"):
        evaluate.run(_args(robot="go2", model=str(tmp_path), config=None))
    with pytest.raises(UserError, match="a task for the flexiv, not the go2"):
        evaluate.run(_args(robot="go2", model=str(tmp_path), variant=None))
    with pytest.raises(UserError, match="unknown robot"):
        evaluate.run(_args(robot="ur5", model=str(tmp_path)))
    with pytest.raises(UserError, match="no such policy run"):
        evaluate.run(_args(model=str(tmp_path / "missing")))
    with pytest.raises(UserError, match="variant"):
        evaluate.run(_args(model=str(tmp_path), variant="far"))


def test_the_default_variant_is_the_tasks_first(tmp_path, monkeypatch):
    """No --variant: near for Push-T (unchanged), full for push cube (its only one)."""
    seen = []
    monkeypatch.setattr(evaluate, "evaluate_agent", lambda *a, **k: seen.append(a[2]) or {})
    monkeypatch.setattr(evaluate, "_write", lambda *a: None)
    monkeypatch.setitem(
        sys.modules,
        "dmo_ros.rl.agent",
        types.SimpleNamespace(load_agent=lambda *a: (ConstantAgent(), {})),
    )
    evaluate.run(_args(model=str(tmp_path), variant=None))
    evaluate.run(_args(robot="go2", model=str(tmp_path), variant=None, config=None))
    assert seen == ["near", "full"]


def test_eval_policy_runs_a_tiny_go2_policy_in_the_push_cube_scene(tmp_path, capsys):
    """`dmo-ros eval policy --robot go2`: one short episode of an untrained policy in the
    MuJoCo scene; success rate and steps to success, no coverage."""
    import yaml
    from test_policy_node import hand_policy

    from dmo_ros import cli
    from dmo_ros.config import config_path, load_yaml

    data = load_yaml(config_path("push_cube.yaml"))
    data["policy"]["variants"]["full"]["steps"] = 4
    data["policy"]["eval"].update(episodes=1, batch=1, seed=7)
    config = tmp_path / "push_cube_short.yaml"
    config.write_text(yaml.safe_dump(data))
    checkpoint = hand_policy(tmp_path / "go2.pt", "go2")
    out = tmp_path / "eval"
    flags = ["--model", str(checkpoint), "--config", str(config), "--device", "cpu"]
    capsys.readouterr()
    assert cli.main(["eval", "policy", "--robot", "go2", *flags, "--out", str(out)]) == 0
    result = json.loads((out / "policy_full.json").read_text())
    assert (result["variant"], result["steps"], result["episodes"]) == ("full", 4, 1)
    row = result["rows"][0]
    assert row["seed"] == 7 and (row["steps"] == 4 or row["success"])
    assert row["final_coverage"] is None and row["max_coverage"] is None
    assert result["coverage_curve"] == [] and result["final_coverage_mean"] is None
    assert 0.0 <= result["success_rate"] <= 1.0
    md = (out / "policy_full.md").read_text()
    assert "| full | " in md and md in capsys.readouterr().out
    # the curves plot copes with a Go2 run's curve.json (success only, coverage None)
    plot_curves(
        [{"label": "go2", "samples": [0, 8], "minutes": [0, 1], "success": [0.0, 1.0]}],
        tmp_path / "curves.png",
    )
    assert (tmp_path / "curves.png").is_file()
