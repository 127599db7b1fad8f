"""The Push-T operator: closed-loop pushes at contact points around the T (see auto_play.py)."""

from __future__ import annotations

import math

import numpy as np

from dmo_ros.sim.operator import Act, Operator, detour, perp, rotation, unit, wrap


def _t_contacts(rects: np.ndarray, outline: np.ndarray, radius: float, spacing: float):
    """Where a round end-effector of `radius` can touch the T, in the T's body frame: the
    end-effector's centre (M, 2), the push direction there (the contact normal into the T,
    M x 2) and the contact point (M, 2). Along each edge every `spacing` m, and a fan of
    normals round each convex corner; none where the end-effector would touch two edges."""
    centres, normals, points = [], [], []
    n_out = []
    for a, b in zip(outline, np.roll(outline, -1, axis=0)):
        n = unit(perp(b - a))
        if _t_distance(rects, ((a + b) / 2 + 1e-4 * n)[None])[0] == 0.0:
            n = -n
        n_out.append(n)
        k = max(1, int(np.hypot(*(b - a)) / spacing))
        for f in (np.arange(k) + 0.5) / k:
            p = a + f * (b - a)
            centres.append(p + radius * n)
            normals.append(-n)
            points.append(p)
    for i, v in enumerate(outline):  # the corner between edge i-1 and edge i
        n1, n2 = n_out[i - 1], n_out[i]
        if _t_distance(rects, (v + 1e-4 * (n1 + n2))[None])[0] == 0.0:
            continue  # concave: no contact of its own
        a1, gap = (
            math.atan2(n1[1], n1[0]),
            wrap(math.atan2(n2[1], n2[0]) - math.atan2(n1[1], n1[0])),
        )
        for f in np.linspace(0.0, 1.0, 6)[1:-1]:
            n = np.array([math.cos(a1 + f * gap), math.sin(a1 + f * gap)])
            centres.append(v + radius * n)
            normals.append(-n)
            points.append(v.copy())
    centres, normals, points = np.array(centres), np.array(normals), np.array(points)
    keep = _t_distance(rects, centres) >= radius - 1e-6
    return centres[keep], normals[keep], points[keep]


