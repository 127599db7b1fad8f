"""`dmo-ros`: the pip-only entry point (and what the trainer nodes call).

Each subcommand's flags are declared here; its work lives in the module named in
`RUNNERS`, imported only when that subcommand runs so `--help` stays instant.
A subcommand whose runner is not built yet says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from dmo_ros.errors import UserError

ROBOTS = ("pusht", "flexiv", "go2")  # pusht and flexiv name the same robot: the Push-T arm
PRESETS = ("tiny", "cpu", "paper")

# (verb, what) -> "module:function(args) -> int | None"; None: not built yet, with the roadmap item.
RUNNERS: dict[tuple[str, str | None], str | None] = {
    ("collect", None): "dmo_ros.nodes.collect:run",
    ("train", "world-model"): "dmo_ros.worldmodels.train:run",
    ("train", "reward"): "dmo_ros.rewards.train:run",
    ("train", "rssm"): "dmo_ros.worldmodels.rssm_train:run",
    ("train", "policy"): "dmo_ros.rl.train:run",
    ("eval", "world-model"): "dmo_ros.worldmodels.evaluate:run",
    ("eval", "reward"): "dmo_ros.rewards.evaluate:run",
    ("eval", "rssm"): "dmo_ros.worldmodels.rssm_evaluate:run",
    ("eval", "policy"): "dmo_ros.rl.evaluate:run",
    ("deploy", None): "dmo_ros.nodes.deploy:run",
    ("replay", None): "dmo_ros.nodes.bag_replay:run",
    ("bag", "info"): "dmo_ros.data.bag_tools:info",
    ("bag", "video"): "dmo_ros.data.bag_tools:video",
    ("bag", "repair"): "dmo_ros.data.bag_tools:repair",
    ("demo", None): "dmo_ros.demo:run",
    ("bench", None): "dmo_ros.bench:run",
}

ROADMAP: dict[tuple[str, str | None], str] = {}


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", default="pusht.yaml", help="task config (default: config/pusht.yaml)"
    )
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="model/training size (default: paper with CUDA, cpu without; printed at the start)",
    )
    p.add_argument("--bags", nargs="+", default=[], metavar="DIR", help="bag folders to train on")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (models/<run>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set world_model.train.steps=500",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmo-ros",
        description=(
            "Train image policies inside learned world models from a robot's play data "
            "(DMO-SAPO), on ROS 2 without a ROS install."
        ),
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "collect",
        help="record play data to a rosbag2 bag",
        description="Run camera, robot driver, teleop, intent button and recorder in one "
        "process (real nodes on DDS) and record play data to a rosbag2 (MCAP) bag.",
    )
    p.add_argument("--robot", choices=ROBOTS, required=True, help="pusht (= flexiv arm) or go2")
    sim = p.add_mutually_exclusive_group()
    sim.add_argument("--sim", dest="sim", action="store_true", default=True, help="simulated robot")
    sim.add_argument("--real", dest="sim", action="store_false", help="the real robot bridge")
    p.add_argument("--teleop", choices=("keyboard", "joy", "auto"), default="auto")
    p.add_argument(
        "--duration", type=float, default=600.0, help="seconds to record (sim: sim seconds)"
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="sim: run X times faster than real time on the simulator's clock (default 1)",
    )
    p.add_argument("--out", metavar="DIR", help="bag folder (default: rosbags/<robot>_<time>)")
    p.add_argument("--params", metavar="YAML", help="ROS parameter file (default: per robot)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene and auto-play")
    p.add_argument(
        "--view",
        action="store_true",
        help="show the live camera (scaled up), the intent state and the keys in a window",
    )

    p = sub.add_parser(
        "train",
        help="train a world model, reward, RSSM or policy",
        description="Fit a model from bags and write models/<run> (config, checkpoints, tb, eval).",
    )
    p.add_argument("what", choices=("world-model", "reward", "rssm", "policy"))
    _add_training_flags(p)
    p.add_argument(
        "--reward",
        metavar="DIR",
        help="rssm, policy: the trained global reward (models/<run>), or 'sim': the "
        "simulator's goal coverage (rssm: as the simulated bags recorded it; policy: with "
        "--forward sim)",
    )
    p.add_argument(
        "--algo", choices=("dmo", "ppo", "nodiff"), default="dmo", help="policy: the learner"
    )
    p.add_argument(
        "--forward",
        choices=("global", "sim"),
        default="global",
        help="policy: the forward model, the diffusion world model or the simulated robot",
    )
    p.add_argument("--world-model", metavar="DIR", help="policy: the global world model run")
    p.add_argument("--rssm", metavar="DIR", help="policy: the pretrained RSSM run")
    p.add_argument(
        "--variant",
        choices=("near", "full"),
        help="policy: the task's start variant (default: its first, near for Push-T: the T "
        "close to its goal; full for push cube, its only one)",
    )

    p = sub.add_parser(
        "eval",
        help="evaluate a trained model",
        description="Evaluate a trained run on held-out bags; JSON and plots go to <model>/eval.",
    )
    p.add_argument("what", choices=("world-model", "reward", "rssm", "policy"))
    p.add_argument(
        "--model",
        required=True,
        nargs="+",
        metavar="DIR",
        help="run folder or checkpoint (policy: several, compared on the same episodes)",
    )
    p.add_argument(
        "--world-model",
        metavar="DIR",
        help="rssm: a global world model to roll out beside it from the same contexts",
    )
    p.add_argument("--bags", nargs="+", default=[], metavar="DIR", help="held-out bag folders")
    p.add_argument("--out", metavar="DIR", help="where to write (default: <model>/eval)")
    p.add_argument(
        "--sampler-steps",
        type=int,
        metavar="N",
        help="world-model: denoising steps per imagined frame (default: the run's own)",
    )
    p.add_argument("--robot", choices=ROBOTS, default="pusht", help="policy: the simulated robot")
    p.add_argument("--episodes", type=int, help="policy: episodes (default: policy.eval.episodes)")
    p.add_argument(
        "--variant",
        choices=("near", "full"),
        help="policy: start variant (default: near for pusht, full for go2)",
    )
    p.add_argument("--seed", type=int, help="policy: seed of the first episode's scene")
    p.add_argument("--config", help="policy: task config (default: the robot's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")

    p = sub.add_parser(
        "deploy",
        help="run a trained policy's episodes through the ROS nodes (simulated robot)",
        description="Run seeded episodes of a trained policy through the driver, camera and "
        "policy nodes over DDS on the sim clock (the starts of 'eval policy'); print each "
        "episode and the success rate, and write eval policy's JSON to "
        "<run>/eval/deploy_<variant>.json. A real robot: deploy_*.launch.py.",
    )
    p.add_argument("--robot", choices=ROBOTS, required=True, help="pusht (= flexiv arm) or go2")
    p.add_argument("--sim", action="store_true", required=True, help="the simulated robot")
    p.add_argument(
        "--checkpoint", required=True, metavar="DIR", help="policy run folder or checkpoint"
    )
    p.add_argument("--episodes", type=int, default=20, help="episodes (default 20)")
    p.add_argument(
        "--variant",
        choices=("near", "full"),
        help="start variant (default: near for pusht, full for go2)",
    )
    p.add_argument("--steps", type=int, help="episode length (default: the variant's)")
    p.add_argument("--seed", type=int, help="seed of the first episode (default: eval's)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="run X times faster than real time on the simulator's clock (default 1)",
    )
    p.add_argument("--record", metavar="DIR", help="also record the run to this bag folder")
    p.add_argument("--out", metavar="DIR", help="where the JSON goes (default: <run>/eval)")

    p = sub.add_parser(
        "replay",
        help="publish a bag on its topics (pip-only `ros2 bag play`)",
        description="Publish a bag back with its original timing, plus the robot path "
        "(nav_msgs/Path) and the intent as a marker, for RViz.",
    )
    p.add_argument("bag", metavar="BAG")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true", help="start over at the end")

    p = sub.add_parser("bag", help="inspect bags", description="Inspect recorded bags.")
    bag = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    q = bag.add_parser("info", help="topics, counts, rates, duration, intent ratio, gaps")
    q.add_argument("bag", metavar="BAG")
    q = bag.add_parser("video", help="the camera stream as a video, intent shown")
    q.add_argument("bag", metavar="BAG")
    q.add_argument("--out", required=True, metavar="FILE.mp4")
    q.add_argument("--topic", default=None, help="image topic (default: the camera topic)")
    q = bag.add_parser(
        "repair",
        help="close the files of an interrupted recording (rosbag2's `ros2 bag reindex`)",
        description="Rewrite each MCAP file a crash or kill -9 left open into a closed one "
        "(summary, footer) and write an exact metadata.yaml, losing no whole message.",
    )
    q.add_argument("bag", metavar="BAG")
    q.add_argument(
        "--out",
        metavar="DIR",
        help="write the repaired bag here (default: in place, with a backup)",
    )

    p = sub.add_parser(
        "demo",
        help="the whole pipeline so far on the simulated robot",
        description="Set up nothing, ask nothing: run what exists of the pipeline on the "
        "embedded simulated robot and print what it did.",
    )
    p.add_argument("--robot", choices=ROBOTS, default="pusht")
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="the run (default: models/demo-<preset>; bags: rosbags/<name>)",
    )
    p.add_argument(
        "--preset", choices=PRESETS, default="cpu", help="tiny: minutes; cpu: about an hour"
    )
    p.add_argument(
        "--duration", type=float, help="simulated seconds of play data (default: per preset)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes and auto-play")
    p.add_argument(
        "--force",
        action="store_true",
        help="start over where a bag or run folder of this preset cannot be reused",
    )

    p = sub.add_parser(
        "bench",
        help="speed and memory measurements (prints and saves figures)",
        description="Run the scripts in bench/ and save their figures in bench/results/.",
    )
    p.add_argument("which", nargs="*", default=[], help="bench names (default: all)")
    return parser


def _resolve(verb: str, what: str | None) -> Callable[[argparse.Namespace], int | None]:
    key = (verb, what) if (verb, what) in RUNNERS else (verb, None)
    target = RUNNERS[key]
    if target is None:
        name = " ".join(x for x in (verb, what) if x)
        raise NotBuilt(f"dmo-ros {name}: not built yet (roadmap: {ROADMAP[key]})")
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


class NotBuilt(Exception):
    pass


def _not_built(argv: Sequence[str]) -> str | None:
    """The not-built message for `argv`'s verb and what, before any of its flags are asked for."""
    words = [a for a in argv if not a.startswith("-")][:2]
    for key in (
        (words[0], words[1]) if len(words) > 1 else None,
        (words[0], None) if words else None,
    ):
        if key is not None and key in RUNNERS and RUNNERS[key] is None:
            name = " ".join(x for x in key if x)
            return f"dmo-ros {name}: not built yet (roadmap: {ROADMAP[key]})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" not in argv and "--help" not in argv and (message := _not_built(argv)):
        print(message, file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb == "eval" and args.what != "policy":
        if len(args.model) != 1:
            parser.error(f"eval {args.what}: --model takes one run")
        args.model = args.model[0]
    try:
        runner = _resolve(args.verb, getattr(args, "what", None))
        code = runner(args)
    except NotBuilt as exc:
        print(exc, file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"dmo-ros {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
