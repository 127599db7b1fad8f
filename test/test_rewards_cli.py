"""`dmo-ros train reward` / `eval reward` on real (small, written) bags; exact resume; refusals."""

import json

import pytest
import torch
import yaml
from play_bags import write_play_bag
from test_rewards import progress_sequences, separable_sequences, tiny

from dmo_ros import cli
from dmo_ros.rewards import intent
from dmo_ros.rewards.ranking import RankingSamples
from dmo_ros.rewards.train import fit, task_spans
from dmo_ros.training.checkpoint import load_checkpoint


def dmo_ros(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def bags(tmp_path):
    """Push-T and Go2 play bags with two intent spans and a milestone each."""
    labels = {"intent_on": (5, 30), "intent_off": (18, 45), "milestones": (17,)}
    return {
        robot: write_play_bag(tmp_path / robot, robot=robot, steps=60, **labels)
        for robot in ("flexiv", "go2")
    }


@pytest.mark.parametrize(
    ("config", "robot", "kind"),
    [("pusht.yaml", "flexiv", "ranking"), ("push_cube.yaml", "go2", "intent")],
)
def test_train_and_eval_round_trip(tmp_path, capsys, bags, config, robot, kind):
    run = tmp_path / "run"
    code, out, err = dmo_ros(
        capsys,
        "train",
        "reward",
        "--config",
        config,
        "--preset",
        "tiny",
        "--bags",
        str(bags[robot]),
        "--out",
        str(run),
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert f"{kind} reward: preset tiny (--preset)" in out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["preset"] == "tiny" and saved["reward"]["kind"] == kind
    assert saved["data"]["bags"] == [str(bags[robot])]
    ckpt = load_checkpoint(run)
    assert ckpt["kind"] == f"reward/{kind}" and ckpt["step"] == 30
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "last.pt",
        "step_10.pt",
        "step_20.pt",
        "step_30.pt",
    ]
    assert list((run / "tb").iterdir())
    code, out, err = dmo_ros(
        capsys,
        "eval",
        "reward",
        "--model",
        str(run),
        "--bags",
        str(bags[robot]),
        "--device",
        "cpu",
    )
    assert code == 0, err
    results = json.loads((run / "eval" / "reward.json").read_text())
    assert (run / "eval" / "reward.png").stat().st_size > 0
    assert results["kind"] == kind
    if kind == "ranking":
        assert 0.0 <= results["own_goal"]["accuracy"] <= 1.0
        assert results["task_segments"] == 2
        assert "pair accuracy" in out
    else:
        assert 0.0 <= results["auc_intent"] <= 1.0 and results["milestones"] == 1
        assert "intent reward: AUC" in out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, bags):
    unlabelled = write_play_bag(tmp_path / "no_intent", robot="go2", steps=20)
    cases = [
        (["--config", "push_cube.yaml", "--bags", str(unlabelled)], "no intent labels"),
        (
            ["--bags", str(bags["flexiv"]), "--set", f"reward.ranking.goal_image={tmp_path}/x.png"],
            "x.png: no such image",
        ),
        (["--config", "push_cube.yaml", "--bags", str(bags["flexiv"])], "recorded with robot"),
    ]
    for args, words in cases:
        code, _, err = dmo_ros(
            capsys,
            "train",
            "reward",
            "--preset",
            "tiny",
            "--out",
            str(tmp_path / "r"),
            "--device",
            "cpu",
            *args,
        )
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        assert words in err, err
    code, _, err = dmo_ros(capsys, "eval", "reward", "--model", str(tmp_path / "none"))
    assert code == 2 and "no such model folder" in err


def test_eval_refuses_a_world_model_checkpoint(tmp_path, capsys):
    from dmo_ros.training.checkpoint import save_checkpoint

    save_checkpoint(
        tmp_path / "wm" / "checkpoints" / "last.pt",
        {"kind": "world_model/diamond", "task": "pusht", "model_config": {}},
    )
    code, _, err = dmo_ros(capsys, "eval", "reward", "--model", str(tmp_path / "wm"))
    assert code == 2 and "holds a 'world_model/diamond', not a reward model" in err


def same_weights(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for key in ("model", "ema"):
        sa = a[key] if key == "model" else a[key]["module"]
        sb = b[key] if key == "model" else b[key]["module"]
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), (key, name)
    assert torch.equal(a["optimizer"]["state"][0]["exp_avg"], b["optimizer"]["state"][0]["exp_avg"])


def test_resume_continues_exactly(tmp_path, bf16):
    seqs = progress_sequences(1, 4)
    runs = {
        "ranking": (
            lambda *s: tiny("reward.train.bf16=" + bf16, *s),
            lambda r: RankingSamples(seqs, task_spans(seqs), r.section.ranking.pairs, 0),
        ),
        "intent": (
            lambda *s: tiny("reward.train.bf16=" + bf16, *s, config="push_cube.yaml"),
            lambda r: intent.IntentFrames(separable_sequences(0, 60)),
        ),
    }
    for kind, (resolve, data) in runs.items():
        six, three = resolve("reward.train.steps=6"), resolve("reward.train.steps=3")
        fit(six, data(six), None, tmp_path / kind / "straight", device="cpu")
        fit(three, data(three), None, tmp_path / kind / "resumed", device="cpu")
        fit(six, data(six), None, tmp_path / kind / "resumed", resume=True, device="cpu")
        a = load_checkpoint(tmp_path / kind / "straight")
        b = load_checkpoint(tmp_path / kind / "resumed")
        same_weights(a, b)
        if kind == "ranking":  # the normalisation is of the final weights
            assert int(a["ema"]["module"]["norm_frames"]) > 0
