"""A simulated robot behind the driver topics, stepped every control period (both `sim` backends).

The simulated scene changes only at a control step, so the camera image is the one the step
returns and is published right after it with the step's stamp: the sim camera runs at the
control rate (5 Hz), and the frame a policy sees is never older than the step it acts on.
A step uses the latest command if it is younger than `command_timeout` (one control period by
default), otherwise a zero command: losing the command stream stops the robot within a period.
Deltas (Flexiv) are consumed by the step that uses them; applying one twice would move twice.

Every call into the simulator runs on one worker thread of its own: MuJoCo's EGL context can
be current in one thread only, and a multi-threaded executor runs callbacks on any thread.

Simulated time: the driver owns the clock. It steps on a wall-clock (steady) timer every
`control_period / time_scale` seconds and publishes rosgraph_msgs/Clock on `/clock`, starting
at the wall time the driver starts and advancing exactly one control period per step (no
ticks in between: every sim-time timer fires on a step instant, and every time a recorder
stamps is a step time). Each step publishes the new time first, then
steps and publishes the result stamped with it. The nodes of a sim run use `use_sim_time`;
command ages are measured in sim time too.

A `reset` takes the place of the next step: the sim time advances one control period, the
command that step would have used is dropped, and the new scene is published stamped with
that time, after a `reset` event (std_msgs/Header, same stamp) that the recorder logs and the
play data splits at. So every frame keeps a stamp of its own, and faster than real time the
reset still waits for the old scene's last command, which is logged before the new scene.
Every scene is drawn with the same reset options (e.g. Push-T's near-goal starts), and the
first reset's seed may be set apart from the first scene's, so that `dmo-ros deploy` meets
exactly the starts of `dmo-ros eval policy` (seed + episode index, the variant's options).

`task/step` (diagnostic_msgs/DiagnosticArray, one status "scene") says, stamped with the step,
which scene (its seed) and which step of it (0: the reset) the step's ground truth belongs to,
with its success and coverage: the unstamped task/* topics cannot be told apart across a reset.

Faster than real time (`time_scale` > 1) a command that misses its step would be a dropped
step in the recorded data, so while commands come every step (auto-play, a policy answering
each frame) a step waits for its command, as long as a real-time step would have given it
(one control period of wall time since the step before); at real time the sim never waits,
like a real robot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import CallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock as ClockMessage
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float32, Header
from std_srvs.srv import Trigger

from dmo_ros.nodes import msgs

# Reliable: matches the best-effort subscription of rclpy's and rclcpp's time sources as well
# as the recorder's reliable one, which must see every tick.
CLOCK_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class SimDriver:
    """Steps `sim` every `control_period` of sim time with the latest admitted command and
    publishes the result; `time_scale` sim seconds pass per wall second (1.0: real time).

    Publishes `/clock`, `image_topic` (rgb8), task/success, task/coverage (when the sim
    reports one), task/contact (robot touched the object during the step), task/object_pose
    and task/goal_pose (ground truth, evaluation and auto-play only), and a `reset` event
    (std_msgs/Header) before each new scene, and task/step (which scene and step the ground
    truth is of); calls `publish_state(ground_truth, stamp)` for the robot's own state topic.
    Serves `reset`. Every scene is `sim.reset(seed, options=reset_options)`; the first reset
    draws seed `first_reset_seed` (None: `seed` + 1), and each later one the next seed.
    """

    def __init__(
        self,
        node: Node,
        make_sim: Callable[[], Any],
        *,
        control_period: float,
        command_timeout: float,
        consume: bool,
        frame_id: str,
        camera_frame_id: str,
        image_topic: str,
        object_key: str,
        seed: int,
        publish_state: Callable[[dict, Time], None],
        callback_group: CallbackGroup,
        time_scale: float = 1.0,
        reset_options: dict | None = None,
        first_reset_seed: int | None = None,
    ) -> None:
        self._node = node
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim")
        try:
            self._sim = sim = self._run(make_sim)
        except BaseException:
            self._worker.shutdown()
            raise
        self._timeout_ns = round(command_timeout * 1e9)
        self._period_ns = round(control_period * 1e9)
        self.now_ns = time.time_ns()  # sim time: starts at the wall time, then steps only
        self._consume = consume
        self._frame_id = frame_id
        self._camera_frame_id = camera_frame_id
        self._object_key = object_key
        self._publish_state = publish_state
        self._seed = seed  # of the current scene
        self._next_seed = seed + 1 if first_reset_seed is None else first_reset_seed
        self._options = reset_options
        self._reset_seed: int | None = None  # a new scene of this seed is due at the next step
        self._scene_step = 0  # steps since the current scene's reset
        self._zero = np.zeros(sim.action_space.shape, dtype=np.float32)
        self._pending: tuple[int, np.ndarray] | None = None  # (sim time received, command)
        self._sync = time_scale > 1.0
        self._streaming = False  # the last step used a command sent after the step before it
        self._waiting = False  # a step is due and waits for its command
        self._stepped_at = 0.0  # wall time (monotonic) of the last step
        self._real_period = control_period
        self.steps = 0
        self._obs, _ = self._run(lambda: sim.reset(seed=seed, options=reset_options))
        gt = self._run(sim.ground_truth)

        self._clock = node.create_publisher(ClockMessage, "/clock", CLOCK_QOS)
        self._image = node.create_publisher(Image, image_topic, 5)
        self._success = node.create_publisher(Bool, "task/success", 10)
        self._contact = node.create_publisher(Bool, "task/contact", 10)
        self._coverage = (
            node.create_publisher(Float32, "task/coverage", 10) if "coverage" in gt else None
        )
        self._object = node.create_publisher(PoseStamped, "task/object_pose", 10)
        self._goal = node.create_publisher(PoseStamped, "task/goal_pose", 10)
        self._reset = node.create_publisher(Header, "reset", 10)
        self._status = node.create_publisher(DiagnosticArray, "task/step", 10)
        self._timer = node.create_timer(
            control_period / time_scale,
            self._on_timer,
            callback_group=callback_group,
            clock=Clock(clock_type=ClockType.STEADY_TIME),  # the sim clock is this timer's output
        )
        node.create_service(Trigger, "reset", self._on_reset, callback_group=callback_group)
        self._run(self._tick)
        self._run(self._publish)

    def _run(self, call: Callable[[], Any]) -> Any:
        """Run `call` on the simulator's thread and return its result."""
        return self._worker.submit(call).result()

    def command(self, action: np.ndarray) -> None:
        """Use `action` (physical units, already admitted by the command gate) at the next step."""
        self._pending = (self.now_ns, np.asarray(action, dtype=np.float32))
        if self._waiting:  # the step that waited for this command
            self._waiting = False
            self._run(self._step)

    def halt(self) -> None:
        """Drop any pending command: the next steps get zero commands."""
        self._pending = None

    def _on_timer(self) -> None:
        if self.steps == 0:
            # Wall periods count from the first step, not from construction: spinning may
            # start later, and the second step must not follow the first one early.
            self._timer.reset()
        fresh = self._pending is not None and self._pending[0] == self.now_ns
        late = time.monotonic() - self._stepped_at >= self._real_period
        if self._sync and self._streaming and not fresh and not late:
            self._waiting = True  # step on the command (command()), or on a tick once late
            return
        self._waiting = False
        self._run(self._step)

    def _tick(self) -> None:
        self._clock.publish(ClockMessage(clock=self._stamp()))

    def _stamp(self) -> Time:
        return Time(sec=self.now_ns // 1_000_000_000, nanosec=self.now_ns % 1_000_000_000)

    def _step(self) -> None:
        # The new time first: what this step publishes is stamped and recorded at it.
        self._stepped_at = time.monotonic()
        self.now_ns += self._period_ns
        self._tick()
        action = self._zero
        self._streaming = self.steps == 0  # the first frame is answered too (auto-play)
        if self._pending is not None:
            received, command = self._pending
            self._streaming = received == self.now_ns - self._period_ns
            if self.now_ns - received <= self._timeout_ns:
                action = command
            if self._consume or action is self._zero:
                self._pending = None
        if self._reset_seed is None:
            self._obs, *_ = self._sim.step(action)
            self._scene_step += 1
        else:  # the old scene's command goes with the old scene
            self._obs, _ = self._sim.reset(seed=self._reset_seed, options=self._options)
            self._seed, self._scene_step = self._reset_seed, 0
            self._reset_seed = self._pending = None
            self._reset.publish(Header(stamp=self._stamp(), frame_id=self._frame_id))
        self.steps += 1
        self._publish()

    def close(self) -> None:
        """Release the simulator (its renderers) on its own thread, then stop the thread."""
        self._run(self._sim.close)
        self._worker.shutdown()

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response):
        # Answered at once (a callback must not wait for the step); requests before that
        # step ask for the same new scene.
        if self._reset_seed is None:
            self._reset_seed = self._next_seed
            self._next_seed += 1
        response.success = True
        response.message = f"new scene with seed {self._reset_seed} at the next step"
        self._node.get_logger().info(response.message)
        return response

    def _publish(self) -> None:
        stamp = self._stamp()
        gt = self._sim.ground_truth()
        self._publish_state(gt, stamp)
        self._success.publish(Bool(data=bool(gt["success"])))
        self._contact.publish(Bool(data=bool(gt["contact"])))
        if self._coverage is not None:
            self._coverage.publish(Float32(data=float(gt["coverage"])))
        obj, goal = gt[self._object_key], gt["goal"]
        self._object.publish(msgs.planar_pose(stamp, self._frame_id, obj[0], obj[1], obj[2]))
        goal_yaw = goal[2] if len(goal) > 2 else 0.0
        self._goal.publish(msgs.planar_pose(stamp, self._frame_id, goal[0], goal[1], goal_yaw))
        values = {"seed": self._seed, "step": self._scene_step, "success": bool(gt["success"])}
        if "coverage" in gt:
            values["coverage"] = float(gt["coverage"])  # repr: read back to the same float
        status = DiagnosticStatus(
            name="scene", values=[KeyValue(key=k, value=repr(v)) for k, v in values.items()]
        )
        self._status.publish(DiagnosticArray(header=Header(stamp=stamp), status=[status]))
        # The image last: a node that acts on each frame finds this step's state already sent.
        self._image.publish(msgs.image(stamp, self._camera_frame_id, self._obs))


def offer_no_reset(node: Node, backend: str, callback_group: CallbackGroup) -> None:
    """A `reset` service that says why it cannot reset a real robot's scene."""

    def refuse(_request: Trigger.Request, response: Trigger.Response):
        response.success = False
        response.message = f"reset needs the sim backend (this driver runs '{backend}')"
        return response

    node.create_service(Trigger, "reset", refuse, callback_group=callback_group)
