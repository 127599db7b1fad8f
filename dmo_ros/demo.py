"""`dmo-ros demo`: the pipeline so far, end to end, on the embedded simulated robot.

Each stage runs the same `dmo-ros` subcommand a user would type, in its own process:
collect play data with the scripted operator (a training bag and a held-out bag),
summarise a bag, train the global world model, evaluate it on the held-out bag.

Each preset has folders of its own (`models/demo-<preset>`, bags in `rosbags/demo-<preset>`),
and what they hold is reused (training resumes), so an interrupted demo continues where it
stopped; but only what this run would make: a bag of this robot, closed cleanly, as long as
asked for, and a run of this preset's model trained on this training bag. Anything else is
refused before any work, in one line, unless `--force` starts it over (discarded, made anew).
Not checked: the seed a bag was recorded with (the bag does not hold it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from dmo_ros.config import apply_preset, build, config_path, load_yaml
from dmo_ros.errors import UserError
from dmo_ros.task import TaskConfig, robot_name

# Simulated seconds of play data per preset: (training bag, held-out bag).
PLAY_SECONDS = {"tiny": (60.0, 30.0), "cpu": (1800.0, 300.0), "paper": (7200.0, 600.0)}
TIME_SCALE = 8.0  # the simulators run this much faster than real time while collecting
SPAN_TOLERANCE_S = 1.0  # a reusable bag spans the asked seconds within this (5 steps)
WM_CONFIG = "pusht.yaml"


def _dmo_ros(*args: str) -> None:
    print(f"$ dmo-ros {' '.join(args)}", flush=True)
    code = subprocess.call([sys.executable, "-m", "dmo_ros.cli", *args])
    if code != 0:
        raise UserError(f"'dmo-ros {' '.join(args)}' failed (exit {code})")


def bag_problem(path: Path, robot: str, seconds: float) -> str | None:
    """Why the bag at `path` is not the one this demo records, or None: it is."""
    from dmo_ros.data.bag_reader import open_bag

    if not (path / "metadata.yaml").is_file():
        return "not a closed bag (no metadata.yaml)"
    try:
        bag = open_bag(path)
    except UserError as exc:
        return f"unreadable: {exc}"
    if bag.recovered:
        return f"an interrupted recording ({bag.recovered[0]})"
    recorded = bag.metadata.get("dmo_ros.robot", "")
    if recorded not in ("pusht", "flexiv", "go2") or robot_name(recorded) != robot:
        return f"recorded with robot '{recorded}', this demo runs '{robot}'"
    if bag.metadata.get("dmo_ros.sim") != "true":
        return "recorded on a real robot"
    span = (bag.end_ns - bag.start_ns) / 1e9
    if abs(span - seconds) > SPAN_TOLERANCE_S:
        return f"{span:.1f} s of play data, this demo records {seconds:g} s"
    return None


def run_problem(model: Path, preset: str, train_bag: Path) -> str | None:
    """Why the run folder `model` cannot be resumed by this demo, or None (nothing to resume
    counts as resumable: training starts there)."""
    if not (model / "checkpoints" / "last.pt").is_file():
        return None
    try:
        saved = load_yaml(model / "config.yaml")
    except UserError:
        return "a checkpoint without a readable config.yaml"
    if saved.get("preset") != preset:
        return f"a run of preset {saved.get('preset')}, this demo trains preset {preset}"
    from dmo_ros.worldmodels.train import WorldModelSection

    expected = apply_preset(load_yaml(config_path(WM_CONFIG)), preset, WM_CONFIG)
    for key, cls in (("task", TaskConfig), ("world_model", WorldModelSection)):
        # compared with defaults filled in: a key added since (at its default) is no change
        try:
            same = asdict(build(cls, saved.get(key), "saved")) == asdict(
                build(cls, expected.get(key), WM_CONFIG)
            )
        except UserError:
            same = False
        if not same:
            return f"its {key} settings are not those of {WM_CONFIG} at preset {preset}"
    bags = (saved.get("data") or {}).get("bags")
    if bags != [str(train_bag)]:
        return f"trained on {bags}, not on {train_bag}"
    return None


def _ours(path: Path) -> bool:
    """Whether `path` is a bag or run folder, or empty (what --force may delete)."""
    marks = ("metadata.yaml", "config.yaml", "checkpoints")
    return any((path / m).exists() for m in marks) or not any(
        p for p in path.iterdir() if p.suffix != ".mcap"
    )


def check_reuse(
    robot: str, preset: str, model: Path, bags: list[tuple[Path, float]], force: bool
) -> None:
    """Refuse (one UserError line) or, with `force`, delete each existing bag of `bags`
    ((path, seconds), the training bag first) and the run folder `model` that this demo
    cannot reuse; all is checked before anything is deleted."""
    problems = [(p, why) for p, s in bags if p.exists() and (why := bag_problem(p, robot, s))]
    if robot == "flexiv":
        train_bag = bags[0][0]
        anew = not train_bag.exists() or any(p == train_bag for p, _ in problems)
        if anew and (model / "checkpoints" / "last.pt").is_file():
            why = "trained on play data that is to be recorded anew"
        else:
            why = run_problem(model, preset, train_bag)
        if why is not None:
            problems.append((model, why))
    if not problems:
        return
    if not force:
        path, why = problems[0]
        raise UserError(f"{path}: cannot be reused ({why}); pass --force to start it over")
    for path, why in problems:
        if not _ours(path):
            raise UserError(f"{path}: {why}, and it is not a bag or run folder: move it away")
    for path, why in problems:
        print(f"starting over: {path} ({why})", flush=True)
        shutil.rmtree(path)


def _collect(robot: str, out: Path, seconds: float, seed: int) -> None:
    if out.exists():  # check_reuse kept it: this demo's bag
        print(f"reusing the bag {out}", flush=True)
        return
    _dmo_ros(
        "collect", "--robot", robot, "--sim", "--teleop", "auto",
        "--duration", f"{seconds:g}", "--time-scale", f"{TIME_SCALE:g}",
        "--seed", str(seed), "--out", str(out),
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    robot = robot_name(args.robot)
    model = Path(args.out) if args.out else Path("models") / f"demo-{args.preset}"
    train_s, held_s = PLAY_SECONDS[args.preset]
    if args.duration is not None:
        train_s, held_s = args.duration, max(args.duration / 4, 10.0)
    bags = Path("rosbags") / model.name
    train_bag, held_bag = bags / "play_train", bags / "play_heldout"
    started = time.monotonic()
    check_reuse(robot, args.preset, model, [(train_bag, train_s), (held_bag, held_s)], args.force)

    print(f"[1/4] play data: {train_s:g} s + {held_s:g} s held out, simulated {robot}", flush=True)
    _collect(args.robot, train_bag, train_s, seed=args.seed)
    _collect(args.robot, held_bag, held_s, seed=args.seed + 1000)

    print("[2/4] the training bag", flush=True)
    _dmo_ros("bag", "info", str(train_bag))

    if robot != "flexiv":
        print("The Push Cube world model is not built yet (roadmap: Global world model for "
              f"Push Cube); play data is in {bags}.")  # fmt: skip
        return 0

    print(f"[3/4] global world model, preset {args.preset}", flush=True)
    resume = ["--resume"] if (model / "checkpoints" / "last.pt").is_file() else []
    _dmo_ros(
        "train", "world-model", "--config", "pusht.yaml", "--preset", args.preset,
        "--bags", str(train_bag), "--out", str(model), *resume,
    )  # fmt: skip

    print("[4/4] open-loop evaluation on the held-out bag", flush=True)
    _dmo_ros("eval", "world-model", "--model", str(model), "--bags", str(held_bag))

    results = json.loads((model / "eval" / "world_model.json").read_text())
    summary, response = results["summary"], results["action_response"]
    k = min(20, results["horizon"])
    minutes = (time.monotonic() - started) / 60
    print(
        f"\ndemo done in {minutes:.1f} min: {train_s:g} s of simulated play data -> "
        f"world model ({args.preset}) -> PSNR over steps 1-{k} "
        f"{summary[f'psnr_1_{k}']:.2f} dB vs repeat-last "
        f"{summary[f'baseline_psnr_1_{k}']:.2f} dB; action response "
        f"{response['sign_agreement']:.0%} ({'pass' if response['passed'] else 'fail'}).\n"
        f"Figures: {model / 'eval'}; TensorBoard: {model / 'tb'}; bags: {bags}"
    )
    return 0
