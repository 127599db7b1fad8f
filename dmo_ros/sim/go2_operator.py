"""The Go2 operator: walks with the cube in front of the body (see auto_play.py)."""

from __future__ import annotations

import math

import numpy as np

from dmo_ros.sim.operator import Act, Operator, detour, perp, rotation, unit, wrap


class Go2Operator(Operator):
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
        self.detour_left = 0  # task: steps still walking about before planning a push again

    def act(self, gt: dict) -> Act:
        base, cube, goal = (np.asarray(gt[k], dtype=np.float64) for k in ("base", "cube", "goal"))
        success = bool(gt.get("success", False))
        milestone = self.success_step(success)
        if self.holding():  # stay: step back slowly from the cube in the goal
            return np.clip(np.array([-0.1, 0.0, 0.0]), self.low, self.high), True, milestone
        if self.steps_left <= 0:
            self.next_mode(success)
            if self.mode == "wander":
                self.waypoint = self.rng.uniform(-self.arena_half + 0.5, self.arena_half - 0.5, 2)
        self.steps_left -= 1
        if self.mode == "wander" or self.detour_left > 0:
            self.detour_left -= 1
            cmd = self._walk(base, self.waypoint, None, cube[:2], 0.6)
            if np.hypot(*(self.waypoint - base[:2])) < 0.2:
                self.steps_left = self.steps_left if self.mode == "task" else 0
                self.detour_left = 0
        else:
            cmd = self._push(base, cube[:2], goal[:2])
        return np.clip(cmd, self.low, self.high), self.mode == "task", False

    def _push(self, base, cube, goal) -> np.ndarray:
        rel = rotation(-base[2]) @ (cube - base[:2])  # the cube in the body frame
        if self.phase == "push":
            self.push_left -= 1
            moved = float(np.dot(cube - self.cube0, self.direction))
            aside = rel[1] + self.offset  # how far the cube is off where it should be
            lost = abs(aside) > 0.22 or not 0.0 < rel[0] < 0.8
            stalled = self.push_left < 25 and moved < 0.05  # e.g. against a wall
            if moved >= self.travel or lost or stalled or self.push_left <= 0:
                self.approach_again()
            else:  # walk on, steering so that the cube stays where it should be in front
                heading = wrap(math.atan2(self.direction[1], self.direction[0]) - base[2])
                wz = 1.5 * math.atan2(aside, rel[0]) + 0.8 * heading
                return np.array([self.speed, 1.0 * aside, wz])
        if not self.planned:
            if not self._plan(base, cube, goal):  # nothing to push from here: walk about
                walk = int(self.rng.integers(6, 16))
                if self.mode == "task":  # and try again (intent on)
                    self.detour_left = walk
                else:
                    self.mode, self.steps_left = "wander", walk
                self.waypoint = self.rng.uniform(-self.arena_half + 0.5, self.arena_half - 0.5, 2)
                return self._walk(base, self.waypoint, None, cube, 0.6)
            self.planned, self.push_left = True, 30  # approach budget
        self.push_left -= 1
        facing = math.atan2(self.direction[1], self.direction[0])
        if np.hypot(*(self.start - base[:2])) < 0.15 and abs(wrap(facing - base[2])) < 0.3:
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
        inward = unit(-cube)
        pushes = []  # (direction, distance, speed, offset of the body's centre line)
        d0 = None
        if self.mode == "task":
            gate = goal + self.gate_offset  # in front of the gate's opening, then through it
            aim = gate if cube[0] < gate[0] - 0.1 else goal
            d0, dist = unit(aim - cube), float(np.hypot(*(aim - cube)))
            pushes += [
                (rotation(t) @ d0, min(dist, 1.0), 0.45, 0.0) for t in (0, 0.3, -0.3, 0.6, -0.6)
            ]
        random_pushes = []
        for _ in range(30):
            d, dist = unit(rng.normal(size=2)), rng.uniform(0.5, 1.2)
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
        compass = [rotation(k * math.pi / 16) @ np.array([1.0, 0.0]) for k in rng.permutation(32)]
        for d in sorted(compass, key=lambda d: -float(np.dot(d, inward))):
            side = math.copysign(0.1, float(np.dot(perp(d), inward)))
            pushes += [(d, 0.5, 0.4, 0.0), (d, 0.5, 0.4, side)]
        near_wall = np.abs(cube) > h - 0.6
        skip = self.failures  # pushes whose start could not be reached are tried last
        for d, dist, speed, offset in pushes[skip:] + pushes[:skip]:
            start = cube - d * self.STANDOFF + perp(d) * offset
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
        world = position + corners @ np.array([heading, perp(heading)])
        return bool(np.all(np.abs(world) < self.arena_half - 0.1))

    def _walk(self, base, target, facing, obstacle, speed) -> np.ndarray:
        """Walk to `target` (round `obstacle`), turning on the way to face `facing` from 1.5 m
        out (or the way on); the base walks sideways and backwards as well."""
        via = self._waypoint(base[:2], target, obstacle)
        error = rotation(-base[2]) @ (via - base[:2])
        dist = float(np.hypot(*error))
        if facing is None or np.hypot(*(target - base[:2])) > 1.5:
            facing = math.atan2(*(via - base[:2])[::-1]) if dist > 0.05 else base[2]
        turn = wrap(facing - base[2])
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
            return detour(base, target, cube, orbit)
        here = math.atan2(*(base - cube)[::-1])
        gap = wrap(math.atan2(*(target - cube)[::-1]) - here)
        if abs(gap) < 0.3:
            return target  # on the right side: straight in
        if np.hypot(*(base - cube)) < orbit - 0.05:
            return cube + unit(base - cube) * orbit  # out to the circle first, then round
        way = gap if gap * self.orbit_sign > 0 else gap + self.orbit_sign * 2 * math.pi
        step = float(np.clip(way, -0.6, 0.6))  # ~0.4 m along the circle: a waypoint ahead
        return cube + orbit * np.array([math.cos(here + step), math.sin(here + step)])

    def _way_round(self, base, cube, start) -> float | None:
        """+1 / -1: which way round the cube reaches `start` clear of the walls (the short
        way first); 0: no need to go round; None: neither way is clear."""
        here = math.atan2(*(base[:2] - cube)[::-1])
        gap = wrap(math.atan2(*(start - cube)[::-1]) - here)
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
