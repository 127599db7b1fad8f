"""`dmo-ros deploy --sim`: a trained policy's episodes through the nodes of deploy_*.launch.py,
composed in one process (real nodes, real DDS topics, as `dmo-ros collect` does).

Nodes: the simulated robot's driver (it owns the sim clock, `--time-scale` times real time),
the policy node (its camera is the sim driver's), optionally the recorder, and the episode
runner below, which plays the operator: for each episode it enables the policy, waits for its
commands to flow (so that the driver waits for the policy's answer to every frame), resets the
scene, follows the scene's steps on `task/step` until success or the variant's step budget,
and disables the policy. The driver draws the scenes exactly as `dmo-ros eval policy` does:
seed + episode index (its `reset_seed`), the variant's start options. Results are counted by
rl/deploy_episodes.py and written in eval policy's JSON shape to <run>/eval/deploy_<variant>.json.
"""

from __future__ import annotations

import argparse
import enum
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import SetBool, Trigger

from dmo_ros.config import apply_preset, build, config_path, load_yaml
from dmo_ros.errors import UserError
from dmo_ros.nodes.collect import DRIVERS, PARAM_FILES
from dmo_ros.nodes.teleop import action_class
from dmo_ros.rl.deploy_episodes import DeployEpisodes
from dmo_ros.task import TASK_FILES, TaskConfig, robot_name, task_for_robot

WARM_COMMANDS = 2  # commands seen after enabling before the reset: the policy answers frames
STALL_S = 30.0  # wall seconds without progress (no step, no answer) before giving up
POLL_S = 0.05  # wall period of the runner's checks


@dataclass
class Plan:
    """What `dmo-ros deploy` runs, checked before anything starts."""

    robot: str
    task: TaskConfig
    checkpoint: Path
    variant: str
    steps: int
    seed: int
    near: dict | None  # the near starts (None: the task has none)
    out: Path
    record: Path | None


def plan(args: argparse.Namespace) -> Plan:
    """Validate the flags and the checkpoint; a mistake is one UserError line."""
    robot = robot_name(args.robot)
    task = task_for_robot(robot)
    if not args.sim:
        raise UserError("deploy: only --sim runs here (a real robot: deploy_*.launch.py)")
    if not 0.01 <= args.time_scale <= 100:
        raise UserError(f"--time-scale {args.time_scale:g}: must be in [0.01, 100]")
    if args.episodes < 1:
        raise UserError(f"--episodes {args.episodes}: must be >= 1")
    # The variants and the evaluation seed are the robot's own task config's policy section
    # (config/pusht.yaml, config/push_cube.yaml), the ones `dmo-ros eval policy` reads.
    from dmo_ros.rl.config import SECTION, PolicyEvalConfig, Variants

    path = config_path(TASK_FILES[robot])
    section = apply_preset(load_yaml(path), None, str(path)).get(SECTION, {})
    variants = build(Variants, section.get("variants"), str(path), f"{SECTION}.variants.")
    evals = build(PolicyEvalConfig, section.get("eval"), str(path), f"{SECTION}.eval.")
    variant = variants.resolve(args.variant, task.name)
    steps = args.steps or getattr(variants, variant).steps
    if steps < 1:
        raise UserError(f"--steps {steps}: must be >= 1")
    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: no such policy run (train one with 'dmo-ros train policy')")
    _check_checkpoint(checkpoint, task)
    run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if run_dir.name == "checkpoints":
        run_dir = run_dir.parent
    record = Path(args.record) if args.record else None
    if record is not None and record.exists():
        raise UserError(f"{record}: already exists (bags are never overwritten; pick another)")
    return Plan(
        robot=robot,
        task=task,
        checkpoint=checkpoint,
        variant=variant,
        steps=int(steps),
        seed=evals.seed if args.seed is None else int(args.seed),
        near=variants.near_dict(),
        out=Path(args.out) if args.out else run_dir / "eval",
        record=record,
    )


def _check_checkpoint(checkpoint: Path, task: TaskConfig) -> None:
    """Refuse a checkpoint the policy node would refuse, before any node starts."""
    import torch

    from dmo_ros.rl.agent import load_agent

    _, ckpt = load_agent(checkpoint, task, torch.device("cpu"))
    trained_for = ckpt.get("config", {}).get("task", {}).get("robot", task.robot)
    if trained_for != task.robot:
        raise UserError(f"{checkpoint} drives the {trained_for}, not the {task.robot}")


