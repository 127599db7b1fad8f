"""`dmo-ros train policy`: the run around DMO-SAPO's epochs (rl/dmo_sapo.py).

The models it is given (`--world-model`, `--reward`, `--rssm`, or the simulated robot with
`--forward sim` / `--reward sim`), the run folder, TensorBoard and the progress bar, the
learning curve (evaluations in the simulated robot against world-model samples and minutes),
checkpoints and exact resume (the replay buffer is kept beside the last checkpoint).

Without `--rssm` the RSSM starts untrained (its preset's size) and learns only from the
imagined episodes: enough with the simulator as forward model, not with a world model.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from dmo_ros.config import build, load_yaml
from dmo_ros.errors import UserError
from dmo_ros.rl.config import SECTION, PolicySection
from dmo_ros.rl.dmo_sapo import (
    ALGOS,
    KIND,
    SIM_CONTEXT,
    BagStarts,
    Learner,
    SimStarts,
    near_starts,
)
from dmo_ros.task import TaskConfig
from dmo_ros.training.checkpoint import load_checkpoint, save_checkpoint
from dmo_ros.training.device import pick_device, resolve_preset
from dmo_ros.training.logger import RunLogger
from dmo_ros.training.run_folder import load_sections


@dataclass
class Setup:
    task: TaskConfig
    section: PolicySection
    data: dict[str, Any]  # the resolved config, as written to <out>/config.yaml
    source: str


def resolve_config(config, preset: str, sets) -> Setup:
    data, source = load_sections(config, preset, sets, ("task", SECTION, "rssm"))
    task = build(TaskConfig, data["task"], source, "task.")
    section = build(PolicySection, data[SECTION], source, f"{SECTION}.")
    if section.horizon < 1 or section.batch < 1 or section.epochs < 1:
        raise UserError(f"{source}: {SECTION}.horizon, batch and epochs must be >= 1")
    if section.rssm.window > section.horizon + 1:
        raise UserError(
            f"{source}: {SECTION}.rssm.window {section.rssm.window} is longer than an imagined "
            f"episode ({section.horizon} + 1 frames)"
        )
    return Setup(task, section, data, source)


def _check_flags(args: argparse.Namespace) -> None:
    if args.algo not in ALGOS:
        raise UserError(f"--algo: unknown '{args.algo}' (expected one of: {', '.join(ALGOS)})")
    if args.forward == "global" and not args.world_model and args.algo != "nodiff":
        raise UserError("--forward global needs --world-model models/<run>")
    if args.reward == "sim" and args.forward != "sim":
        raise UserError("--reward sim is the simulator's coverage: it needs --forward sim")
    if not args.reward:
        raise UserError("--reward: a trained reward run (models/<run>), or sim with --forward sim")
    if args.forward == "global" and not args.bags:
        raise UserError("--forward global starts from real frames: give --bags")
    if args.algo == "nodiff" and args.reward == "sim":
        raise UserError("--algo nodiff imagines in the RSSM: the simulator cannot reward it")
    if args.algo == "nodiff" and not args.rssm:
        raise UserError("--algo nodiff imagines in the RSSM: give a trained --rssm")


def _rssm(args, setup: Setup, preset: str, device):
    from dmo_ros.worldmodels.rssm import RSSM
    from dmo_ros.worldmodels.rssm_train import load_rssm
    from dmo_ros.worldmodels.rssm_train import resolve_config as rssm_config

    if args.rssm:
        rssm, _ = load_rssm(args.rssm, setup.task, device)
        return rssm.train()
    torch.manual_seed(setup.section.seed)
    return RSSM(rssm_config(args.config, preset, getattr(args, "set", [])).model).to(device)


def _world(args, setup: Setup, device):
    """(forward model, starts, reward) for the flags."""
    cfg, task = setup.section, setup.task
    near = cfg.variants.near_dict()
    reward = None
    if args.reward != "sim":
        from dmo_ros.rewards.interface import load_reward

        reward = load_reward(args.reward, task).to(device)
    if args.forward == "sim":
        from dmo_ros.rl.sim_forward import SimForward

        forward = SimForward(task, cfg.batch, args.variant, near, cfg.seed, SIM_CONTEXT, device)
        steps = getattr(cfg.variants, args.variant).steps  # episodes go on up to this length
        return forward, SimStarts(forward, steps), reward or forward
    from dmo_ros.data.play_data import load_play_data

    forward, context = None, SIM_CONTEXT
    if args.world_model:
        from dmo_ros.worldmodels.evaluate import load_model

        forward, _, _ = load_model(args.world_model, device)
        context = forward.cfg.context
    sequences = load_play_data(args.bags, task)
    if args.variant == "near":
        starts = near_starts(sequences, context, reward, cfg.start_quantile, device)
    else:
        starts = BagStarts(sequences, context)
    return forward, starts, reward


def _evaluate(learner: Learner, setup: Setup, variant: str) -> dict:
    from dmo_ros.rl.agent import Agent
    from dmo_ros.rl.evaluate import evaluate_agent

    cfg = setup.section
    v = getattr(cfg.variants, variant)
    agent = Agent(learner.rssm, learner.actor)
    try:
        return evaluate_agent(
            agent, setup.task, variant, v.steps, cfg.eval.episodes, cfg.eval.batch,
            cfg.eval.seed, cfg.variants.near_dict(),
        )  # fmt: skip
    finally:
        learner.rssm.train()
        learner.actor.train()


def run(args: argparse.Namespace) -> int:
    _check_flags(args)
    out = Path(args.out)
    last_file = out / "checkpoints" / "last.pt"
    previous = load_yaml(out / "config.yaml") if (out / "config.yaml").is_file() else {}
    if not args.resume and last_file.exists():
        raise UserError(f"{out}: already holds a trained run (pass --resume, or another --out)")
    if args.resume and not last_file.exists():
        raise UserError(f"{out}: nothing to resume (no checkpoints/last.pt)")
    if args.resume and not args.preset and previous.get("preset"):
        preset, why = previous["preset"], f"as recorded in {out / 'config.yaml'}"
    else:
        preset, why = resolve_preset(args.preset, args.device)
    print(f"policy: preset {preset} ({why}), algo {args.algo}, forward {args.forward}")
    setup = resolve_config(args.config, preset, getattr(args, "set", []))
    cfg = setup.section
    args.variant = cfg.variants.resolve(args.variant, setup.task.name)  # and so recorded
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = pick_device(args.device)
    rssm = _rssm(args, setup, preset, device)
    forward, starts, reward = _world(args, setup, device)
    if args.algo == "ppo":
        from dmo_ros.rl.ppo import PPOLearner

        learner = PPOLearner(cfg, rssm, device)
    else:
        learner = Learner(cfg, rssm, args.algo, device)
    flags = {
        k: getattr(args, k)
        for k in ("algo", "forward", "world_model", "reward", "rssm", "variant", "bags")
    }
    data = {"preset": preset, **{k: setup.data[k] for k in ("task", SECTION)}, "data": flags}
    data["command"] = _command(args, preset)
    if args.resume:
        from dmo_ros.training.checkpoint import config_mismatch

        diff = config_mismatch(previous.get("data"), flags)
        if diff:
            raise UserError(f"{out}: --resume with other models or flags ({diff})")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    epoch, samples, minutes, curve = 0, 0, 0.0, []
    if args.resume:
        epoch, samples, minutes, curve = _restore(last_file, learner, starts, setup)
    logger = RunLogger(out, cfg.epochs, epoch, desc="policy")
    started = time.monotonic() - minutes * 60
    per_epoch = cfg.batch * learner.horizon
    try:
        while epoch < cfg.epochs:
            logs = learner.epoch(forward, reward, starts)
            epoch, samples = epoch + 1, samples + per_epoch
            minutes = (time.monotonic() - started) / 60
            logger.step()
            if epoch % cfg.log_every == 0 or epoch == cfg.epochs:
                logs["train/samples_per_s"] = logger.rate(per_epoch * cfg.log_every)
                logger.scalars(samples, logs)
            if epoch % cfg.eval.every == 0 or epoch == cfg.epochs:
                result = _evaluate(learner, setup, args.variant)
                point = {"epoch": epoch, "samples": samples, "minutes": minutes}
                coverage = {k: result[k] for k in ("final_coverage_mean", "max_coverage_mean")}
                curve.append({**point, "success_rate": result["success_rate"], **coverage})
                logger.scalars(samples, {"eval/success_rate": result["success_rate"]})
                (out / "eval").mkdir(exist_ok=True)
                (out / "eval" / "curve.json").write_text(json.dumps(curve, indent=1))
            if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
                _save(out, learner, starts, setup, args.algo, epoch, samples, minutes, curve)
    finally:
        logger.close()
    final = curve[-1]["success_rate"] if curve else float("nan")
    print(
        f"policy: {epoch} epochs, {samples} world-model samples in {minutes:.1f} min -> "
        f"{last_file}; success in the simulated robot ({args.variant}) {final:.0%}"
    )
    return 0


def _command(args: argparse.Namespace, preset: str) -> str:
    """The command that trains this run (for the comparison table)."""
    words = ["dmo-ros", "train", "policy", "--preset", preset, "--algo", args.algo]
    if args.config != "pusht.yaml":  # the CLI's default task
        words[3:3] = ["--config", str(args.config)]
    words += ["--forward", args.forward, "--reward", args.reward, "--variant", args.variant]
    for flag in ("world_model", "rssm"):
        if getattr(args, flag):
            words += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    if args.bags:
        words += ["--bags", *args.bags]
    words += [w for s in getattr(args, "set", []) for w in ("--set", shlex.quote(s))]
    return " ".join([*words, "--out", args.out])


def _save(out, learner, starts, setup, algo, epoch, samples, minutes, curve) -> None:
    payload = {
        "kind": KIND,
        "task": setup.task.name,
        "model_config": learner.model_config(),
        "config": {"task": setup.data["task"], SECTION: setup.data[SECTION], "algo": algo},
        **learner.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "epoch": epoch,
        "samples": samples,
        "minutes": minutes,
        "curve": curve,
    }
    if hasattr(starts, "state_dict"):  # the simulator's scenes, mid-episode
        payload["sim_starts"] = starts.state_dict()
    ckpt = out / "checkpoints"
    save_checkpoint(ckpt / f"step_{epoch}.pt", payload)
    save_checkpoint(ckpt / "last.pt", payload)
    # The replay buffer, for an exact resume: beside the last checkpoint, not in each one.
    tmp = ckpt / ".replay.pt.tmp"
    torch.save({"episodes": learner.replay.episodes, "steps": learner.replay.steps}, tmp)
    tmp.replace(ckpt / "replay.pt")


def _restore(file: Path, learner: Learner, starts, setup: Setup):
    ckpt = load_checkpoint(file, kind=KIND, task=setup.task.name)
    try:
        learner.load_state_dict(ckpt)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise UserError(f"{file}: checkpoint does not fit this run ({str(exc)[:120]})") from None
    torch.set_rng_state(ckpt["torch_rng"])
    if "sim_starts" in ckpt and hasattr(starts, "load_state_dict"):
        starts.load_state_dict(ckpt["sim_starts"])
    replay = file.parent / "replay.pt"
    if replay.is_file():
        saved = torch.load(replay, weights_only=True)
        learner.replay.episodes, learner.replay.steps = saved["episodes"], saved["steps"]
    return ckpt["epoch"], ckpt["samples"], ckpt["minutes"], list(ckpt["curve"])
