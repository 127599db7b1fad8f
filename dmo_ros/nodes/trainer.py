"""`trainer` node: runs the same training code as `dmo-ros train <what>` and publishes its
progress as diagnostic_msgs/DiagnosticArray on `trainer/status` (for rqt / `ros2 topic echo`).

Parameters: what, config, preset (auto: as `dmo-ros train` without --preset), bags (space- or
comma-separated folders), out, resume, device, set (space-separated KEY=VALUE config
overrides). The node spins in a background thread (parameter services stay up) while the
training runs in the main thread; it exits when the training ends.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from dmo_ros.cli import PRESETS
from dmo_ros.errors import UserError
from dmo_ros.nodes import entry, stop_signals
from dmo_ros.nodes.params import declare
from dmo_ros.nodes.runtime import make_executor

WHAT = ("world-model", "reward", "rssm", "policy")


class TrainerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("trainer", **kwargs)
        self.what = declare(self, "what", "world-model", f"what to train: {', '.join(WHAT)}")
        self.config = declare(self, "config", "pusht.yaml", "task config (name in config/ or path)")
        self.preset = declare(
            self,
            "preset",
            "auto",
            "model/training size: tiny, cpu or paper; auto (or ''): paper with CUDA, cpu without",
        )
        self.bags = declare(self, "bags", "", "play-data bag folders, space- or comma-separated")
        self.out = declare(self, "out", "", "run folder to write (models/<run>)")
        self.resume = declare(self, "resume", False, "continue from <out>/checkpoints/last.pt")
        self.device = declare(self, "device", "auto", "auto (CUDA when present), cpu or cuda[:N]")
        self.overrides = declare(
            self, "set", "", "config overrides KEY=VALUE, space-separated (as dmo-ros --set)"
        )
        self.status = self.create_publisher(DiagnosticArray, "trainer/status", 10)

    def args(self) -> argparse.Namespace:
        """The CLI's arguments for this training, from the parameters (checked)."""
        if self.what not in WHAT:
            raise UserError(f"parameter what={self.what!r}: expected one of {WHAT}")
        if self.preset not in ("", "auto", *PRESETS):
            raise UserError(f"parameter preset={self.preset!r}: auto, {', '.join(PRESETS)}")
        if not self.out:
            raise UserError("parameter 'out' (the run folder) is not set")
        return argparse.Namespace(
            verb="train",
            what=self.what,
            config=self.config,
            preset=None if self.preset in ("", "auto") else self.preset,  # the CLI's default
            bags=[b for b in re.split(r"[\s,]+", self.bags) if b],
            out=self.out,
            resume=self.resume,
            set=self.overrides.split(),
            device=self.device,
            progress=self.publish_progress,
        )

    def publish(self, level: bytes, message: str, values: dict[str, float] | None = None) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [
            DiagnosticStatus(
                level=level,
                name=f"trainer: {self.what}",
                message=message,
                hardware_id=self.out,
                values=[KeyValue(key=k, value=f"{v:.6g}") for k, v in (values or {}).items()],
            )
        ]
        self.status.publish(msg)

    def publish_progress(self, step: int, total: int, scalars: dict[str, float]) -> None:
        self.publish(DiagnosticStatus.OK, f"step {step}/{total}", {"step": step, **scalars})

    def train(self) -> int:
        """Run the training to its end; 2 (and an ERROR status) on a user mistake."""
        from dmo_ros.cli import NotBuilt, _resolve

        try:
            args = self.args()
            self.publish(DiagnosticStatus.OK, "starting")
            code = int(_resolve("train", args.what)(args) or 0)
        except (UserError, NotBuilt) as exc:
            self.publish(DiagnosticStatus.ERROR, str(exc))
            print(f"trainer: error: {exc}", file=sys.stderr)
            return 2
        self.publish(DiagnosticStatus.OK if code == 0 else DiagnosticStatus.ERROR, "finished")
        return code


def main(args: list[str] | None = None) -> int:
    """`ros2 run dmo_ros trainer --ros-args -p out:=models/run -p bags:=rosbags/x ...`; a stop
    signal ends the training (130, as the CLI's Ctrl-C), later ones are ignored."""
    if (code := entry.answer_arguments(TrainerNode, args)) is not None:
        return code
    node = None
    try:
        stop_signals.init(args)
        node = TrainerNode()
        executor = make_executor()
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            with stop_signals.interruptible():
                return node.train()
        except KeyboardInterrupt:
            return 130
        finally:
            stop_signals.ignore()
            executor.shutdown()
            spinner.join(timeout=5.0)  # let spin() return before the node goes away
    finally:
        entry.shut_down(node)


if __name__ == "__main__":
    raise SystemExit(main())
