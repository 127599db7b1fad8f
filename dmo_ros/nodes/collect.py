"""`dmo-ros collect`: record play data with the node classes of collect_play.launch.py composed
in one process (real nodes, real DDS topics, spun on the single-threaded executor of runtime.py).

Nodes: recorder, robot driver (sim or real backend), camera (real Flexiv only), teleop
(keyboard | joy) or auto_play, intent_button, and with --view the viewer (the camera, the
intent label and the keys in a window); parameters from config/<robot>_nodes.yaml, exactly
what the launch file passes. Ends after --duration or on Ctrl-C, closes the bag and
prints a summary read back from the bag.

With --sim every node runs on the simulator's clock (`use_sim_time`; the driver publishes
`/clock`), --duration is in sim seconds, and --time-scale X runs the simulation up to X times
faster than real time; the bag holds sim times (5 Hz steps whatever X). Asking more than the
machine can do is safe: the sim then waits for each step's command (see sim_driver) and the
summary says how fast it ran.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dmo_ros.config import config_path, ros_parameters
from dmo_ros.errors import UserError
from dmo_ros.task import TaskConfig, robot_name, task_for_robot

# robot -> (module, class, node name, real backend, task file)
DRIVERS = {
    "flexiv": ("dmo_ros.nodes.flexiv_driver", "FlexivDriver", "flexiv_driver", "flexiv"),
    "go2": ("dmo_ros.nodes.go2_driver", "Go2Driver", "go2_driver", "unitree"),
}
PARAM_FILES = {"flexiv": "flexiv_nodes.yaml", "go2": "go2_nodes.yaml"}
STARTUP_S = 30.0  # spin at most this long past --duration waiting for the recorder to close
STALL_S = 30.0  # sim: give up when the recorder has written nothing for this long (wall)


def check_args(args: argparse.Namespace) -> tuple[str, TaskConfig, Path]:
    """Validate the flags before anything starts; a mistake is one UserError line."""
    robot = robot_name(args.robot)
    task = task_for_robot(robot)
    if not args.duration > 0:
        raise UserError(f"--duration {args.duration}: must be positive (seconds)")
    if not 0.01 <= args.time_scale <= 100:
        raise UserError(f"--time-scale {args.time_scale:g}: must be in [0.01, 100]")
    if args.time_scale != 1.0 and not args.sim:
        raise UserError("--time-scale needs --sim (a real robot runs in real time)")
    if args.teleop == "auto" and not args.sim:
        raise UserError("--teleop auto needs --sim (auto-play drives from simulator ground truth)")
    if args.teleop == "keyboard" and not sys.stdin.isatty():
        raise UserError("--teleop keyboard needs a terminal on stdin (run it in a terminal)")
    if getattr(args, "view", False):
        from dmo_ros.nodes.window import display_problem

        if (problem := display_problem()) is not None:
            raise UserError(f"--view: {problem}")
    if args.out:
        out = Path(args.out)
    else:
        from dmo_ros.nodes.recorder import default_bag_path

        out = default_bag_path("rosbags", task)
    if out.exists():
        raise UserError(f"{out}: already exists (bags are never overwritten; pick another --out)")
    return robot, task, out


def run(args: argparse.Namespace) -> int:
    """`dmo-ros collect --robot pusht|go2 [--sim] --teleop auto|keyboard|joy --duration s`."""
    robot, task, out = check_args(args)
    params = config_path(args.params or PARAM_FILES[robot])
    module, cls_name, driver_name, real_backend = DRIVERS[robot]
    driver_params = ros_parameters(params, driver_name)

    from dmo_ros.nodes.dds_env import use_local_dds

    domain = use_local_dds()  # before rclpy initialises DDS
    import rclpy

    from dmo_ros.nodes import stop_signals
    from dmo_ros.nodes.intent_button import IntentButtonNode
    from dmo_ros.nodes.recorder import RecorderNode, spin_alone
    from dmo_ros.nodes.runtime import destroy, parameter_overrides, spin

    def overrides(name: str, **values) -> list:
        # A sim run is on the driver's clock, every node of it (timers, stamps, the bag).
        return parameter_overrides(params, name, use_sim_time=bool(args.sim), **values)

    stop_signals.init(None)
    nodes: list = []
    recorder = auto = None
    stop = threading.Event()
    recording = threading.Thread(target=lambda: spin_alone(recorder, stop), daemon=True)
    try:
        # Ctrl-C while the nodes start (a robot that does not answer) stops the start.
        with stop_signals.interruptible():
            size = float(driver_params.get("image_size", task.image_size))
            sim_camera = [size, size, 1.0 / task.control_period]  # the sim camera runs at 5 Hz
            driver_cls = getattr(importlib.import_module(module), cls_name)
            backend = "sim" if args.sim else real_backend
            time_scale = float(args.time_scale) if args.sim else None
            nodes.append(
                driver_cls(
                    parameter_overrides=overrides(
                        driver_name, backend=backend, seed=args.seed, time_scale=time_scale
                    )
                )
            )
            if robot == "flexiv" and not args.sim:
                from dmo_ros.nodes.camera import CameraNode

                nodes.append(CameraNode(parameter_overrides=overrides("camera")))
            nodes.append(IntentButtonNode(parameter_overrides=overrides("intent_button")))
            if getattr(args, "view", False):
                from dmo_ros.nodes.viewer import ViewerNode

                # Spun (and destroyed) on this thread below: HighGUI wants one thread.
                nodes.append(
                    ViewerNode(parameter_overrides=overrides("viewer", teleop=args.teleop))
                )
            if args.teleop == "auto":
                from dmo_ros.nodes.auto_play import AutoPlayNode

                auto = AutoPlayNode(parameter_overrides=overrides("auto_play", seed=args.seed))
                nodes.append(auto)
            else:
                from dmo_ros.nodes.teleop import TeleopNode

                nodes.append(TeleopNode(parameter_overrides=overrides("teleop", input=args.teleop)))
                if args.teleop == "joy":
                    print(
                        "joy: reading sensor_msgs/Joy on 'joy'. pip-only has no joy_node: run one "
                        f"(ros2 run joy joy_node) with ROS_DOMAIN_ID={domain} and "
                        "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, or publish Joy there yourself.",
                        flush=True,
                    )
            # Last, so that a node that fails to start leaves no empty bag behind; first in the
            # list, so that it is destroyed last and closes its bag after the others are gone.
            recorder = RecorderNode(
                parameter_overrides=overrides(
                    "recorder",
                    out=str(out),
                    duration_s=float(args.duration),
                    sim=bool(args.sim),
                    camera_sim=sim_camera,
                )
            )
            nodes.insert(0, recorder)
            speed = f" at {args.time_scale:g}x real time" if args.sim else ""
            print(
                f"recording {args.duration:g} s of {task.name} play data "
                f"({'sim' if args.sim else 'real'} {robot}{speed}, teleop {args.teleop}) to {out}; "
                f"ROS_DOMAIN_ID={domain}; Ctrl-C stops early and keeps the bag",
                flush=True,
            )
        # The recorder spins on an executor of its own, so that no other node's callbacks
        # delay it (see recorder.spin_alone); the others share one (see runtime.py).
        started = time.monotonic()
        recording.start()
        stalled = stall_watch(recorder, STALL_S)
        if args.sim:  # sim time may run slower than asked: wait for it, unless it stops
            spin(nodes[1:], until=lambda: recorder.finished or stalled())
        else:
            spin(nodes[1:], duration=args.duration + STARTUP_S, until=lambda: recorder.finished)
        wall = time.monotonic() - started
    finally:
        # From here until the process ends nothing interrupts: the recorder closes its bag.
        stop_signals.ignore()
        stop.set()
        if recording.is_alive():
            recording.join()
        destroy(nodes)  # the recorder is destroyed last: it closes the bag
        rclpy.try_shutdown()
    print(summary(out, task, auto, wall if args.sim else None), flush=True)
    if recorder.error:
        raise UserError(recorder.error)
    return 0


def stall_watch(recorder, patience: float) -> Callable[[], bool]:
    """A check that turns true once `recorder` has written nothing for `patience` wall seconds
    (the sim clock stopped: its duration would never pass)."""
    last = [-1, time.monotonic()]  # messages written, when that count last changed

    def stalled() -> bool:
        written = sum(recorder.counts.values())
        if written != last[0]:
            last[:] = [written, time.monotonic()]
        return time.monotonic() - last[1] > patience

    return stalled


def summary(out: Path, task: TaskConfig, auto=None, wall: float | None = None) -> str:
    """Bag path, duration, counts and rates per topic, intent ratio (and contact ratio);
    with `wall` (a sim run's wall seconds), how much faster than real time it ran."""
    from dmo_ros.data.bag_reader import open_bag

    bag = open_bag(out)
    seconds = max(1e-9, (bag.end_ns - bag.start_ns) / 1e9)
    lines = [f"bag: {out} ({seconds:.1f} s, {sum(n for _, n in bag.topics.values())} messages)"]
    width = max((len(t) for t in bag.topics), default=0)
    for topic, (msgtype, count) in sorted(bag.topics.items()):
        lines.append(f"  {topic:<{width}}  {count:6d}  {count / seconds:6.1f} Hz  {msgtype}")
    intent = bag.find_topic(task.intent_topic, "std_msgs/msg/Bool")
    if intent is not None:
        stamps, values = [], []
        for _, t_ns, data in bag.messages([intent]):
            stamps.append(t_ns)
            values.append(bool(bag.decode(intent, data).data))
        # Time-weighted: each label holds until the next message (republished at 5 Hz).
        held = np.diff([*stamps, bag.end_ns])
        ratio = float(held[np.array(values)].sum() / max(1, held.sum()))
        lines.append(f"intent on: {ratio:.0%} of the time ({len(values)} intent messages)")
    if auto is not None:
        lines.append(auto.report())
    if wall is not None:
        lines.append(
            f"sim time: {seconds:.1f} s in {wall:.1f} s of wall time "
            f"({seconds / max(wall, 1e-9):.1f}x real time)"
        )
    return "\n".join(lines)
