"""Go2 push-cube: the quadruped stand-in, in MuJoCo.

A base with the Go2's footprint moves on planar joints (frame "odom" = the arena frame, x east,
y north, yaw counter-clockwise). The RL locomotion policy is replaced by a 50 Hz low-level
controller: the body-velocity reference follows the command (vx, vy, wz, body frame) through a
first-order response with a dead time, a gain and acceleration limits, and velocity servos on
the joints track it with a bounded force, so the cube and the walls push back.
"""

from __future__ import annotations

import os

# MuJoCo's default GL backend (GLFW) needs a display; EGL renders headless (Mesa on the CPU).
# It must be chosen before mujoco is imported, so only a caller's explicit choice overrides it.
os.environ.setdefault("MUJOCO_GL", "egl")

import collections
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from dmo_ros.errors import UserError

SCENE = Path(__file__).parent / "assets" / "push_cube.xml"
CONTROLLER_HZ = 50.0
MAX_RENDER = 640  # the scene's offscreen buffer (visual/global offwidth)


@dataclass(frozen=True)
class Response:
    """How the body velocity follows a command (stands in for the locomotion policy)."""

    tau: float  # s, first-order time constant
    accel: tuple[float, float, float]  # m/s^2, m/s^2, rad/s^2 limits on the reference
    gain: float  # steady-state velocity / commanded velocity
    delay: float  # s, dead time before a command takes effect


RESPONSES = {
    "nominal": Response(tau=0.15, accel=(4.0, 4.0, 8.0), gain=1.0, delay=0.0),
    # the paper's "changed low-level controller": slower, laggier, and under-tracking
    "changed": Response(tau=0.4, accel=(1.5, 1.5, 3.0), gain=0.75, delay=0.06),
}
DEFAULT_BOUNDS = {"vx": (-0.4, 0.8), "vy": (-0.4, 0.4), "wz": (-1.0, 1.0)}


def _yaw_of_quat(q: np.ndarray) -> float:
    w, x, y, z = q
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2.0 * np.pi) - np.pi)


