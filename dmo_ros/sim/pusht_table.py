"""Push-T table: the Flexiv Rizon stand-in, on gym-pusht's pymunk scene.

World frame = gym-pusht's board frame in metres (1 gym-pusht unit = 1 mm, board 0.512 m):
x to the right of the camera image, y down the image, angles as gym-pusht's. The action is a
planar end-effector delta per control step; inside the step the end-effector *target* moves
along a straight line at `substep_hz` and gym-pusht's own PD law drives the agent after it,
as the Flexiv bridge streams interpolated targets to the arm.

gym-pusht's scene, T, goal, PD gains, physics step and coverage are used as they are, with
changes for long play without resets, all about a T jammed against a wall: the agent is a heavy
dynamic body instead of a kinematic one, solid blocks back the 4 mm walls, contact overlaps are
corrected faster, and the target may lag the end-effector by at most MAX_LAG (see below).
"""

from __future__ import annotations

import os
from typing import ClassVar

# gym-pusht imports pygame, which prints a banner on stdout at import; the CLI's stdout is ours.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import cv2
import gymnasium as gym
import numpy as np
import pymunk
from gym_pusht.envs.pusht import PushTEnv
from gymnasium import spaces

from dmo_ros.errors import UserError

UNITS_PER_M = 1000.0
BOARD_UNITS = 512
SUCCESS_COVERAGE = 0.95  # gym-pusht's criterion
WORKSPACE_MARGIN = 0.025  # m, end-effector centre to the board's edge: wall 7 + agent 15 + 3 mm
AGENT_MASS = 100.0  # gym-pusht's T has mass 1
MAX_LAG = 0.06  # m, how far the end-effector may lag its target
NEAR_CLEARANCE = 0.005  # m, near starts: end-effector edge to the T, so it starts free
NEAR_TRIES = 1000  # near starts: redraws before giving up (a handful suffice in practice)
SOLVER_ITERATIONS = 30
OVERLAP_CORRECTION = 0.6  # fraction of a contact overlap pymunk removes per 1/60 s
PHYSICS_DT_MAX = 0.01  # gym-pusht's physics step; finer substeps keep it, coarser ones split
# gym-pusht's T (PushTEnv.add_tee: scale 30, length 4) in its body frame, board units: bar and
# stem. The sim draws its pymunk shapes; this copy is for `t_coverage` (tested to match them).
T_LOCAL = (
    np.array([[-60.0, 0.0], [60.0, 0.0], [60.0, 30.0], [-60.0, 30.0]]),
    np.array([[-15.0, 30.0], [15.0, 30.0], [15.0, 120.0], [-15.0, 120.0]]),
)


def _keep_velocity(body: pymunk.Body, gravity, damping: float, dt: float) -> None:
    """Velocity integrator that leaves the velocity as it is (contact impulses still act)."""


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2.0 * np.pi) - np.pi)


def t_coverage(pose, size: int) -> np.ndarray:
    """How much of each pixel the T covers (float32 [size, size] in [0, 1]) at pose (x, y,
    angle) in metres / radians (`ground_truth()["object"]`), drawn as `PushTTable._render`
    draws it (fill and outline, anti-aliased, supersampled); for evaluation (the T fit)."""
    sup = PushTTable._supersampling(size)
    s = size * sup
    scale = s / BOARD_UNITS
    shift = PushTTable._SHIFT
    x, y, angle = (float(v) for v in pose)
    c, si = np.cos(angle), np.sin(angle)
    rot = np.array([[c, si], [-si, c]])  # as _t_world
    origin = np.array([x, y]) * UNITS_PER_M
    polys = [np.round((v @ rot + origin) * scale * (1 << shift)).astype(np.int32) for v in T_LOCAL]
    img = np.zeros((s, s), np.uint8)
    outline = max(1, round(4 * scale))
    for poly in polys:
        cv2.fillPoly(img, [poly], 255, cv2.LINE_AA, shift)
        cv2.polylines(img, [poly], True, 255, outline, cv2.LINE_AA, shift)
    if sup > 1:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