def run(args: argparse.Namespace) -> int:
    """`dmo-ros deploy --robot pusht|go2 --sim --checkpoint models/RUN --episodes N`."""
    p = plan(args)
    params = config_path(PARAM_FILES[p.robot])
    module, cls_name, driver_name, _ = DRIVERS[p.robot]

    from dmo_ros.nodes.dds_env import use_local_dds

    domain = use_local_dds()  # before rclpy initialises DDS
    import importlib

    import rclpy

    from dmo_ros.nodes import stop_signals
    from dmo_ros.nodes.policy import PolicyNode
    from dmo_ros.nodes.recorder import RecorderNode, spin_alone
    from dmo_ros.nodes.runtime import destroy, parameter_overrides, spin

    def overrides(name: str, **values) -> list:
        return parameter_overrides(params, name, use_sim_time=True, **values)

    episodes = DeployEpisodes(p.variant, p.steps, int(args.episodes), p.seed)
    stop_signals.init(None)
    nodes: list = []
    recorder = None
    stop = threading.Event()
    recording = threading.Thread(target=lambda: spin_alone(recorder, stop), daemon=True)
    try:
        with stop_signals.interruptible():
            # The runner and the policy first: they listen before the driver's first scene.
            runner = EpisodeRunner(episodes, p.task)
            nodes.append(runner)
            nodes.append(
                PolicyNode(
                    parameter_overrides=overrides(
                        "policy", checkpoint=str(p.checkpoint), robot=p.robot, enable=False
                    )
                )
            )
            start = {}  # the Go2 scene has one start distribution
            if p.robot == "flexiv":  # near_position 0: gym-pusht's starts (the full variant)
                near = p.near if p.variant == "near" else {"position": 0.0, "angle_deg": 30.0}
                start = {
                    "near_position": float(near["position"]),
                    "near_angle_deg": float(near["angle_deg"]),
                }
            driver_cls = getattr(importlib.import_module(module), cls_name)
            nodes.append(
                driver_cls(
                    parameter_overrides=overrides(
                        driver_name,
                        backend="sim",
                        seed=p.seed,
                        reset_seed=p.seed,
                        time_scale=float(args.time_scale),
                        **start,
                    )
                )
            )
            if p.record is not None:
                size = float(p.task.image_size)
                recorder = RecorderNode(
                    parameter_overrides=overrides(
                        "recorder",
                        out=str(p.record),
                        duration_s=0.0,
                        sim=True,
                        camera_sim=[size, size, 1.0 / p.task.control_period],
                    )
                )
                nodes.insert(0, recorder)
        print(
            f"deploying {p.checkpoint} on the simulated {args.robot}: {args.episodes} episodes of "
            f"at most {p.steps} steps ({p.variant} starts, seeds {p.seed}..."
            f"{p.seed + args.episodes - 1}) at {args.time_scale:g}x real time; "
            f"ROS_DOMAIN_ID={domain}",
            flush=True,
        )
        started = time.monotonic()
        if recorder is not None:
            recording.start()
        spin(nodes[1:] if recorder is not None else nodes, until=lambda: runner.finished)
        wall = time.monotonic() - started
    finally:
        stop_signals.ignore()
        stop.set()
        if recording.is_alive():
            recording.join()
        destroy(nodes)  # the recorder (first) is destroyed last: it closes the bag
        rclpy.try_shutdown()
    if runner.error:
        raise UserError(runner.error)
    if not episodes.done:
        raise UserError(f"deploy: stopped after {len(episodes.rows)} of {args.episodes} episodes")
    result = {
        "run": (p.out.parent if p.out.name == "eval" else p.out).name,
        "model": str(p.checkpoint),
        "robot": p.robot,
        "through": "ros",
        "time_scale": float(args.time_scale),
        **episodes.result(),
    }
    p.out.mkdir(parents=True, exist_ok=True)
    path = p.out / f"deploy_{p.variant}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    sim_s = sum(r["steps"] for r in episodes.rows) * p.task.control_period
    print(
        f"success rate {result['success_rate']:.0%} ({result['successes']} / "
        f"{result['episodes']}); {sim_s:.1f} s of episodes in {wall:.1f} s of wall time",
        flush=True,
    )
    if recorder is not None:
        print(f"recorded to {p.record}", flush=True)
    print(f"-> {path}", flush=True)
    return 0


