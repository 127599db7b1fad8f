"""A Go2 policy end to end at tiny size (issue #11): a push-cube play bag, the intent reward,
the RSSM and a No-Diffusion policy trained on it through `dmo-ros train`, evaluated in the
Go2 push-cube scene during training, then driven through `dmo-ros deploy --robot go2 --sim`
(driver and policy nodes over DDS on the sim clock). Nothing asserts a wall-clock time."""

import json

import numpy as np
import pytest
import torch
import yaml
from play_bags import write_play_bag

from dmo_ros import cli
from dmo_ros.data.bag_reader import open_bag
from dmo_ros.training.checkpoint import load_checkpoint

CUBE = ["--config", "push_cube.yaml", "--preset", "tiny", "--device", "cpu"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_nodiff_policy_trained_on_push_cube_bags_deploys_on_the_simulated_go2(tmp_path, capsys):
    bag = write_play_bag(tmp_path / "go2", robot="go2", steps=60, intent_on=(5,), intent_off=(30,))
    tiny = [*CUBE, "--bags", str(bag)]
    reward, rssm, run = tmp_path / "reward", tmp_path / "rssm", tmp_path / "policy"
    assert cli.main(["train", "reward", *tiny, "--out", str(reward)]) == 0
    assert cli.main(["train", "rssm", *tiny, "--reward", str(reward), "--out", str(rssm)]) == 0
    policy = ["train", "policy", *tiny, "--algo", "nodiff", "--forward", "global"]
    policy += ["--reward", str(reward), "--rssm", str(rssm)]  # the variant: full, its only one
    capsys.readouterr()
    assert cli.main([*policy, "--out", str(run)]) == 0, capsys.readouterr().err
    assert "success in the simulated robot (full)" in capsys.readouterr().out
    ckpt = load_checkpoint(run, kind="policy", task="push_cube")
    assert ckpt["config"]["algo"] == "nodiff" and ckpt["epoch"] == 3
    assert ckpt["config"]["task"]["robot"] == "go2"
    command = yaml.safe_load((run / "config.yaml").read_text())["command"]
    assert command.startswith("dmo-ros train policy --config push_cube.yaml --preset tiny")
    assert "--variant full" in command
    # evaluated in the Go2 scene (epochs 2 and 3): success rates, no coverage
    curve = json.loads((run / "eval" / "curve.json").read_text())
    assert [p["epoch"] for p in curve] == [2, 3]
    assert all(0.0 <= p["success_rate"] <= 1.0 for p in curve)
    assert all(p["final_coverage_mean"] is None for p in curve)

    # the checkpoint drives the simulated Go2 through the ROS nodes
    record, out = tmp_path / "deployed", tmp_path / "eval"
    deploy = ["deploy", "--robot", "go2", "--sim", "--checkpoint", str(run), "--time-scale", "20"]
    deploy += ["--episodes", "1", "--steps", "4", "--record", str(record), "--out", str(out)]
    capsys.readouterr()
    assert cli.main(deploy) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "episode 1/1 (seed 1000)" in printed
    result = json.loads((out / "deploy_full.json").read_text())
    assert result["robot"] == "go2" and result["episodes"] == 1
    row = result["rows"][0]
    assert row["seed"] == 1000 and (row["steps"] == 4 or row["success"])
    # the policy's commands reached the driver: on cmd_vel, and the base moved with them
    recorded = open_bag(record)
    assert recorded.topics["/cmd_vel"][1] > 0
    odom = recorded.require_topic("odom")
    speeds = [
        np.hypot(m.twist.twist.linear.x, m.twist.twist.linear.y) + abs(m.twist.twist.angular.z)
        for _, _, cdr in recorded.messages([odom])
        for m in [recorded.decode(odom, cdr)]
    ]
    assert max(speeds) > 1e-3


def test_near_is_refused_in_one_line_for_the_go2(tmp_path, capsys):
    flags = ["--algo", "nodiff", "--reward", "r", "--rssm", "s", "--bags", "b", "--variant", "near"]
    code = cli.main(["train", "policy", *CUBE, *flags, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--variant full" in err[0], err
    assert "push_cube" in err[0] and not (tmp_path / "run").exists()
