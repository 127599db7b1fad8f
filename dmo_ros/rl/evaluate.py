"""Policies in the simulated robot: success rate and steps to success (paper Table I, Fig. 3).

    dmo-ros eval policy --robot pusht --model models/RUN --episodes 50 --variant near
    dmo-ros eval policy --robot go2 --model models/RUN --episodes 20   # push cube: full starts

Episodes run in lockstep batches of Push-T tables (or Go2 push-cube scenes), each seeded by
`seed` + its index, so two policies meet the same starts. An episode ends at success (Push-T:
goal coverage >= 0.95 after a step, gym-pusht's criterion; Go2: the cube inside the goal, the
scene's task/success) or after `steps` control steps. The Go2 scene has no coverage: its
coverage figures are None, as in `dmo-ros deploy`'s.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from dmo_ros.config import apply_preset, build, config_path, load_yaml
from dmo_ros.errors import UserError
from dmo_ros.rl.config import SECTION, PolicyEvalConfig, Variants
from dmo_ros.rl.sim_forward import make_table, reset_options
from dmo_ros.task import TASK_FILES, TaskConfig, robot_name


@runtime_checkable
class Agent(Protocol):
    def reset(self, batch: int) -> None:
        """Start `batch` new episodes (clears any recurrent state)."""
        ...

    def act(self, frames: Tensor) -> Tensor:
        """Frames uint8 [B,H,W,3] -> deterministic actions [B,A] in [-1, 1]."""
        ...


class _Go2Scene:
    """The Go2 push-cube scene stepped as a Push-T table is: (image, coverage, success, ...),
    its coverage NaN (it has none); seeded as the sim driver seeds `dmo-ros deploy`'s."""

    def __init__(self, task: TaskConfig) -> None:
        from dmo_ros.sim import make_sim

        bounds = dict(zip(task.action_names, zip(task.action_low, task.action_high)))
        self.sim = make_sim(
            "go2", image_size=task.image_size, control_period=task.control_period, **bounds
        )

    def reset(self, seed: int, options: dict):
        image, truth = self.sim.reset(seed=seed, options=options or None)
        return image, {**truth, "coverage": np.nan}

    def step(self, action):
        image, _, success, truncated, truth = self.sim.step(action)
        return image, np.nan, success, truncated, truth


def _scene(task: TaskConfig):
    return _Go2Scene(task) if task.robot == "go2" else make_table(task)


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def evaluate_agent(
    agent: Agent,
    task: TaskConfig,
    variant: str,
    steps: int,
    episodes: int,
    batch: int,
    seed: int,
    near: dict | None,
) -> dict:
    """Success, steps to success and coverage of `agent` over `episodes` seeded episodes."""
    if min(steps, episodes, batch) < 1:
        raise UserError(f"eval policy: steps {steps}, episodes {episodes}, batch {batch} < 1")
    options = reset_options(variant, near)
    tables = [_scene(task) for _ in range(min(batch, episodes))]
    curves = np.zeros((episodes, steps + 1))  # coverage after t steps, t = 0: the start
    rows = []
    for first in range(0, episodes, batch):
        n = min(batch, episodes - first)
        scenes = tables[:n]
        images, cover = [], np.zeros(n)
        for i, table in enumerate(scenes):
            image, truth = table.reset(seed=seed + first + i, options=options)
            images.append(image)
            cover[i] = truth["coverage"]
        agent.reset(n)
        curve = np.zeros((n, steps + 1))
        curve[:, 0] = cover
        done = np.zeros(n, dtype=bool)
        ended = np.full(n, steps)
        for t in range(1, steps + 1):
            with torch.no_grad():
                actions = agent.act(torch.from_numpy(np.stack(images)))
            physical = task.denormalize(actions.detach().float().cpu().numpy())
            for i in np.flatnonzero(~done):  # ended episodes keep their last frame and value
                images[i], cover[i], success, *_ = scenes[i].step(physical[i])
                if success:
                    done[i], ended[i] = True, t
            curve[:, t] = cover
            if done.all():
                curve[:, t:] = cover[:, None]
                break
        curves[first : first + n] = curve
        for i in range(n):
            rows.append(
                {
                    "seed": seed + first + i,
                    "success": bool(done[i]),
                    "steps": int(ended[i]),
                    "final_coverage": _value(curve[i, -1]),
                    "max_coverage": _value(curve[i].max()),
                }
            )
    wins = [r["steps"] for r in rows if r["success"]]
    covered = not np.isnan(curves).any()
    return {
        "variant": variant,
        "steps": steps,
        "seed": seed,
        "episodes": episodes,
        "successes": len(wins),
        "success_rate": len(wins) / episodes,
        "steps_to_success": {
            "mean": float(np.mean(wins)) if wins else None,
            "median": float(np.median(wins)) if wins else None,
        },
        "coverage_curve": curves.mean(axis=0).tolist() if covered else [],
        "final_coverage_mean": float(curves[:, -1].mean()) if covered else None,
        "max_coverage_mean": float(curves.max(axis=1).mean()) if covered else None,
        "rows": rows,
    }


