"""`dmo-ros demo`: end to end on the simulated Push-T table at the tiny preset, and what it
reuses of an earlier run, refuses, or starts over with --force (decided without training)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from play_bags import write_play_bag

from dmo_ros.config import apply_preset, config_path, load_yaml
from dmo_ros.data.bag_reader import open_bag
from dmo_ros.demo import bag_problem, check_reuse, run_problem
from dmo_ros.errors import UserError

SIM = {"dmo_ros.robot": "flexiv", "dmo_ros.task": "pusht", "dmo_ros.sim": "true"}


def demo(cwd, preset: str = "tiny") -> subprocess.CompletedProcess:
    args = ["demo", "--preset", preset, "--duration", "20", "--out", "models/demo-tiny"]
    return subprocess.run(
        [sys.executable, "-m", "dmo_ros.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_demo_runs_the_pipeline_and_says_what_it_did(tmp_path):
    out = demo(tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    for stage in ("[1/4] play data", "[2/4]", "[3/4] global world model", "[4/4]"):
        assert stage in out.stdout
    assert "demo done" in out.stdout
    bag = tmp_path / "rosbags" / "demo-tiny" / "play_train"
    assert bag_problem(bag, "flexiv", 20.0) is None  # what the next run checks before reuse
    results = json.loads((tmp_path / "models/demo-tiny/eval/world_model.json").read_text())
    summary = results["summary"]  # what it says it did is what it measured
    said = f"PSNR over steps 1-20 {summary['psnr_1_20']:.2f} dB vs repeat-last "
    assert said + f"{summary['baseline_psnr_1_20']:.2f} dB" in out.stdout

    # A second run reuses the bags and resumes the finished run instead of refusing it.
    again = demo(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "reusing the bag" in again.stdout and "starting over" not in again.stdout

    # Another preset in the same folders: refused before any stage, in one line, all kept.
    other = demo(tmp_path, preset="cpu")
    assert other.returncode == 2
    err = other.stderr.strip().splitlines()
    assert len(err) == 1 and "models/demo-tiny: cannot be reused (a run of preset tiny" in err[0]
    assert err[0].endswith("pass --force to start it over") and "[1/4]" not in other.stdout
    assert (tmp_path / "models/demo-tiny/checkpoints/last.pt").is_file()


def sim_bag(path: Path, steps: int = 40, **kwargs) -> Path:
    kwargs.setdefault("metadata", SIM)
    return write_play_bag(path, steps=steps, **kwargs)


def span_s(bag: Path) -> float:
    b = open_bag(bag)
    return (b.end_ns - b.start_ns) / 1e9


def run_folder(path: Path, preset: str, train_bag: Path) -> Path:
    """A run folder as `dmo-ros train world-model` leaves it (the checkpoint's bytes aside)."""
    config = apply_preset(load_yaml(config_path("pusht.yaml")), preset)
    saved = {"preset": preset, "task": config["task"], "world_model": config["world_model"]}
    saved["data"] = {"bags": [str(train_bag)], "val_fraction": 0.2, "seed": 0}
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "last.pt").write_bytes(b"weights")
    (path / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    return path


def test_which_bags_can_be_reused(tmp_path):
    good = sim_bag(tmp_path / "good")
    asked = span_s(good)
    assert bag_problem(good, "flexiv", asked) is None
    assert bag_problem(good, "flexiv", asked + 0.9) is None  # within five steps
    assert "this demo records" in bag_problem(good, "flexiv", asked + 2.0)  # another --duration
    short = sim_bag(tmp_path / "short", steps=20)  # stopped half-way (Ctrl-C keeps the bag)
    assert bag_problem(short, "flexiv", asked).startswith(f"{span_s(short):.1f} s of play data")
    go2 = sim_bag(tmp_path / "go2", robot="go2", metadata={**SIM, "dmo_ros.robot": "go2"})
    assert bag_problem(go2, "flexiv", asked) == "recorded with robot 'go2', this demo runs 'flexiv'"
    real = sim_bag(tmp_path / "real", metadata={**SIM, "dmo_ros.sim": "false"})
    assert bag_problem(real, "flexiv", asked) == "recorded on a real robot"

    # kill -9 mid-recording: the last chunk cut short, metadata.yaml from a second before
    killed = shutil.copytree(good, tmp_path / "killed")
    (mcap,) = killed.glob("*.mcap")
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    assert bag_problem(killed, "flexiv", asked) is not None
    (killed / "metadata.yaml").unlink()
    assert bag_problem(killed, "flexiv", asked) == "not a closed bag (no metadata.yaml)"


def test_a_run_is_resumed_only_by_the_demo_that_made_it(tmp_path):
    train = sim_bag(tmp_path / "bags" / "play_train")
    model = run_folder(tmp_path / "run", "tiny", train)
    assert run_problem(model, "tiny", train) is None
    assert run_problem(model, "cpu", train) == "a run of preset tiny, this demo trains preset cpu"
    assert "trained on" in run_problem(model, "tiny", tmp_path / "other")
    saved = yaml.safe_load((model / "config.yaml").read_text())
    del saved["world_model"]["unet"]["mid_attention"]  # a run from before the key, at its default
    (model / "config.yaml").write_text(yaml.safe_dump(saved))
    assert run_problem(model, "tiny", train) is None
    saved["world_model"]["context"] += 1  # another model than this preset's
    (model / "config.yaml").write_text(yaml.safe_dump(saved))
    assert "world_model settings" in run_problem(model, "tiny", train)
    assert run_problem(tmp_path / "fresh", "tiny", train) is None  # nothing to resume


def test_force_starts_over_what_cannot_be_reused_and_only_that(tmp_path, capsys):
    bags = tmp_path / "rosbags" / "demo-tiny"
    train, held = sim_bag(bags / "play_train"), sim_bag(bags / "play_heldout", steps=20)
    plan = [(train, span_s(train)), (held, span_s(held))]
    model = run_folder(tmp_path / "models" / "demo-tiny", "tiny", train)
    check_reuse("flexiv", "tiny", model, plan, force=False)  # all reusable: nothing to say
    assert capsys.readouterr().out == ""

    # `make demo PRESET=tiny` then `make demo` in the same folders: the run is of another model.
    with pytest.raises(UserError) as refused:
        check_reuse("flexiv", "cpu", model, plan, force=False)
    assert str(refused.value) == (
        f"{model}: cannot be reused (a run of preset tiny, this demo trains preset cpu); "
        "pass --force to start it over"
    )
    assert (model / "checkpoints" / "last.pt").is_file()
    check_reuse("flexiv", "cpu", model, plan, force=True)
    assert not model.exists() and train.is_dir() and held.is_dir()  # the bags still fit
    assert "starting over: " in capsys.readouterr().out

    # A held-out bag cut short: only it goes; the run did not train on it.
    model = run_folder(model, "tiny", train)
    longer = [(train, plan[0][1]), (held, plan[1][1] + 5.0)]
    with pytest.raises(UserError, match="play_heldout: cannot be reused .* pass --force"):
        check_reuse("flexiv", "tiny", model, longer, force=False)
    check_reuse("flexiv", "tiny", model, longer, force=True)
    assert not held.exists() and train.is_dir() and model.is_dir()

    # A training bag of another robot: it and the run trained on it go.
    shutil.rmtree(train)
    sim_bag(train, robot="go2", metadata={**SIM, "dmo_ros.robot": "go2"})
    check_reuse("flexiv", "tiny", model, plan, force=True)
    assert not train.exists() and not model.exists()

    # No bag left, an old run in the folder: it trained on data that is recorded anew.
    model = run_folder(model, "tiny", train)
    with pytest.raises(UserError, match="trained on play data that is to be recorded anew"):
        check_reuse("flexiv", "tiny", model, plan, force=False)

    # What is not a bag or run folder is never deleted, even with --force.
    shutil.rmtree(model)
    train.mkdir(parents=True)
    (train / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a bag or run folder: move it away"):
        check_reuse("flexiv", "tiny", model, plan, force=True)
    assert (train / "notes.txt").read_text() == "mine"