class Phase(enum.Enum):
    ENABLE = "enable"  # ask the policy to drive
    WARM = "warm"  # wait until its commands answer the frames
    RESET = "reset"  # ask for the episode's scene and wait for it
    RUN = "run"  # follow the scene's steps to the episode's end
    DISABLE = "disable"  # stop the policy before the next episode
    DONE = "done"


def _episode_line(index: int, total: int, start: float | None, row: dict) -> str:
    steps = row["steps"]
    end = f"success at step {steps}" if row["success"] else f"no success in {steps} steps"
    line = f"episode {index}/{total} (seed {row['seed']}): {end}"
    if start is not None:
        line += (
            f"; coverage {start:.3f} at the start, {row['final_coverage']:.3f} at the end "
            f"(max {row['max_coverage']:.3f})"
        )
    return line


class EpisodeRunner(Node):
    """Runs `episodes` through the policy's ~/enable, the driver's reset and task/step."""

    def __init__(self, episodes: DeployEpisodes, task: TaskConfig, **kwargs: Any) -> None:
        super().__init__(
            "deploy",
            parameter_overrides=[Parameter("use_sim_time", value=True)],
            **kwargs,
        )
        self.episodes = episodes
        self.error = ""
        self.phase = Phase.ENABLE
        self._pending = None  # the service call in flight
        self._commands = 0  # policy commands seen since the last enable
        self._start: float | None = None  # coverage at the running episode's start
        self._progress = time.monotonic()
        self._enable = self.create_client(SetBool, "policy/enable")
        self._reset = self.create_client(Trigger, "reset")
        self._request = {True: SetBool.Request(data=True), False: SetBool.Request(data=False)}
        self._trigger = Trigger.Request()
        # Deep: every step of a scene must arrive, even when this node falls behind a while.
        self.create_subscription(DiagnosticArray, "task/step", self._on_step, 1000)
        self.create_subscription(action_class(task), task.action_topic, self._on_command, 10)
        self.create_timer(POLL_S, self._poll, clock=Clock(clock_type=ClockType.STEADY_TIME))

    @property
    def finished(self) -> bool:
        return self.phase is Phase.DONE

    def _fail(self, message: str) -> None:
        self.error, self.phase = message, Phase.DONE

    def _call(self, client, request, then) -> None:
        future = client.call_async(request)
        self._pending = future
        future.add_done_callback(lambda f: self._answered(f, then))

    def _answered(self, future, then) -> None:
        self._pending = None
        response = future.result()
        if not response.success:
            self._fail(f"deploy: {response.message}")
            return
        self._progress = time.monotonic()
        then()

    def _poll(self) -> None:
        if self.phase is Phase.DONE:
            return
        if time.monotonic() - self._progress > STALL_S:
            self._fail(f"deploy: no progress for {STALL_S:g} s in phase {self.phase.value}")
            return
        if self._pending is not None:
            return
        if self.phase is Phase.ENABLE and self._enable.service_is_ready():
            self._commands = 0
            self._call(self._enable, self._request[True], lambda: self._go(Phase.WARM))
        elif self.phase is Phase.WARM and self._commands >= WARM_COMMANDS:
            if self._reset.service_is_ready():
                self._call(self._reset, self._trigger, lambda: None)
                self._go(Phase.RESET)
        elif self.phase is Phase.DISABLE:
            self._call(self._enable, self._request[False], self._next)

    def _go(self, phase: Phase) -> None:
        self.phase = phase

    def _next(self) -> None:
        self._go(Phase.DONE if self.episodes.done else Phase.ENABLE)

    def _on_command(self, _msg) -> None:
        self._commands += 1

    def _on_step(self, msg) -> None:
        if self.phase not in (Phase.RESET, Phase.RUN):
            return
        values = {kv.key: kv.value for kv in msg.status[0].values}
        seed, step = int(values["seed"]), int(values["step"])
        coverage = float(values["coverage"]) if "coverage" in values else None
        try:
            if self.phase is Phase.RESET:
                if step == 0 and seed == self.episodes.next_seed():
                    self.episodes.start(seed, coverage)
                    self._start, self.phase = coverage, Phase.RUN
                    self._progress = time.monotonic()
                return  # the old scene's last steps
            row = self.episodes.step(step, coverage, values["success"] == "True")
        except UserError as exc:
            self._fail(str(exc))
            return
        self._progress = time.monotonic()
        if row is not None:
            n = len(self.episodes.rows)
            print(_episode_line(n, self.episodes.episodes, self._start, row), flush=True)
            self.phase = Phase.DISABLE