def table(rows: list[dict]) -> str:
    """A markdown table like the paper's Table I; rows = `evaluate_agent` results + "run"."""
    lines = [
        "| run | algorithm | forward | variant | successes / episodes | success % "
        "| steps to success (mean / median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["steps_to_success"]
        steps = "-" if s["mean"] is None else f"{s['mean']:.1f} / {s['median']:.0f}"
        lines.append(
            f"| {r.get('run', '-')} | {r.get('algo', '-')} | {r.get('forward', '-')} "
            f"| {r['variant']} | {r['successes']} / {r['episodes']} "
            f"| {100.0 * r['success_rate']:.1f} | {steps} |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(curves: list[dict], path: str | Path) -> None:
    """Fig. 3 style PNG: success rate against world-model samples and against wall-clock
    minutes, one line per run ({"label", "samples", "minutes", "success"})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for c in curves:
        success = 100.0 * np.asarray(c["success"], dtype=float)
        axes[0].plot(c["samples"], success, label=c["label"])
        axes[1].plot(c["minutes"], success, label=c["label"])
    axes[0].set_xlabel("world-model samples")
    axes[1].set_xlabel("wall-clock (minutes)")
    axes[0].set_ylabel("success rate (%)")
    for ax in axes:
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """`dmo-ros eval policy`: evaluate trained policies on the same seeded episodes; each
    run's eval/policy_<variant>.json/.md, and with several runs (or --out) the comparison:
    policy_<variant>.md/.json (Table I) and policy_curves.png (Fig. 3) from their curves."""
    from dmo_ros.rl.agent import load_agent
    from dmo_ros.training.device import pick_device

    robot = robot_name(args.robot)
    models = [Path(m) for m in ([args.model] if isinstance(args.model, str) else args.model)]
    for model in models:
        if not model.exists():
            raise UserError(f"{model}: no such policy run (train one with 'dmo-ros train policy')")
    path = config_path(args.config or TASK_FILES[robot])
    source = str(path)
    data = apply_preset(load_yaml(path), None, source)
    for key in ("task", SECTION):
        if key not in data:
            raise UserError(f"{source}: missing key '{key}'")
    task = build(TaskConfig, data["task"], source, "task.")
    section = data[SECTION]
    variants = build(Variants, section.get("variants"), source, f"{SECTION}.variants.")
    evals = build(PolicyEvalConfig, section.get("eval"), source, f"{SECTION}.eval.")
    if task.robot != robot:
        raise UserError(f"{source}: a task for the {task.robot}, not the {robot}")
    variant = variants.resolve(args.variant, task.name)
    spec = getattr(variants, variant)
    near = variants.near_dict()
    device = pick_device(args.device or "auto")
    results, curves = [], []
    for model in models:
        agent, _ = load_agent(model, task, device)
        result = evaluate_agent(
            agent,
            task,
            variant,
            steps=spec.steps,
            episodes=args.episodes or evals.episodes,
            batch=evals.batch,
            seed=evals.seed if args.seed is None else args.seed,
            near=near,
        )
        run_dir = model if model.is_dir() else model.parent  # a run folder or a checkpoint file
        if run_dir.name == "checkpoints":
            run_dir = run_dir.parent
        trained = _run_info(run_dir)
        name = run_dir.name if model.is_dir() else f"{run_dir.name}/{model.stem}"
        result = {"run": name, "model": str(model), **trained, **result}
        out = run_dir / "eval" if len(models) > 1 or not args.out else Path(args.out)
        _write(out, variant, [result])
        results.append(result)
        curve = run_dir / "eval" / "curve.json"
        if curve.is_file():
            points = json.loads(curve.read_text())
            curves.append(
                {
                    "label": f"{run_dir.name} ({trained.get('algo', '?')})",
                    "samples": [p["samples"] for p in points],
                    "minutes": [p["minutes"] for p in points],
                    "success": [p["success_rate"] for p in points],
                }
            )
    if len(models) > 1 or args.out:
        out = Path(args.out) if args.out else Path("models") / "policy_comparison"
        _write(out, variant, results)
        if curves:
            plot_curves(curves, out / "policy_curves.png")
            print(f"-> {out / 'policy_curves.png'}")
    return 0


def _run_info(run_dir: Path) -> dict:
    """How a run was trained (its config.yaml): algo, forward model, reward, command."""
    file = run_dir / "config.yaml"
    if not file.is_file():
        return {}
    saved = load_yaml(file)
    flags = {**saved.get("data", {}), "command": saved.get("command")}
    return {k: flags[k] for k in ("algo", "forward", "reward", "command") if flags.get(k)}


def _write(out: Path, variant: str, results: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"policy_{variant}.json").write_text(
        json.dumps(results if len(results) > 1 else results[0], indent=2) + "\n"
    )
    text = table(results)
    commands = [f"- {r['run']}: `{r['command']}`" for r in results if r.get("command")]
    if commands:
        text += "\nTrained with:\n" + "\n".join(commands) + "\n"
    (out / f"policy_{variant}.md").write_text(text)
    print(text, end="")
    print(f"-> {out / f'policy_{variant}.json'}")