class PushTTable(gym.Env):
    """Push-T with a planar end-effector under a fixed overhead camera (gymnasium API)."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        image_size: int = 64,
        control_period: float = 0.2,
        substep_hz: float = 100.0,
        max_delta: float = 0.04,
        seed: int | None = None,
    ) -> None:
        if image_size < 8:
            raise UserError(f"PushTTable: image_size {image_size} is below 8 pixels")
        if not substep_hz >= 50.0:
            raise UserError(f"PushTTable: substep_hz {substep_hz} is below 50 Hz")
        if not control_period > 0.0 or not max_delta > 0.0:
            raise UserError("PushTTable: control_period and max_delta must be positive")
        self.image_size = int(image_size)
        self.control_period = float(control_period)
        self.max_delta = float(max_delta)
        self.n_substeps = max(1, round(control_period * substep_hz))
        self.substep_dt = self.control_period / self.n_substeps
        self._physics_per_substep = int(np.ceil(self.substep_dt / PHYSICS_DT_MAX - 1e-9))
        self._physics_dt = self.substep_dt / self._physics_per_substep

        self._env = PushTEnv(obs_type="state")
        self._seed = seed
        self._reset_once = False
        self.workspace_low = np.full(2, WORKSPACE_MARGIN)
        self.workspace_high = np.full(2, BOARD_UNITS / UNITS_PER_M - WORKSPACE_MARGIN)
        self.action_space = spaces.Box(-self.max_delta, self.max_delta, (2,), np.float32)
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self._backgrounds: dict[int, np.ndarray] = {}
        self._target = np.zeros(2)
        self._coverage = 0.0
        self._contact = False
        self.substep_ee = np.zeros((self.n_substeps + 1, 2))  # ee path (m) of the last step

    # --- gymnasium API -------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):
        """Seeded random scene (gym-pusht's distribution); options may pin "ee" (x, y) and
        "object" (x, y, theta) in metres / radians, or draw a start near the goal with
        "near": (position, angle) (see `_place_near`; not with "ee" / "object")."""
        if seed is None and not self._reset_once:
            seed = self._seed
        self._reset_once = True
        super().reset(seed=seed)
        self._env.reset(seed=seed)  # rebuilds the pymunk space: refresh the cached handles
        self._walls = list(self._env.space.static_body.shapes)
        self._env.space.add(*self._solid_walls())
        self._make_agent_dynamic()
        self._agent_shape = next(iter(self._env.agent.shapes))
        self._t_shapes = list(self._env._block_shapes)
        self._t_local = [np.array(s.get_vertices(), dtype=np.float64) for s in self._t_shapes]
        self._t_reach = max(float(np.linalg.norm(v, axis=1).max()) for v in self._t_local)
        options = options or {}
        unknown = set(options) - {"ee", "object", "near"}
        if unknown:
            raise ValueError(f"PushTTable.reset: unknown option(s) {sorted(unknown)}")
        if "near" in options:
            if {"ee", "object"} & set(options):
                raise ValueError('PushTTable.reset: "near" draws "ee" and "object" itself')
            options = self._place_near(*options["near"])
        if "object" in options:
            x, y, theta = (float(v) for v in options["object"])
            self._block.angle = theta  # angle first: setting it later would rotate about the CoG
            self._block.position = (x * UNITS_PER_M, y * UNITS_PER_M)
            self._block.velocity, self._block.angular_velocity = (0.0, 0.0), 0.0
        if "ee" in options:
            self.set_ee(options["ee"])
        else:
            self.set_ee(self.ee)
        for body in (self._block, self._env.agent):  # refresh cached shape poses for queries
            self._env.space.reindex_shapes_for_body(body)
        self._coverage = self._get_coverage()
        self._contact = self._touching()
        return self._render(self.image_size), self.ground_truth()

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,):
            raise ValueError(f"PushTTable: action must be (dx, dy), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"PushTTable: action {a.tolist()} is not finite")
        a = np.clip(a, -self.max_delta, self.max_delta)
        # the step's target line continues from the last target, which a blocked end-effector
        # lets run away: keep it within MAX_LAG (more than the ~5.7 cm lag of free motion at
        # full diagonal speed), so a blocked push stays bounded, like a max relative target
        start, ee = self._target, self.ee
        lag = float(np.hypot(*(start - ee)))
        if lag > MAX_LAG:
            start = ee + (start - ee) * (MAX_LAG / lag)
        end = np.clip(start + a, self.workspace_low, self.workspace_high)
        space, agent = self._env.space, self._env.agent
        kp, kv, dt = float(self._env.k_p), float(self._env.k_v), self._physics_dt
        sx, sy = start * UNITS_PER_M
        ex, ey = end * UNITS_PER_M
        contact = False
        path = self.substep_ee  # filled in board units, converted at the end
        path[0] = agent.position
        for k in range(1, self.n_substeps + 1):
            f = k / self.n_substeps
            tx, ty = sx + (ex - sx) * f, sy + (ey - sy) * f
            for _ in range(self._physics_per_substep):
                # gym-pusht's PD law on the agent (kp 100, kv 20), at our substep rate
                (px, py), (vx, vy) = agent.position, agent.velocity
                agent.velocity = (
                    vx + (kp * (tx - px) - kv * vx) * dt,
                    vy + (kp * (ty - py) - kv * vy) * dt,
                )
                space.step(dt)
            contact = contact or self._touching()
            path[k] = agent.position
        path /= UNITS_PER_M
        self._target = end
        self._contact = contact
        self._coverage = self._get_coverage()
        success = self._coverage >= SUCCESS_COVERAGE
        return self._render(self.image_size), self._coverage, success, False, self.ground_truth()

    def render(self) -> np.ndarray:
        return self._render(self.image_size)

    def render_image(self, size: int) -> np.ndarray:
        """The overhead camera at `size` x `size` pixels (e.g. larger for recordings)."""
        if int(size) < 8:
            raise UserError(f"PushTTable: render size {size} is below 8 pixels")
        return self._render(int(size))

    def render_goal(self, ee, size: int | None = None) -> np.ndarray:
        """The camera image of the task done: the T exactly on its goal pose, the end-effector
        at rest at `ee` (x, y in metres, clipped to the workspace), drawn as `render_image`
        draws a scene; the scene itself is left as it was (the ranking reward's goal image)."""
        if not self._reset_once:
            self.reset()
        block, agent = self._block, self._env.agent
        saved = (block.angle, block.position, agent.position)
        x, y, theta = (float(v) for v in self._env.goal_pose)
        xy = np.clip(np.asarray(ee, dtype=np.float64), self.workspace_low, self.workspace_high)
        block.angle, block.position = theta, (x, y)
        agent.position = tuple(xy * UNITS_PER_M)
        try:
            return self.render_image(self.image_size if size is None else size)
        finally:
            block.angle, block.position, agent.position = saved

    def ground_truth(self) -> dict:
        """Evaluation-only state: metres / radians in the board frame."""
        b = self._block
        return {
            "ee": self.ee,
            "object": np.array(
                [b.position.x / UNITS_PER_M, b.position.y / UNITS_PER_M, _wrap(b.angle)]
            ),
            "goal": np.array(
                [
                    self._env.goal_pose[0] / UNITS_PER_M,
                    self._env.goal_pose[1] / UNITS_PER_M,
                    _wrap(self._env.goal_pose[2]),
                ]
            ),
            "coverage": self._coverage,
            "success": self._coverage >= SUCCESS_COVERAGE,
            "contact": self._contact,
        }

    # --- helpers -------------------------------------------------------------------------
    @property
    def ee(self) -> np.ndarray:
        return np.array(self._env.agent.position) / UNITS_PER_M

    def set_ee(self, xy) -> None:
        """Place the end-effector (and its target) at rest at `xy` (clipped to the workspace);
        a reset-time helper, not a motion."""
        xy = np.clip(np.asarray(xy, dtype=np.float64), self.workspace_low, self.workspace_high)
        self._env.agent.position = tuple(xy * UNITS_PER_M)
        self._env.agent.velocity = (0.0, 0.0)
        self._target = xy.copy()
        self.substep_ee[:] = xy

    def _place_near(self, position: float, angle: float) -> dict:
        """Draw (seeded by the reset) the near-goal start as "object" / "ee" reset options:
        the T uniformly within `position` x board size (a disc) of the goal position and
        within +-`angle` (radians) of the goal angle, the end-effector anywhere on the
        workspace at least NEAR_CLEARANCE from the T, and the goal not yet covered."""
        if not (position >= 0.0 and angle >= 0.0):
            raise ValueError(f"PushTTable.reset: near {(position, angle)} must be >= 0")
        rng, board = self.np_random, BOARD_UNITS / UNITS_PER_M
        gx, gy, gtheta = np.asarray(self._env.goal_pose, dtype=np.float64)
        clearance = self._agent_shape.radius + NEAR_CLEARANCE * UNITS_PER_M  # board units
        for _ in range(NEAR_TRIES):
            r = position * board * np.sqrt(rng.uniform())  # sqrt: uniform over the disc
            phi = rng.uniform(0.0, 2.0 * np.pi)
            x, y = gx / UNITS_PER_M + r * np.cos(phi), gy / UNITS_PER_M + r * np.sin(phi)
            pose = (x, y, _wrap(gtheta + rng.uniform(-angle, angle)))
            self._block.angle, self._block.position = pose[2], (x * UNITS_PER_M, y * UNITS_PER_M)
            self._env.space.reindex_shapes_for_body(self._block)
            if self._get_coverage() >= SUCCESS_COVERAGE:
                continue
            for _ in range(NEAR_TRIES):
                ee = rng.uniform(self.workspace_low, self.workspace_high)
                gap = min(s.point_query(tuple(ee * UNITS_PER_M)).distance for s in self._t_shapes)
                if gap >= clearance:
                    return {"object": pose, "ee": ee}
        raise ValueError(f"PushTTable.reset: no near start found for near {(position, angle)}")

    def _solid_walls(self) -> list[pymunk.Poly]:
        """Blocks behind gym-pusht's walls, which are 4 mm segments: a T corner pressed past a
        segment's centre line is pushed out of the board; behind a solid block it is always
        pushed back on."""
        lo, hi, far = 5.0, BOARD_UNITS - 6.0, 200.0  # the wall segments' centre lines (units)
        boxes = [
            (-far, -far, lo, BOARD_UNITS + far),
            (hi, -far, BOARD_UNITS + far, BOARD_UNITS + far),
            (-far, -far, BOARD_UNITS + far, lo),
            (-far, hi, BOARD_UNITS + far, BOARD_UNITS + far),
        ]
        body = self._env.space.static_body
        return [
            pymunk.Poly(body, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]) for x0, y0, x1, y1 in boxes
        ]

    def _make_agent_dynamic(self) -> None:
        """gym-pusht's agent is kinematic, i.e. infinitely strong: a T jammed against a wall or
        into a corner is then forced through the wall and leaves the board. A heavy dynamic
        body driven by the same PD law pushes the T the same way (mass ratio 100) but is
        stopped by a jammed T, like a force-limited arm."""
        agent = self._env.agent
        agent.body_type = pymunk.Body.DYNAMIC
        agent.mass, agent.moment = AGENT_MASS, float("inf")
        # the PD law integrates the agent's velocity itself (as for the kinematic agent); the
        # space's damping (gym-pusht: 0, quasi-static T) must not zero it every step
        agent.velocity_func = _keep_velocity
        # a jammed agent-T-wall stack (mass ratio 100:1) needs more solver iterations than
        # gym-pusht's 10 and a faster overlap correction than pymunk's 10% per 1/60 s, or the
        # end-effector sinks into the T: measured worst overlap ~23 mm -> ~5 mm
        self._env.space.iterations = SOLVER_ITERATIONS
        self._env.space.collision_bias = (1.0 - OVERLAP_CORRECTION) ** 60

    @property
    def _block(self) -> pymunk.Body:
        return self._env.block

    def _touching(self) -> bool:
        a = self._agent_shape
        return any(a.bb.intersects(s.bb) and a.shapes_collide(s).points for s in self._t_shapes)

    def _get_coverage(self) -> float:
        """gym-pusht's coverage (shapely); exactly 0 when the T cannot reach the goal area."""
        gap = np.hypot(*(np.array(self._block.position) - self._env.goal_pose[:2]))
        if gap > 2.0 * self._t_reach:
            return 0.0
        return float(self._env._get_coverage())

    def _t_world(self, x: float, y: float, angle: float) -> list[np.ndarray]:
        """The T's polygons (board units) at pose (x, y, angle) of its body origin."""
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, s], [-s, c]])  # row vectors: v @ rot == R(angle) v
        return [v @ rot + (x, y) for v in self._t_local]

    # --- rendering: gym-pusht's look, drawn with OpenCV at the target size ----------------
    # gym-pusht draws 512x512 with pygame and resizes (~1 ms); drawing the same shapes, colours
    # and outlines straight at 2x the target size over a cached static background is ~10x faster.
    _SHIFT = 4  # sub-pixel bits for cv2 drawing

    @staticmethod
    def _supersampling(size: int) -> int:
        """Small images are drawn at 2x and area-downsampled (anti-aliasing)."""
        return 2 if size < 256 else 1

    def _px(self, points, scale: float) -> np.ndarray:
        return np.round(np.asarray(points, dtype=np.float64) * scale * (1 << self._SHIFT)).astype(
            np.int32
        )

    def _background(self, size: int) -> np.ndarray:
        if size not in self._backgrounds:
            s = size * self._supersampling(size)
            scale = s / BOARD_UNITS
            img = np.full((s, s, 3), 255, np.uint8)
            green = (144, 238, 144)  # pygame "LightGreen", gym-pusht's goal colour
            polys = [self._px(p, scale) for p in self._t_world(*self._env.goal_pose)]
            cv2.fillPoly(img, polys, green, cv2.LINE_AA, self._SHIFT)
            for wall in self._walls:
                thick = max(1, round(2 * wall.radius * scale))
                p = self._px([wall.a, wall.b], scale)
                cv2.line(img, p[0], p[1], tuple(wall.color)[:3], thick, cv2.LINE_AA, self._SHIFT)
            self._backgrounds[size] = img
        return self._backgrounds[size]

    def _render(self, size: int) -> np.ndarray:
        s = size * self._supersampling(size)
        scale = s / BOARD_UNITS
        img = self._background(size).copy()
        outline = max(1, round(4 * scale))  # gym-pusht outlines polygons with radius-2 segments
        b = self._block
        polys = self._t_world(b.position.x, b.position.y, b.angle)
        for shape, poly in zip(self._t_shapes, polys):
            base = tuple(shape.color)[:3]
            light = tuple(min(255, int(1.2 * c)) for c in base)
            poly = self._px(poly, scale)
            cv2.fillPoly(img, [poly], light, cv2.LINE_AA, self._SHIFT)
            cv2.polylines(img, [poly], True, base, outline, cv2.LINE_AA, self._SHIFT)
        # drawn after the T (gym-pusht draws it before) so the end-effector is never hidden
        agent_shape = self._agent_shape
        base = tuple(agent_shape.color)[:3]
        light = tuple(min(255, int(1.2 * c)) for c in base)
        centre = tuple(int(v) for v in self._px(self._env.agent.position, scale))
        r = agent_shape.radius * scale * (1 << self._SHIFT)
        cv2.circle(img, centre, round(r), base, -1, cv2.LINE_AA, self._SHIFT)
        cv2.circle(img, centre, round(r * 11 / 15), light, -1, cv2.LINE_AA, self._SHIFT)
        if s == size:
            return img
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
