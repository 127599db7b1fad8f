"""`dmo-ros train policy` / `eval policy` (rl/train.py, rl/agent.py) with the simulated robot as
the forward model and its coverage as the reward (tiny preset): the run folder, exact resume,
the agent the checkpoint holds, and bad flags refused in one line."""

import json

import numpy as np
import pytest
import torch

from dmo_ros import cli
from dmo_ros.rl.agent import load_agent
from dmo_ros.task import task_for_robot
from dmo_ros.training.checkpoint import load_checkpoint

SIM = ["train", "policy", "--preset", "tiny", "--forward", "sim", "--reward", "sim"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def train(out, *extra) -> int:
    return cli.main([*SIM, "--out", str(out), *extra])


def test_sim_run_writes_its_folder_and_an_agent_that_acts(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out) == 0
    assert "success in the simulated robot (near)" in capsys.readouterr().out
    for name in ("config.yaml", "checkpoints/last.pt", "checkpoints/replay.pt", "eval/curve.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").iterdir())
    curve = json.loads((out / "eval" / "curve.json").read_text())
    assert [p["epoch"] for p in curve] == [2, 3] and curve[-1]["samples"] == 3 * 2 * 4
    ckpt = load_checkpoint(out, kind="policy", task="pusht")
    assert ckpt["epoch"] == 3 and ckpt["config"]["algo"] == "dmo"

    agent, _ = load_agent(out, task_for_robot("pusht"), torch.device("cpu"))
    frames = torch.randint(0, 256, (2, 5, 64, 64, 3), dtype=torch.uint8)
    runs = []
    for _ in range(2):
        agent.reset(2)
        runs.append(torch.stack([agent.act(frames[:, t]) for t in range(5)]))
    torch.testing.assert_close(runs[0], runs[1])  # deterministic
    assert runs[0].abs().max() <= 1.0 and not torch.equal(runs[0][0], runs[0][-1])

    assert cli.main(["eval", "policy", "--model", str(out), "--episodes", "2"]) == 0
    result = json.loads((out / "eval" / "policy_near.json").read_text())
    assert result["episodes"] == 2 and 0.0 <= result["success_rate"] <= 1.0


def test_ppo_and_dmo_runs_are_compared_on_the_same_episodes(tmp_path, capsys):
    assert train(tmp_path / "ppo", "--algo", "ppo") == 0
    assert train(tmp_path / "dmo") == 0
    ckpt = load_checkpoint(tmp_path / "ppo", kind="policy")
    assert ckpt["config"]["algo"] == "ppo" and ckpt["samples"] == 3 * 2 * 6  # ppo.horizon 6
    capsys.readouterr()
    out = tmp_path / "table"
    models = [str(tmp_path / "dmo"), str(tmp_path / "ppo")]
    args = ["eval", "policy", "--model", *models, "--episodes", "2", "--out", str(out)]
    assert cli.main(args) == 0
    rows = json.loads((out / "policy_near.json").read_text())
    assert [(r["run"], r["algo"]) for r in rows] == [("dmo", "dmo"), ("ppo", "ppo")]
    assert [x["seed"] for x in rows[0]["rows"]] == [x["seed"] for x in rows[1]["rows"]]
    text = (out / "policy_near.md").read_text()
    assert "| dmo | dmo | sim | near |" in text and "--algo ppo" in text
    assert (out / "policy_curves.png").stat().st_size > 1000
    assert (tmp_path / "ppo" / "eval" / "policy_near.json").is_file()


def test_resume_continues_exactly(tmp_path):
    # 12-step episodes of 4-step batches: the checkpoint at epoch 2 is mid-episode
    long = ["--set", "policy.variants.near.steps=12"]
    sets = ["--set", "policy.epochs=4", *long]
    assert train(tmp_path / "straight", *sets) == 0
    assert train(tmp_path / "resumed", "--set", "policy.epochs=2", *long) == 0
    assert train(tmp_path / "resumed", "--resume", *sets) == 0
    a = load_checkpoint(tmp_path / "straight")
    b = load_checkpoint(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == 4
    for part in ("actor", "critics", "rssm"):
        for key, value in a[part].items():
            torch.testing.assert_close(value, b[part][key], rtol=0, atol=0, msg=part + key)
    assert [p["success_rate"] for p in a["curve"]] == [p["success_rate"] for p in b["curve"]]


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--forward", "global", "--world-model", "m", "--reward", "sim"], "--reward sim"),
        (["--forward", "sim", "--algo", "nodiff", "--reward", "sim"], "nodiff"),
        (["--forward", "global", "--reward", "models/r", "--bags", "b"], "--world-model"),
        (["--forward", "sim"], "--reward"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, capsys, flags, words):
    code = cli.main(["train", "policy", "--preset", "tiny", "--out", str(tmp_path), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "checkpoints").exists()


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    assert train(tmp_path / "run") == 0
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    assert train(tmp_path / "run") == 2
    assert "already holds a trained run" in capsys.readouterr().err
    assert np.array_equal(
        np.frombuffer(before, np.uint8),
        np.frombuffer((tmp_path / "run" / "checkpoints" / "last.pt").read_bytes(), np.uint8),
    )


def test_global_forward_runs_dmo_ppo_and_nodiff_from_bag_contexts(tmp_path, capsys):
    """The paper's setting end to end at tiny size: a world model, a reward and an RSSM
    trained on a bag, then each learner inside that world model from the bag's contexts."""
    from play_bags import write_play_bag

    bag = write_play_bag(
        tmp_path / "bag", robot="flexiv", steps=60, intent_on=(5, 30), intent_off=(18, 45)
    )
    tiny = ["--preset", "tiny", "--bags", str(bag), "--device", "cpu"]
    models = {k: tmp_path / k for k in ("wm", "reward", "rssm")}
    assert cli.main(["train", "world-model", *tiny, "--out", str(models["wm"])]) == 0
    assert cli.main(["train", "reward", *tiny, "--out", str(models["reward"])]) == 0
    rssm = ["train", "rssm", *tiny, "--out", str(models["rssm"]), "--reward"]
    assert cli.main([*rssm, str(models["reward"])]) == 0
    given = ["--world-model", str(models["wm"]), "--reward", str(models["reward"])]
    given += ["--rssm", str(models["rssm"])]
    for algo, variant in [("dmo", "near"), ("ppo", "full"), ("nodiff", "near")]:
        out = tmp_path / f"{algo}-{variant}"
        flags = ["--algo", algo, "--variant", variant, "--forward", "global"]
        capsys.readouterr()
        code = cli.main(["train", "policy", *tiny, *flags, *given, "--out", str(out)])
        assert code == 0, capsys.readouterr().err
        ckpt = load_checkpoint(out, kind="policy")
        assert ckpt["config"]["algo"] == algo and ckpt["epoch"] == 3
        assert np.isfinite(ckpt["curve"][-1]["success_rate"])
    # the RSSM fine-tuned on the imagined frames (DMO), not in No-Diffusion
    pretrained = load_checkpoint(models["rssm"])["ema"]["module"]
    tuned = load_checkpoint(tmp_path / "dmo-near")["rssm"]
    kept = load_checkpoint(tmp_path / "nodiff-near")["rssm"]
    key = "encoder.net.0.weight" if "encoder.net.0.weight" in tuned else next(iter(tuned))
    assert not torch.equal(tuned[key], pretrained[key])
    assert all(torch.equal(kept[k], pretrained[k]) for k in pretrained)