def _t_distance(rects: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance (M,) of body-frame points (M, 2) from the T (the union of its rectangles
    x0, y0, x1, y1); 0 inside."""
    p = points[:, None, :]
    gap = np.maximum(np.maximum(rects[None, :, :2] - p, p - rects[None, :, 2:]), 0.0)
    return np.min(np.hypot(gap[..., 0], gap[..., 1]), axis=1)


class PushTOperator(Operator):
    """Play pushes are straight strokes of the end-effector from a start point beside the T.

    The task is closed-loop pushing at chosen contact points, as a person does it: gym-pusht's
    T slides without friction (against the board and the end-effector) and stops as soon as it
    is not pushed (quasi-static), so pushing at a contact point with normal n moves its centre
    of gravity along n and turns it by the lever arm d of the push about the centre:
    per metre pushed, n / (1 + d^2/k) and d / (k + d^2) rad, with k = I/m of the T. Each step
    the operator picks, among the contact points round the T, the one that reduces the pose
    error (position and angle, weighted) the most per step spent (walking there round the T
    and pushing), walks there, pushes in by what that contact can still correct (less and
    slower as the remainder shrinks), backs off and picks again, until the T covers its goal.
    """

    # a person tries Push-T for a minute before giving up; measured (bench/auto_play_success.py)
    # the attempts that succeed take a median ~110 steps, 90 % within ~180, all within ~230
    TASK_STEPS = 300
    # gym-pusht's T in its body frame (m): the bar and the stem, and its centre of gravity
    T_POLYS = np.array(
        [
            [(-0.06, 0.0), (0.06, 0.0), (0.06, 0.03), (-0.06, 0.03)],
            [(-0.015, 0.03), (0.015, 0.03), (0.015, 0.12), (-0.015, 0.12)],
        ]
    ).reshape(-1, 2)
    T_RECTS = np.array([[-0.06, 0.0, 0.06, 0.03], [-0.015, 0.03, 0.015, 0.12]])  # x0 y0 x1 y1
    T_SHAPE = np.array(  # the outline of the union, corner by corner
        [
            (-0.06, 0.0),
            (0.06, 0.0),
            (0.06, 0.03),
            (0.015, 0.03),
            (0.015, 0.12),
            (-0.015, 0.12),
            (-0.015, 0.03),
            (-0.06, 0.03),
        ]
    )
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
    BOARD_INSIDE = (0.008, 0.503)  # m, the walls' inner faces (with 1 mm to spare)
    INERTIA = 0.003  # m^2, k = I/m of gym-pusht's T (moment 3000 units^2, mass 1)
    ANGLE_WEIGHT = (
        0.05  # m per rad in the pose error: 1 mm costs about as much coverage as 0.02 rad
    )
    STANDOFF = 0.008  # m, start a push this far out from its contact
    CLEAR = 0.1  # m, circle round the T's centre clear of it (its far corners: 77 mm + radius)
    WALK_STEP = 0.035  # m per step walking round the T (for the cost of a contact)
    PUSH_STEP = 0.004  # m per step pushing (for the cost of a contact)
    MIN_PUSH = 0.0005  # m, a remainder a push does not bother with

    def __init__(self, seed, task_prob, wander_prob, max_delta, low, high) -> None:
        super().__init__(seed, task_prob, wander_prob)
        self.max_delta, self.low, self.high = max_delta, np.asarray(low), np.asarray(high)
        self.start, self.end = np.zeros(2), np.zeros(2)
        self.failures = 0  # approaches in a row that did not reach their start
        self.target: np.ndarray | None = None  # where the arm is sent (the sum of the deltas)
        self.contacts = _t_contacts(self.T_RECTS, self.T_SHAPE, self.EE_RADIUS, 0.003)
        self.begin_task()

    def begin_task(self) -> None:
        self.tphase, self.contact, self.phase_steps = "pick", -1, 0  # pick | go | push | back
        self.banned = np.zeros(len(self.contacts[0]), int)  # steps a contact is not tried
        self.escape = False  # no contact helps (the T in a corner): a play stroke frees it
        self.away = np.zeros(2)  # the last push direction (backing off goes against it)

    def act(self, gt: dict) -> Act:
        ee, obj, goal = (np.asarray(gt[k], dtype=np.float64) for k in ("ee", "object", "goal"))
        success = bool(gt.get("success", False))
        centre = obj[:2] + rotation(obj[2]) @ self.T_CENTRE
        if self.target is None:
            self.target = ee.copy()
        # the arm's target may lag the end-effector by at most MAX_LAG (the table's rule)
        lag = float(np.hypot(*(self.target - ee)))
        if lag > 0.06:
            self.target = ee + (self.target - ee) * (0.06 / lag)
        milestone = self.success_step(success)
        if self.holding():  # stay: stop pushing, back off slowly away from the T
            away = self.away if np.hypot(*self.away) > 0 else unit(centre - ee)
            start = ee if milestone else self.target  # the arm no further than it is
            return self._send(start - 0.0015 * away), True, milestone
        if self.steps_left <= 0:
            self.next_mode(success)
            if self.mode == "wander":
                self.waypoint = self.rng.uniform(self.low + 0.03, self.high - 0.03)
        self.steps_left -= 1
        if self.mode == "task":
            return self._task(ee, centre, obj, goal), True, False
        if self.mode == "wander":
            if np.hypot(*(self.waypoint - ee)) < 0.01:
                self.steps_left = 0
            target, speed = self._around(ee, self.waypoint, centre, obj), 0.8
        else:
            target, speed = self._stroke(ee, centre, obj, goal)
        return self._lagging(ee, target, speed), False, False

    def _lagging(self, ee, target, speed) -> np.ndarray:
        """Play: a step towards `target` from where the end-effector is; the arm lags its
        target: full steps far away, softer ones close by against overshoot."""
        step = (target - ee) * (1.0 if np.hypot(*(target - ee)) > 0.06 else 0.7)
        n = float(np.hypot(*step))
        if n > speed * self.max_delta:
            step *= speed * self.max_delta / n
        step = np.clip(step, -self.max_delta, self.max_delta)
        self.target = np.clip(self.target + step, self.low, self.high)
        return step

    def _send(self, target: np.ndarray, speed: float | None = None) -> np.ndarray:
        """The delta that moves the arm's target to `target`, at most `speed` m per step."""
        step = np.clip(target, self.low, self.high) - self.target
        n = float(np.hypot(*step))
        limit = self.max_delta if speed is None else min(speed, self.max_delta)
        if n > limit:
            step *= limit / n
        step = np.clip(step, -self.max_delta, self.max_delta)
        self.target = np.clip(self.target + step, self.low, self.high)
        return step

    # --- the task: closed-loop pushes at chosen contact points ---------------------------
    def _task(self, ee, centre, obj, goal) -> np.ndarray:
        if self.escape:
            target, speed = self._stroke(ee, centre, obj, goal)
            if self.phase == "push":
                self.pushed = True
            elif self.pushed:  # that stroke is done: plan with contacts again
                self.escape = False
            return self._lagging(ee, target, speed)
        rot = rotation(obj[2])
        c_b, n_b, p_b = self.contacts
        c_w, n_w = obj[:2] + c_b @ rot.T, n_b @ rot.T
        s, gain, ok = self._pushes(obj, goal, rot, centre, p_b, n_w)
        self.banned = np.maximum(self.banned - 1, 0)
        self.phase_steps += 1
        i = self.contact
        if self.tphase == "push":
            # push on while this contact still corrects something worth it
            if s[i] < self.MIN_PUSH or not ok[i] or gain[i] < 0.2 * gain[ok].max(initial=0.0):
                self.tphase, self.phase_steps = "back", 0
            elif self.phase_steps > 40:  # stuck (e.g. the T against a wall): try another
                self.banned[i], self.tphase, self.phase_steps = 30, "back", 0
            else:
                depth = float(np.clip(0.5 * s[i], self.MIN_PUSH, 0.012))
                self.away = n_w[i]
                return self._send(c_w[i] + n_w[i] * depth, 0.02)
        if self.tphase == "back":
            if self.phase_steps <= 2:
                return self._send(c_w[i] - n_w[i] * self.STANDOFF, 0.01)
            self.tphase = "pick"
        starts = c_w - n_w * self.STANDOFF
        walk = self._walks(ee, centre, obj, rot, starts)
        rate = np.where(
            ok & (self.banned == 0), gain / (walk / self.WALK_STEP + 3 + s / self.PUSH_STEP), 0.0
        )
        best = int(np.argmax(rate))
        if rate[best] <= 0.0:  # nothing helps from any contact: free the T with a play stroke
            self.escape, self.pushed, self.tphase = True, False, "pick"
            self.approach_again()
            return self._send(self.target)
        if self.tphase != "go":
            self.tphase, self.phase_steps = "go", 0
            self.contact = i = best
        elif rate[best] > 1.5 * rate[i]:  # a much better one now (the T was bumped, ...)
            self.contact = i = best
        if self.phase_steps > 40:  # could not get there: try others, not those close by
            self.banned[np.hypot(*(starts - starts[i]).T) < 0.02] = 30
            self.tphase = "pick"
        start = starts[i]
        if np.hypot(*(start - ee)) < 0.002:
            self.tphase, self.phase_steps = "push", 0
        way = self._way(ee, centre, obj, rot, start)
        near = np.hypot(*(start - ee)) < 0.03
        return self._send(way, 0.012 if near else 0.9 * self.max_delta)

    def _pushes(self, obj, goal, rot, centre, p_b, n_w):
        """Per contact: how far to push (m), the reduction of the squared pose error that
        brings, and whether the push is possible (its start within reach, the T staying off
        the walls)."""
        k, w = self.INERTIA, self.ANGLE_WEIGHT
        goal_centre = goal[:2] + rotation(goal[2]) @ self.T_CENTRE
        error, turn = goal_centre - centre, wrap(goal[2] - obj[2])
        lever = (p_b - self.T_CENTRE) @ rot.T  # contact point from the centre, world frame
        d = lever[:, 0] * n_w[:, 1] - lever[:, 1] * n_w[:, 0]
        move = n_w / (1.0 + d**2 / k)[:, None]  # centre's motion per metre pushed
        spin = d / (k + d**2)  # rad per metre pushed
        num = move @ error + w**2 * turn * spin
        den = np.sum(move**2, axis=1) + w**2 * spin**2
        s = np.clip(num / den, 0.0, 0.08)
        s = np.minimum(s, 0.5 / np.maximum(np.abs(spin), 1e-9))  # turn at most 0.5 rad a push
        gain = 2.0 * s * num - s**2 * den
        # the T where the push would leave it (its outline's corners) stays on the board
        after = obj[2] + spin * s
        corners = self.T_SHAPE - self.T_CENTRE
        cos, sin = np.cos(after)[:, None], np.sin(after)[:, None]
        moved = centre + move * s[:, None]
        xs = moved[:, :1] + cos * corners[:, 0] - sin * corners[:, 1]
        ys = moved[:, 1:] + sin * corners[:, 0] + cos * corners[:, 1]
        lo, hi = self.BOARD_INSIDE
        on_board = np.all((xs > lo) & (xs < hi) & (ys > lo) & (ys < hi), axis=1)
        c_w = obj[:2] + self.contacts[0] @ rot.T
        starts = c_w - n_w * self.STANDOFF
        reach = np.all((starts >= self.low) & (starts <= self.high), axis=1)
        reach &= np.all((c_w >= self.low - 0.002) & (c_w <= self.high + 0.002), axis=1)
        ok = (gain > 0.0) & (s >= self.MIN_PUSH) & reach & on_board
        return s, gain, ok

    def _walks(self, ee, centre, obj, rot, starts) -> np.ndarray:
        """How far the end-effector walks to each start: straight where that path is clear of
        the T, else round it (see `_round`)."""
        clear = self._clear(ee, obj, rot, starts)
        return np.where(clear, np.hypot(*(starts - ee).T), self._round(ee, centre, starts)[0])

    def _round(self, ee, centre, starts) -> tuple[np.ndarray, np.ndarray]:
        """The way round the T to each start (M, 2): out to the circle round it, along it
        (the short way, or the long one where only that stays within the workspace) and in.
        Its length (m; 0.5 m more where neither way stays within it) and its angle (rad)."""
        here = math.atan2(*(ee - centre)[::-1])
        gap = np.angle(np.exp(1j * (np.arctan2(*(starts - centre).T[::-1]) - here)))
        ways = np.stack([gap, gap - np.copysign(2.0 * math.pi, gap)], axis=1)  # (M, 2)
        angles = here + ways[..., None] * np.linspace(0.0, 1.0, 9)[1:]
        points = centre + self.CLEAR * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
        inside = np.all((points >= self.low - 0.005) & (points <= self.high + 0.005), axis=(2, 3))
        r_e = float(np.hypot(*(ee - centre)))
        r_s = np.hypot(*(starts - centre).T)
        radial = max(0.0, self.CLEAR - r_e) + np.maximum(self.CLEAR - r_s, 0.0)
        length = radial[:, None] + self.CLEAR * np.abs(ways) + np.where(inside, 0.0, 0.5)
        k = np.argmin(length, axis=1)
        rows = np.arange(len(starts))
        return length[rows, k], ways[rows, k]

    def _clear(self, ee, obj, rot, ends) -> np.ndarray:
        """Whether the straight paths from `ee` to `ends` (M, 2) keep the end-effector off
        the T (the last bit, next to the end, is not checked: ends lie next to the T)."""
        f = np.linspace(0.0, 0.85, 10)
        path = ee + (ends[:, None, :] - ee) * f[None, :, None]  # (M, 10, 2)
        body = (path.reshape(-1, 2) - obj[:2]) @ rot
        dist = _t_distance(self.T_RECTS, body).reshape(len(ends), -1)
        return np.all(dist > self.EE_RADIUS + 0.0005, axis=1)

    def _way(self, ee, centre, obj, rot, start) -> np.ndarray:
        """The next point on the way to `start`: straight where clear, else out to the circle
        round the T (the T with the end-effector round it is star-shaped about its centre:
        radial paths never touch it), along the circle, and in."""
        if self._clear(ee, obj, rot, start[None])[0]:
            return start
        r_e = float(np.hypot(*(ee - centre)))
        here = math.atan2(*(ee - centre)[::-1])
        if r_e < self.CLEAR - 0.01:
            return centre + unit(ee - centre) * self.CLEAR
        way = float(self._round(ee, centre, start[None])[1][0])
        step = float(np.clip(way, -0.5, 0.5))
        return centre + self.CLEAR * np.array([math.cos(here + step), math.sin(here + step)])

    # --- play: straight strokes ----------------------------------------------------------
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
                if self.mode == "play":  # (the task plans anew, intent on)
                    self.mode, self.steps_left = "wander", 5
                    self.waypoint = ee + 0.5 * (self.BOARD_CENTRE - ee)
                    self.waypoint += self.rng.normal(0, 0.03, 2)
                return ee, 0.0
            elif self.phase == "align":
                return self.start, 0.6
            else:
                return self._around(ee, behind, centre, obj), 1.0
        return self.end, self.speed

    def _around(self, ee, target, centre, obj) -> np.ndarray:
        """`target`, or a waypoint that keeps the end-effector clear of the T."""
        clear = float(np.max(np.hypot(*(self.T_POLYS - self.T_CENTRE).T))) + self.EE_RADIUS + 0.01
        return np.clip(detour(ee, target, centre, clear), self.low, self.high)

    def _touch_start(self, centre, obj, d, offset: float = 0.0) -> np.ndarray:
        """Where to start a stroke along `d` passing `offset` beside the T's centre: 1 cm
        before the end-effector would first touch the T."""
        points = (self.T_OUTLINE - self.T_CENTRE) @ rotation(obj[2]).T
        lateral = points @ perp(d) - offset
        near = np.abs(lateral) < self.EE_RADIUS
        if not near.any():  # the stroke misses the T: start beside its centre
            return centre + perp(d) * offset - d * 0.02
        reach = np.max(-(points[near] @ d) + np.sqrt(self.EE_RADIUS**2 - lateral[near] ** 2))
        return centre + perp(d) * offset - d * (reach + 0.01)

    def _plan(self, ee, centre, obj, goal) -> None:
        """The next stroke: a random push, kept central; for the task (no contact helps: the
        T by a wall or in a corner) one that frees it towards the middle."""
        rng, inward = self.rng, unit(self.BOARD_CENTRE - centre)
        strokes = []
        speed = float(rng.uniform(0.3, 0.8)) if self.mode != "task" else 0.5
        random_strokes = []
        for _ in range(30 if self.mode != "task" else 0):
            d = unit(rng.normal(size=2))
            if self.mode == "play" and np.any(abs(centre + 0.15 * d - self.BOARD_CENTRE) > 0.16):
                continue  # playing: keep the T in the middle, away from walls and corners
            start = self._touch_start(centre, obj, d, rng.uniform(-0.03, 0.03))
            random_strokes.append((start, start + d * (0.01 + rng.uniform(0.06, 0.16))))
        if self.mode == "play":  # mostly from a side close by: less walking round, more pushing
            random_strokes.sort(key=lambda st: np.hypot(*(st[0] - ee)) + rng.uniform(0.0, 0.15))
        strokes += random_strokes
        # by a wall or in a corner: slide it along the wall or out of the corner
        compass = [rotation(k * math.pi / 8) @ np.array([1.0, 0.0]) for k in rng.permutation(16)]
        for d in sorted(compass, key=lambda d: -float(np.dot(d, inward))):
            start = self._touch_start(centre, obj, d)
            strokes.append((start, start + d * 0.08))
        near_wall = np.abs(centre - self.BOARD_CENTRE) > 0.15
        skip = self.failures  # strokes whose start could not be reached are tried last
        for start, end in strokes[skip:] + strokes[:skip]:
            d = unit(end - start)
            into_wall = near_wall & (d * np.sign(centre - self.BOARD_CENTRE) > 0.3)
            if np.all(start >= self.low) and np.all(start <= self.high) and not into_wall.any():
                break
        else:  # wedged in a corner: poke it from wherever the workspace allows
            start = self._touch_start(centre, obj, inward) + rng.uniform(-0.03, 0.03, size=2)
            start = np.clip(start, self.low, self.high)
            end = start + unit(centre - start) * 0.06
        self.start, self.end = start, np.clip(end, self.low, self.high)
        self.direction, self.speed = unit(end - start), speed
