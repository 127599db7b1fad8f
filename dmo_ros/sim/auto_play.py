"""A scripted tele-operator for play data, working only from ground-truth poses.

It behaves like a person playing with the scene: it wanders, walks up to the object, pushes
it from varied sides and now and then does the task (pushes the T / the cube towards the goal)
with the intent label on. Modes are drawn at random (seeded); each lasts a random number of
control steps. It knows the scene the way a person does (the T's shape, the gate's opening),
and sees nothing but the poses in the ground-truth dict.
"""

from __future__ import annotations

import math

import numpy as np

from dmo_ros.errors import UserError
from dmo_ros.task import robot_name, task_for_robot


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 1e-9 else np.array([1.0, 0.0])


def _perp(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _detour(start: np.ndarray, end: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """`end`, or a waypoint beside `centre` when the straight path would pass closer to it than
    `radius` (and closer than `end` itself is)."""
    seg = end - start
    length = float(np.hypot(*seg))
    if length < 1e-9:
        return end
    radius = min(radius, float(np.hypot(*(end - centre))) - 0.005)
    u = seg / length
    closest = start + u * float(np.clip(np.dot(centre - start, u), 0.0, length))
    if np.hypot(*(closest - centre)) >= radius:
        return end
    side = closest - centre
    side = _unit(side) if np.hypot(*side) > 1e-6 else _perp(u)
    return centre + side * radius * 1.3


class _Operator:
    """Mode bookkeeping shared by both robots: wander | play (push anywhere) | task."""

    def __init__(self, seed: int, task_prob: float, wander_prob: float) -> None:
        # two streams: the schedule of activities depends on the seed alone, not on the scene
        self.rng = np.random.default_rng([seed, 0])
        self.schedule = np.random.default_rng([seed, 1])
        self.task_prob, self.wander_prob = task_prob, wander_prob
        self.mode, self.steps_left = "wander", 0
        self.phase, self.push_left = "approach", 0  # approach | align | push
        self.direction, self.speed = np.array([1.0, 0.0]), 1.0
        self.planned = False  # a push is planned once per approach
        self.waypoint = np.zeros(2)

    def approach_again(self) -> None:
        self.phase, self.planned = "approach", False

    def next_mode(self) -> None:
        r, u = self.schedule.random(), self.schedule.random()
        if r < self.task_prob:
            self.mode, self.steps_left = "task", 50 + int(u * 70)
        elif r < self.task_prob + self.wander_prob:
            self.mode, self.steps_left = "wander", 6 + int(u * 10)
        else:
            self.mode, self.steps_left = "play", 20 + int(u * 25)
        self.approach_again()


class _PushTOperator(_Operator):
    """Pushes are straight strokes of the end-effector from a start point beside the T."""

    # gym-pusht's T in its body frame (m): the bar and the stem, and its centre of gravity
    T_POLYS = np.array(
        [
            [(-0.06, 0.0), (0.06, 0.0), (0.06, 0.03), (-0.06, 0.03)],
            [(-0.015, 0.03), (0.015, 0.03), (0.015, 0.12), (-0.015, 0.12)],
        ]
    ).reshape(-1, 2)
    T_CENTRE = np.array([0.0, 0.045])
    # the T's outline sampled every 2.5 mm, for where a stroke first touches it
    T_OUTLINE = np.concatenate(
        [
            np.linspace(a, b, int(np.ceil(np.hypot(*(b - a)) / 0.0025)), endpoint=False)
            for poly in T_POLYS.reshape(2, 4, 2)
            for a, b in zip(poly, np.roll(poly, -1, axis=0))
        ]
    )
    EE_RADIUS = 0.015
    BOARD_CENTRE = np.array([0.256, 0.256])

    def __init__(self, seed, task_prob, wander_prob, max_delta, low, high) -> None:
        super().__init__(seed, task_prob, wander_prob)
        self.max_delta, self.low, self.high = max_delta, np.asarray(low), np.asarray(high)
        self.start, self.end = np.zeros(2), np.zeros(2)
        self.failures = 0  # approaches in a row that did not reach their start

    def act(self, gt: dict) -> tuple[np.ndarray, bool]:
        ee, obj, goal = (np.asarray(gt[k], dtype=np.float64) for k in ("ee", "object", "goal"))
        centre = obj[:2] + _rot(obj[2]) @ self.T_CENTRE
        if self.steps_left <= 0:
            self.next_mode()
            if self.mode == "wander":
                self.waypoint = self.rng.uniform(self.low + 0.03, self.high - 0.03)
        self.steps_left -= 1
        if self.mode == "wander":
            if np.hypot(*(self.waypoint - ee)) < 0.01:
                self.steps_left = 0
            target, speed = self._around(ee, self.waypoint, centre, obj), 0.8
        else:
            target, speed = self._stroke(ee, centre, obj, goal)
        # the arm lags its target: full steps far away, softer ones close by against overshoot
        step = (target - ee) * (1.0 if np.hypot(*(target - ee)) > 0.06 else 0.7)
        n = float(np.hypot(*step))
        if n > speed * self.max_delta:
            step *= speed * self.max_delta / n
        return np.clip(step, -self.max_delta, self.max_delta), self.mode == "task"

    def _stroke(self, ee, centre, obj, goal) -> tuple[np.ndarray, float]:
        """Go round the T to a point behind the planned stroke, line up, then stroke."""
        if self.phase == "push":
            self.push_left -= 1
            if np.hypot(*(self.end - ee)) < 0.004 or self.push_left <= 0:
                self.approach_again()
        if self.phase in ("approach", "align"):
            if not self.planned:
                self._plan(ee, centre, obj, goal)
                self.planned, self.push_left = True, 20  # approach budget, then the stroke's
            self.push_left -= 1
            behind = np.clip(self.start - self.direction * 0.03, self.low, self.high)
            # a follow-up stroke often starts where the last one ended: line up from there
            close = np.hypot(*(self.start - ee)) < 0.03
            lined_up = close and np.dot(ee - self.start, self.direction) < 0.005
            if self.phase == "approach" and (np.hypot(*(behind - ee)) < 0.015 or lined_up):
                self.phase = "align"
            if self.phase == "align" and np.hypot(*(self.start - ee)) < 0.01:
                self.phase, self.push_left, self.failures = "push", 15, 0
            elif self.push_left <= 0:  # could not get there: step back, then plan another
                self.approach_again()
                self.failures += 1
                self.mode, self.steps_left = "wander", 5
                self.waypoint = ee + 0.5 * (self.BOARD_CENTRE - ee) + self.rng.normal(0, 0.03, 2)
                return ee, 0.0
            elif self.phase == "align":
                return self.start, 0.6
            else:
                return self._around(ee, behind, centre, obj), 1.0
        return self.end, self.speed

    def _around(self, ee, target, centre, obj) -> np.ndarray:
        """`target`, or a waypoint that keeps the end-effector clear of the T."""
        clear = float(np.max(np.hypot(*(self.T_POLYS - self.T_CENTRE).T))) + self.EE_RADIUS + 0.01
        return np.clip(_detour(ee, target, centre, clear), self.low, self.high)

    def _touch_start(self, centre, obj, d, offset: float = 0.0) -> np.ndarray:
        """Where to start a stroke along `d` passing `offset` beside the T's centre: 1 cm
        before the end-effector would first touch the T."""
        points = (self.T_OUTLINE - self.T_CENTRE) @ _rot(obj[2]).T
        lateral = points @ _perp(d) - offset
        near = np.abs(lateral) < self.EE_RADIUS
        if not near.any():  # the stroke misses the T: start beside its centre
            return centre + _perp(d) * offset - d * 0.02
        reach = np.max(-(points[near] @ d) + np.sqrt(self.EE_RADIUS**2 - lateral[near] ** 2))
        return centre + _perp(d) * offset - d * (reach + 0.01)

    def _task_strokes(self, centre, obj, goal) -> list[tuple[np.ndarray, np.ndarray]]:
        """(start, end) strokes that bring the T towards its goal pose, best first."""
        rot = _rot(obj[2])
        goal_centre = goal[:2] + _rot(goal[2]) @ self.T_CENTRE
        error, turn = goal_centre - centre, _wrap(goal[2] - obj[2])
        turns, slides = [], []
        turn_tolerance = 0.15 if np.hypot(*error) > 0.03 else 0.04  # finer close to the goal
        if abs(turn) > turn_tolerance or np.hypot(*error) < 0.004:
            # turn it: push one end of the bar across the bar (the T turns about its centre)
            for end_x in (0.055, -0.055):
                # torque about the centre of a push along the T's local y at x = end_x has the
                # sign of end_x * y-direction; the angle grows with a positive torque
                y_dir = math.copysign(1.0, turn) * math.copysign(1.0, end_x)
                contact = np.array([end_x, 0.0 if y_dir > 0 else 0.03])
                d = rot @ np.array([0.0, y_dir])
                touch = obj[:2] + rot @ contact - d * (self.EE_RADIUS + 0.01)
                # measured: ~0.19 rad per 0.045 m pushed at the end of the bar (0.24 m/rad);
                # a shorter stroke, as the push also shifts the T
                length = 0.01 + float(np.clip(abs(turn) * 0.15, 0.003, 0.05))
                turns.append((touch, touch + d * length))
        if np.hypot(*error) >= 0.004:
            for tilt in (0.0, 0.3, -0.3, 0.6, -0.6):  # slide it: push through its centre
                d = _rot(tilt) @ _unit(error)
                start = self._touch_start(centre, obj, d)
                length = 0.01 + float(np.clip(0.7 * np.dot(error, d), 0.003, 0.1))
                slides.append((start, start + d * length))
        # far away: slide it over first; close by: turn it, then slide the last bit
        strokes = slides + turns if np.hypot(*error) > 0.04 else turns + slides
        return strokes

    def _plan(self, ee, centre, obj, goal) -> None:
        """The next stroke: towards the goal for the task, else a random push, kept central."""
        rng, inward = self.rng, _unit(self.BOARD_CENTRE - centre)
        strokes = self._task_strokes(centre, obj, goal) if self.mode == "task" else []
        speed = float(rng.uniform(0.3, 0.8))
        if self.mode == "task":  # slow and careful close to the goal
            goal_centre = goal[:2] + _rot(goal[2]) @ self.T_CENTRE
            speed = 0.6 if np.hypot(*(goal_centre - centre)) > 0.04 else 0.3
        random_strokes = []
        for _ in range(30):
            d = _unit(rng.normal(size=2))
            if self.mode == "play" and np.any(abs(centre + 0.15 * d - self.BOARD_CENTRE) > 0.16):
                continue  # playing: keep the T in the middle, away from walls and corners
            start = self._touch_start(centre, obj, d, rng.uniform(-0.03, 0.03))
            random_strokes.append((start, start + d * (0.01 + rng.uniform(0.06, 0.16))))
        if self.mode == "play":  # mostly from a side close by: less walking round, more pushing
            random_strokes.sort(key=lambda st: np.hypot(*(st[0] - ee)) + rng.uniform(0.0, 0.15))
        strokes += random_strokes
        # by a wall or in a corner: slide it along the wall or out of the corner
        compass = [_rot(k * math.pi / 8) @ np.array([1.0, 0.0]) for k in rng.permutation(16)]
        for d in sorted(compass, key=lambda d: -float(np.dot(d, inward))):
            start = self._touch_start(centre, obj, d)
            strokes.append((start, start + d * 0.08))
        near_wall = np.abs(centre - self.BOARD_CENTRE) > 0.15
        skip = self.failures  # strokes whose start could not be reached are tried last
        for start, end in strokes[skip:] + strokes[:skip]:
            d = _unit(end - start)
            into_wall = near_wall & (d * np.sign(centre - self.BOARD_CENTRE) > 0.3)
            if np.all(start >= self.low) and np.all(start <= self.high) and not into_wall.any():
                break
        else:  # wedged in a corner: poke it from wherever the workspace allows
            start = self._touch_start(centre, obj, inward) + rng.uniform(-0.03, 0.03, size=2)
            start = np.clip(start, self.low, self.high)
            end = start + _unit(centre - start) * 0.06
        self.start, self.end = start, np.clip(end, self.low, self.high)
        self.direction, self.speed = _unit(end - start), speed


class _Go2Operator(_Operator):
    """Pushes are walks with the cube in front of the body, from a start point behind it."""

    STANDOFF = 0.35 + 0.11 + 0.08  # base half-length + cube half-size + clearance (m)
    PLAY_HALF = 1.1  # m, pushes aim to keep the cube within this square round the middle
    CLEAR = 0.62  # m, keep the base's centre this far from the cube when walking round it

    def __init__(self, seed, task_prob, wander_prob, low, high, arena_half, gate_offset) -> None:
        super().__init__(seed, task_prob, wander_prob)
        self.low, self.high = np.asarray(low), np.asarray(high)
        self.arena_half, self.gate_offset = arena_half, np.asarray(gate_offset, dtype=np.float64)
        self.start, self.cube0, self.travel, self.offset = np.zeros(2), np.zeros(2), 0.0, 0.0
        self.orbit_sign = 0.0  # which way round the cube to its start (+1 counter-clockwise)
        self.failures = 0

    def act(self, gt: dict) -> tuple[np.ndarray, bool]:
        base, cube, goal = (np.asarray(gt[k], dtype=np.float64) for k in ("base", "cube", "goal"))
        if self.steps_left <= 0 or (self.mode == "task" and gt.get("success", False)):
            self.next_mode()
            if self.mode == "wander":
                self.waypoint = self.rng.uniform(-self.arena_half + 0.5, self.arena_half - 0.5, 2)
        self.steps_left -= 1
        if self.mode == "wander":
            cmd = self._walk(base, self.waypoint, None, cube[:2], 0.6)
            if np.hypot(*(self.waypoint - base[:2])) < 0.2:
                self.steps_left = 0
        else:
            cmd = self._push(base, cube[:2], goal[:2])
        return np.clip(cmd, self.low, self.high), self.mode == "task"

    def _push(self, base, cube, goal) -> np.ndarray:
        rel = _rot(-base[2]) @ (cube - base[:2])  # the cube in the body frame
        if self.phase == "push":
            self.push_left -= 1
            moved = float(np.dot(cube - self.cube0, self.direction))
            aside = rel[1] + self.offset  # how far the cube is off where it should be
            lost = abs(aside) > 0.22 or not 0.0 < rel[0] < 0.8
            stalled = self.push_left < 25 and moved < 0.05  # e.g. against a wall
            if moved >= self.travel or lost or stalled or self.push_left <= 0:
                self.approach_again()
            else:  # walk on, steering so that the cube stays where it should be in front
                heading = _wrap(math.atan2(self.direction[1], self.direction[0]) - base[2])
                wz = 1.5 * math.atan2(aside, rel[0]) + 0.8 * heading
                return np.array([self.speed, 1.0 * aside, wz])
        if not self.planned:
            if not self._plan(base, cube, goal):  # nothing to push from here: walk about
                self.mode, self.steps_left = "wander", int(self.rng.integers(6, 16))
                self.waypoint = self.rng.uniform(-self.arena_half + 0.5, self.arena_half - 0.5, 2)
                return self._walk(base, self.waypoint, None, cube, 0.6)
            self.planned, self.push_left = True, 30  # approach budget
        self.push_left -= 1
        facing = math.atan2(self.direction[1], self.direction[0])
        if np.hypot(*(self.start - base[:2])) < 0.15 and abs(_wrap(facing - base[2])) < 0.3:
            self.phase, self.push_left, self.failures = "push", 30, 0
            self.cube0 = cube.copy()
        elif self.push_left <= 0:
            self.approach_again()  # could not get there: plan another push
            self.failures += 1
        return self._walk(base, self.start, facing, cube, 0.7)

    def _plan(self, base, cube, goal) -> bool:
        """The next push: towards the gate for the task, else a random one, kept central;
        False when none can be made from here."""
        rng, h = self.rng, self.arena_half
        inward = _unit(-cube)
        pushes = []  # (direction, distance, speed, offset of the body's centre line)
        d0 = None
        if self.mode == "task":
            gate = goal + self.gate_offset  # in front of the gate's opening, then through it
            aim = gate if cube[0] < gate[0] - 0.1 else goal
            d0, dist = _unit(aim - cube), float(np.hypot(*(aim - cube)))
            pushes += [(_rot(t) @ d0, min(dist, 1.0), 0.45, 0.0) for t in (0, 0.3, -0.3, 0.6, -0.6)]
        random_pushes = []
        for _ in range(30):
            d, dist = _unit(rng.normal(size=2)), rng.uniform(0.5, 1.2)
            if np.any(np.abs(cube + dist * d) > self.PLAY_HALF):
                continue  # keep the cube in the middle, away from walls it would stick to
            if d0 is not None and np.dot(d, d0) < 0.3:
                continue  # doing the task: only pushes that help
            random_pushes.append((d, dist, rng.uniform(0.3, 0.7), 0.0))
        if self.mode == "play":  # mostly from a side close by: less walking round
            random_pushes.sort(
                key=lambda p: (
                    np.hypot(*(cube - p[0] * self.STANDOFF - base[:2])) + rng.uniform(0, 0.4)
                )
            )
        pushes += random_pushes
        # by a wall: along the wall and a little away from it, towards the middle; against
        # it: with the body's wall-side edge, the body itself a little off the wall
        compass = [_rot(k * math.pi / 16) @ np.array([1.0, 0.0]) for k in rng.permutation(32)]
        for d in sorted(compass, key=lambda d: -float(np.dot(d, inward))):
            side = math.copysign(0.1, float(np.dot(_perp(d), inward)))
            pushes += [(d, 0.5, 0.4, 0.0), (d, 0.5, 0.4, side)]
        near_wall = np.abs(cube) > h - 0.6
        skip = self.failures  # pushes whose start could not be reached are tried last
        for d, dist, speed, offset in pushes[skip:] + pushes[:skip]:
            start = cube - d * self.STANDOFF + _perp(d) * offset
            into_wall = near_wall & (d * np.sign(cube) > 0.3)
            into_corner = np.all(np.abs(cube + dist * d) > h - 0.6)  # no way out of a corner
            if not self._fits(start, d) or into_wall.any() or into_corner:
                continue
            way = self._way_round(base, cube, start)
            if way is not None:
                self.direction, self.travel, self.speed = d, float(dist), float(speed)
                self.start, self.offset, self.orbit_sign = start, float(offset), way
                return True
        return False  # wedged in a corner: nothing to push from here

    def _fits(self, position: np.ndarray, heading: np.ndarray) -> bool:
        """Whether the base, at `position` facing `heading`, stands clear of the walls."""
        corners = np.array([(0.35, 0.155), (0.35, -0.155), (-0.35, 0.155), (-0.35, -0.155)])
        world = position + corners @ np.array([heading, _perp(heading)])
        return bool(np.all(np.abs(world) < self.arena_half - 0.1))

    def _walk(self, base, target, facing, obstacle, speed) -> np.ndarray:
        """Walk to `target` (round `obstacle`), turning on the way to face `facing` from 1.5 m
        out (or the way on); the base walks sideways and backwards as well."""
        via = self._waypoint(base[:2], target, obstacle)
        error = _rot(-base[2]) @ (via - base[:2])
        dist = float(np.hypot(*error))
        if facing is None or np.hypot(*(target - base[:2])) > 1.5:
            facing = math.atan2(*(via - base[:2])[::-1]) if dist > 0.05 else base[2]
        turn = _wrap(facing - base[2])
        v = error * min(1.5, speed / max(dist, 1e-6))
        # keep the direction within the body-velocity bounds (forward is faster than sideways)
        limit = np.where(v >= 0, self.high[:2], -self.low[:2])
        v *= min(1.0, float(np.min(limit / np.maximum(np.abs(v), 1e-9))))
        return np.array([v[0], v[1], 2.0 * turn])

    def _waypoint(self, base, target, cube) -> np.ndarray:
        """The next point on the way: a push's start beside the cube is reached by circling
        the cube at a safe distance (the way round chosen when planning) and coming in at
        the end; anything else by a detour round the cube."""
        orbit = self.CLEAR
        if np.hypot(*(target - cube)) > orbit + 0.1:
            return _detour(base, target, cube, orbit)
        here = math.atan2(*(base - cube)[::-1])
        gap = _wrap(math.atan2(*(target - cube)[::-1]) - here)
        if abs(gap) < 0.3:
            return target  # on the right side: straight in
        if np.hypot(*(base - cube)) < orbit - 0.05:
            return cube + _unit(base - cube) * orbit  # out to the circle first, then round
        way = gap if gap * self.orbit_sign > 0 else gap + self.orbit_sign * 2 * math.pi
        step = float(np.clip(way, -0.6, 0.6))  # ~0.4 m along the circle: a waypoint ahead
        return cube + orbit * np.array([math.cos(here + step), math.sin(here + step)])

    def _way_round(self, base, cube, start) -> float | None:
        """+1 / -1: which way round the cube reaches `start` clear of the walls (the short
        way first); 0: no need to go round; None: neither way is clear."""
        here = math.atan2(*(base[:2] - cube)[::-1])
        gap = _wrap(math.atan2(*(start - cube)[::-1]) - here)
        if abs(gap) < 0.3:
            return 0.0
        inside = self.arena_half - 0.45  # the base may be turned any way on the circle
        for way in (gap, gap - math.copysign(2 * math.pi, gap)):
            arc = self.CLEAR * np.array(
                [(math.cos(here + f * way), math.sin(here + f * way)) for f in np.linspace(0, 1, 9)]
            )
            if np.all(np.abs(cube + arc[1:-1]) < inside):
                return math.copysign(1.0, way)
        return None


class AutoPlay:
    """Scripted play for 'pusht'/'flexiv' (end-effector deltas) or 'go2' (body velocities)."""

    def __init__(
        self,
        robot: str,
        seed: int = 0,
        task_prob: float = 0.2,
        wander_prob: float = 0.1,
        **kwargs,
    ) -> None:
        """task_prob / wander_prob: chance that the next activity is the task / wandering
        (else free play). kwargs: pusht: workspace_low, workspace_high (m); go2: arena_half
        (m), gate_offset (m, the point in front of the goal gate's opening, from the goal)."""
        self.robot = robot_name(robot)
        if min(task_prob, wander_prob) < 0.0 or task_prob + wander_prob > 1.0:
            raise UserError(
                f"auto-play: task_prob {task_prob} and wander_prob {wander_prob} "
                "must be probabilities that add up to at most 1"
            )
        task = task_for_robot(self.robot)
        if self.robot == "flexiv":
            self._op = _PushTOperator(
                seed,
                task_prob,
                wander_prob,
                max_delta=float(task.action_high[0]),
                low=kwargs.pop("workspace_low", (0.025, 0.025)),  # PushTTable's workspace
                high=kwargs.pop("workspace_high", (0.487, 0.487)),
            )
        else:
            self._op = _Go2Operator(
                seed,
                task_prob,
                wander_prob,
                low=task.action_low,
                high=task.action_high,
                arena_half=float(kwargs.pop("arena_half", 2.5)),  # Go2PushCube's arena
                gate_offset=kwargs.pop("gate_offset", (-0.6, 0.0)),
            )
        if kwargs:
            raise UserError(f"auto-play ({robot}): unknown option(s) {', '.join(sorted(kwargs))}")

    def act(self, gt: dict) -> tuple[np.ndarray, bool]:
        """The next action (physical units) and the intent label, from ground-truth poses:
        pusht "ee", "object", "goal"; go2 "base", "cube", "goal" (and "success", if given,
        ends a task attempt)."""
        action, intent = self._op.act(gt)
        return np.asarray(action, dtype=np.float32), bool(intent)
