"""`dmo-ros deploy --sim`: episodes through the driver and policy nodes over DDS on the sim
clock, on the starts of `dmo-ros eval policy`; the bookkeeping (rl/deploy_episodes.py) alone.
Nothing asserts a wall-clock time.
"""

import json
import re

import pytest
import torch
from test_policy_node import hand_policy

from dmo_ros import cli
from dmo_ros.data.bag_reader import open_bag
from dmo_ros.errors import UserError
from dmo_ros.rl.agent import load_agent
from dmo_ros.rl.deploy_episodes import DeployEpisodes
from dmo_ros.rl.evaluate import evaluate_agent
from dmo_ros.rl.sim_forward import make_table, reset_options
from dmo_ros.task import task_for_robot

NEAR = {"position": 0.1, "angle_deg": 30.0}  # config/pusht.yaml policy.variants.near
SEED, STEPS = 1000, 4  # policy.eval.seed; short episodes
START = re.compile(r"episode \d+/\d+ \(seed (\d+)\): .*coverage ([0-9.]+) at the start")


def deploy(*args: str) -> list[str]:
    return ["deploy", "--sim", "--time-scale", "20", *args]


def test_pusht_episodes_meet_the_starts_of_eval_policy(pusht_policy, tmp_path, capsys):
    capsys.readouterr()
    flags = ["--checkpoint", str(pusht_policy), "--episodes", "3", "--steps", str(STEPS)]
    assert cli.main(deploy("--robot", "pusht", *flags, "--out", str(tmp_path))) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "deploy_near.json").read_text())

    task = task_for_robot("pusht")
    agent, _ = load_agent(pusht_policy, task, torch.device("cpu"))
    expected = evaluate_agent(agent, task, "near", STEPS, 3, 3, SEED, NEAR)
    assert set(expected) <= set(result)
    assert [set(r) for r in result["rows"]] == [set(r) for r in expected["rows"]]
    assert [r["seed"] for r in result["rows"]] == [SEED, SEED + 1, SEED + 2]
    assert (result["episodes"], result["steps"], result["variant"]) == (3, STEPS, "near")
    assert len(result["coverage_curve"]) == STEPS + 1
    assert result["coverage_curve"][0] == pytest.approx(expected["coverage_curve"][0], abs=1e-12)
    # each episode's start is the scene eval policy draws for its seed
    starts = [(int(s), float(c)) for s, c in START.findall(printed)]
    table = make_table(task)
    for seed, coverage in starts:
        _, truth = table.reset(seed=seed, options=reset_options("near", NEAR))
        assert coverage == pytest.approx(truth["coverage"], abs=1e-3)
    assert [s for s, _ in starts] == [SEED, SEED + 1, SEED + 2]
    for row in result["rows"]:
        assert row["success"] or row["steps"] == STEPS
    assert f"success rate {result['success_rate']:.0%}" in printed


def test_an_untrained_go2_policy_runs_end_to_end_and_is_recorded(tmp_path, capsys):
    checkpoint = hand_policy(tmp_path / "go2.pt", "go2")
    bag = tmp_path / "bag"
    flags = ["--episodes", "2", "--steps", "3", "--seed", "5", "--record", str(bag)]
    out = tmp_path / "eval"
    assert (
        cli.main(
            deploy("--robot", "go2", "--checkpoint", str(checkpoint), *flags, "--out", str(out))
        )
        == 0
    )
    result = json.loads((out / "deploy_full.json").read_text())
    assert [r["seed"] for r in result["rows"]] == [5, 6]
    for row in result["rows"]:
        assert row["steps"] == 3 or row["success"]
        assert row["final_coverage"] is None  # the Go2 scene has no coverage
    assert result["coverage_curve"] == [] and result["variant"] == "full"
    topics = open_bag(bag).topics
    assert topics["/cmd_vel"][1] > 0 and topics["/reset"][1] >= 2


def test_the_plan_reads_the_robots_own_task_config(tmp_path):
    """No --variant, no --steps: Push-T's near starts (100 steps, config/pusht.yaml), the
    Go2's full starts (200 steps, config/push_cube.yaml); near is refused for the Go2."""
    from argparse import Namespace

    from dmo_ros.nodes.deploy import plan

    flags = dict(sim=True, time_scale=1.0, episodes=1, variant=None, steps=None, seed=None)
    flags.update(record=None, out=None)
    go2 = hand_policy(tmp_path / "go2.pt", "go2")
    p = plan(Namespace(robot="go2", checkpoint=str(go2), **flags))
    assert (p.variant, p.steps, p.seed, p.near) == ("full", 200, SEED, None)
    pusht = hand_policy(tmp_path / "pusht.pt", "pusht")
    p = plan(Namespace(robot="pusht", checkpoint=str(pusht), **flags))
    assert (p.variant, p.steps, p.seed, p.near) == ("near", 100, SEED, NEAR)
    with pytest.raises(UserError, match="push_cube task has no near starts"):
        plan(Namespace(robot="go2", checkpoint=str(go2), **{**flags, "variant": "near"}))


@pytest.mark.parametrize("case", ["missing", "other robot"])
def test_bad_input_is_one_line_and_exit_2_before_any_node(case, tmp_path, capsys):
    checkpoint = tmp_path / "none"
    if case == "other robot":
        checkpoint = hand_policy(tmp_path / "go2.pt", "go2")
    code = cli.main(
        deploy("--robot", "pusht", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"))
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # nothing started: no 'deploying' line
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dmo-ros deploy: error: "), lines
    assert ("no such policy run" if case == "missing" else "push_cube") in lines[0]
    assert not (tmp_path / "o").exists()


def test_the_bookkeeping_ends_at_success_and_pads_the_curve():
    episodes = DeployEpisodes("near", steps=3, episodes=2, seed=7)
    episodes.start(7, 0.5)
    assert episodes.step(1, 0.7, False) is None
    row = episodes.step(2, 0.96, True)
    assert row == {
        "seed": 7,
        "success": True,
        "steps": 2,
        "final_coverage": 0.96,
        "max_coverage": 0.96,
    }
    with pytest.raises(UserError):
        episodes.start(9, 0.1)  # seed 8 is due
    episodes.start(8, 0.2)
    with pytest.raises(UserError):
        episodes.step(2, 0.2, False)  # step 1 was lost
    for t in (1, 2, 3):
        row = episodes.step(t, 0.3, False)
    assert row["steps"] == 3 and not row["success"] and episodes.done
    result = episodes.result()
    assert result["coverage_curve"] == pytest.approx([0.35, 0.5, 0.63, 0.63])
    assert (result["successes"], result["success_rate"], result["steps_to_success"]["mean"]) == (
        1,
        0.5,
        2.0,
    )