class Go2PushCube(gym.Env):
    """Push a cube into the goal gate with a Go2-sized base and its front camera."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        image_size: int = 64,
        control_period: float = 0.2,
        response: str = "nominal",
        seed: int | None = None,
        **limits,
    ) -> None:
        """`limits`: vx, vy, wz = (low, high) command bounds; tau, accel, gain, delay override
        the "nominal" response profile."""
        if not 8 <= image_size <= MAX_RENDER:
            raise UserError(f"Go2PushCube: image_size {image_size} outside 8..{MAX_RENDER}")
        if not control_period > 0.0:
            raise UserError(f"Go2PushCube: control_period {control_period} must be positive")
        bounds = dict(DEFAULT_BOUNDS)
        profile = {}
        known = {f.name for f in fields(Response)}
        for key, value in limits.items():
            if key not in bounds and key not in known:
                names = ", ".join([*bounds, *sorted(known)])
                raise UserError(f"Go2PushCube: unknown limit '{key}' (known: {names})")
            try:
                if key in bounds or key == "accel":
                    value = tuple(float(v) for v in value)
                    if len(value) != (2 if key in bounds else 3):
                        raise ValueError
                else:
                    value = float(value)
            except (TypeError, ValueError):
                raise UserError(f"Go2PushCube: limit '{key}' has a bad value {value!r}") from None
            (bounds if key in bounds else profile)[key] = value
        nominal = replace(RESPONSES["nominal"], **profile)
        if not (
            nominal.tau > 0 and nominal.gain > 0 and nominal.delay >= 0 and min(nominal.accel) > 0
        ):
            raise UserError(
                f"Go2PushCube: response {nominal} needs tau, gain, accel > 0, delay >= 0"
            )
        self._profiles = dict(RESPONSES, nominal=nominal)
        self.low = np.array([bounds[k][0] for k in ("vx", "vy", "wz")])
        self.high = np.array([bounds[k][1] for k in ("vx", "vy", "wz")])
        if np.any(self.low >= self.high):
            raise UserError("Go2PushCube: every command lower bound must be below its upper one")
        self.action_space = spaces.Box(self.low.astype(np.float32), self.high.astype(np.float32))
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.image_size = int(image_size)
        self.control_period = float(control_period)

        m = self.model = mujoco.MjModel.from_xml_path(str(SCENE))
        self.data = mujoco.MjData(m)
        self.tick_dt = 1.0 / CONTROLLER_HZ
        self.n_ticks = max(1, round(control_period * CONTROLLER_HZ))
        self._physics_per_tick = max(1, round(self.tick_dt / m.opt.timestep))
        jnt = {n: m.joint(n) for n in ("base_x", "base_y", "base_yaw", "cube")}
        self._q_base = [int(jnt[n].qposadr[0]) for n in ("base_x", "base_y", "base_yaw")]
        self._v_base = [int(jnt[n].dofadr[0]) for n in ("base_x", "base_y", "base_yaw")]
        self._q_cube = int(jnt["cube"].qposadr[0])
        self._g_cube, self._g_base = m.geom("cube").id, m.geom("base").id
        patch = m.geom("goal_patch")
        self.goal = np.array(patch.pos[:2], dtype=np.float64)
        self.goal_half = np.array(patch.size[:2], dtype=np.float64)
        self._cam = m.camera("front").id
        self._tan_half_fov = float(np.tan(np.deg2rad(m.cam_fovy[self._cam]) / 2.0))
        self._renderers: dict[int, mujoco.Renderer] = {}
        self._view = mujoco.MjvOption()
        self._view.geomgroup[3] = 0  # the body itself (the camera sits inside it)
        self._seed = seed
        self._reset_once = False
        self.set_response(response)
        self._v_ref = np.zeros(3)
        self._contact = False

    # --- gymnasium API -------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):
        """Seeded random base and cube poses; options may pin "base" and "cube" (x, y, yaw)."""
        if seed is None and not self._reset_once:
            seed = self._seed
        self._reset_once = True
        super().reset(seed=seed)
        m, d, rng = self.model, self.data, self.np_random
        mujoco.mj_resetData(m, d)
        options = options or {}
        unknown = set(options) - {"base", "cube"}
        if unknown:
            raise ValueError(f"Go2PushCube.reset: unknown option(s) {sorted(unknown)}")
        while True:  # base in the western part, cube west of the gate, apart
            base = np.array(
                [rng.uniform(-1.5, 0.3), rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)]
            )
            cube = np.array(
                [rng.uniform(-1.0, 0.3), rng.uniform(-1.2, 1.2), rng.uniform(-np.pi, np.pi)]
            )
            if np.hypot(*(base[:2] - cube[:2])) > 0.8:
                break
        base = np.asarray(options.get("base", base), dtype=np.float64)
        cube = np.asarray(options.get("cube", cube), dtype=np.float64)
        d.qpos[self._q_base] = base
        q = self._q_cube
        d.qpos[q : q + 3] = (cube[0], cube[1], 0.11)
        d.qpos[q + 3 : q + 7] = (np.cos(cube[2] / 2), 0.0, 0.0, np.sin(cube[2] / 2))
        mujoco.mj_forward(m, d)
        self._v_ref = np.zeros(3)
        self._pending = collections.deque([np.zeros(3)] * self._delay_ticks, self._delay_ticks + 1)
        self._contact = self._touching()
        return self.render(), self.ground_truth()

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (3,):
            raise ValueError(f"Go2PushCube: action must be (vx, vy, wz), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"Go2PushCube: action {a.tolist()} is not finite")
        a = np.clip(a, self.low, self.high)
        m, d, p = self.model, self.data, self._profile
        alpha = 1.0 - np.exp(-self.tick_dt / p.tau)
        max_dv = np.asarray(p.accel) * self.tick_dt
        yaw_q, qpos, ctrl = self._q_base[2], d.qpos, d.ctrl
        contact = False
        for _ in range(self.n_ticks):  # the 50 Hz low-level controller
            self._pending.append(a)
            target = np.clip(p.gain * self._pending[0], self.low, self.high)
            self._v_ref += np.clip((target - self._v_ref) * alpha, -max_dv, max_dv)
            vx, vy, wz = (float(v) for v in self._v_ref)
            for _ in range(self._physics_per_tick):
                yaw = float(qpos[yaw_q])
                c, s = math.cos(yaw), math.sin(yaw)
                ctrl[:] = (c * vx - s * vy, s * vx + c * vy, wz)  # body -> world frame
                mujoco.mj_step(m, d)
                contact = contact or self._touching()
        self._contact = contact
        gt = self.ground_truth()
        if gt["success"]:
            reward = 1.0
        else:  # shaped progress: 0.5 at the goal's centre falling to 0 at 3 m (documented)
            reward = 0.5 * max(0.0, 1.0 - float(np.hypot(*(gt["cube"][:2] - self.goal))) / 3.0)
        return self.render(), reward, gt["success"], False, gt

    def render(self) -> np.ndarray:
        return self.render_image(self.image_size)

    def render_image(self, size: int) -> np.ndarray:
        """The front camera at `size` x `size` pixels (RGB uint8)."""
        size = int(size)
        if not 8 <= size <= MAX_RENDER:
            raise UserError(f"Go2PushCube: render size {size} outside 8..{MAX_RENDER}")
        if size not in self._renderers:
            self._renderers[size] = mujoco.Renderer(self.model, size, size)
        renderer = self._renderers[size]
        renderer.update_scene(self.data, camera=self._cam, scene_option=self._view)
        return renderer.render()

    def ground_truth(self) -> dict:
        """Evaluation-only state in the odom (arena) frame; base_vel in the body frame."""
        d = self.data
        x, y, yaw = d.qpos[self._q_base]
        vwx, vwy, wz = d.qvel[self._v_base]
        c, s = np.cos(yaw), np.sin(yaw)
        q = self._q_cube
        cube = np.array([d.qpos[q], d.qpos[q + 1], _yaw_of_quat(d.qpos[q + 3 : q + 7])])
        return {
            "base": np.array([x, y, _wrap(yaw)]),
            "base_vel": np.array([c * vwx + s * vwy, -s * vwx + c * vwy, wz]),
            "cube": cube,
            "goal": self.goal.copy(),
            "success": bool(np.all(np.abs(cube[:2] - self.goal) <= self.goal_half)),
            "contact": self._contact,
            "cube_visible": self._cube_visible(),
        }

    def set_response(self, name: str) -> None:
        """Switch the low-level controller's response profile ("nominal" | "changed")."""
        if name not in self._profiles:
            raise UserError(f"Go2PushCube: unknown response '{name}' (nominal, changed)")
        self.response = name
        self._profile = self._profiles[name]
        self._delay_ticks = round(self._profile.delay / self.tick_dt)
        self._pending = collections.deque([np.zeros(3)] * self._delay_ticks, self._delay_ticks + 1)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # --- helpers -------------------------------------------------------------------------
    def _touching(self) -> bool:
        d, q, (bx, by, _) = self.data, self._q_cube, self._q_base
        if math.hypot(d.qpos[q] - d.qpos[bx], d.qpos[q + 1] - d.qpos[by]) > 0.6:
            return False  # farther apart than the base's and the cube's bounding circles
        pair = {self._g_cube, self._g_base}
        return any({int(a), int(b)} == pair for a, b in d.contact.geom[: d.ncon])

    def _cube_visible(self) -> bool:
        """Whether the cube's centre projects inside the front camera's image."""
        d = self.data
        q = self._q_cube
        rel = d.qpos[q : q + 3] - d.cam_xpos[self._cam]
        pc = d.cam_xmat[self._cam].reshape(3, 3).T @ rel  # camera frame: x right, y up, -z ahead
        depth = -pc[2]
        if depth <= self.model.vis.map.znear * self.model.stat.extent:
            return False
        return bool(max(abs(pc[0]), abs(pc[1])) <= self._tan_half_fov * depth)
