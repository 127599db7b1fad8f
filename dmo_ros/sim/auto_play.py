"""A scripted tele-operator for play data, working only from ground-truth poses.

It behaves like a person playing with the scene: it wanders, walks up to the object, pushes
it from varied sides and now and then does the task (pushes the T / the cube towards the goal)
with the intent label on. Modes are drawn at random (seeded); each lasts a random number of
control steps. It knows the scene the way a person does (the T's shape, the gate's opening),
and sees nothing but what the auto_play node gets: the poses, `success` and (Push-T)
`coverage` in the ground-truth dict.

A task attempt (intent on) lasts until success or until the operator gives up (a budget of
control steps, as a person tries for a while). On success the operator presses the milestone
once, at the success step, stops pushing and backs off slowly for HOLD_STEPS steps (intent
still on: the result is part of the task), then ends the attempt. No attempt starts while the
scene is at success already (a person first plays it out of the goal).
"""

from __future__ import annotations

import math
from typing import NamedTuple

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


class Act(NamedTuple):
    """What the operator does in one control step."""

    action: np.ndarray  # physical units (end-effector delta / body velocity)
    intent: bool  # the intent label (task attempt under way)
    milestone: bool  # pressed once, at the step an attempt's success is seen


HOLD_STEPS = 6  # after success: stay (backing off slowly) 1.2 s, intent on, then end the attempt


class _Operator:
    """Mode bookkeeping shared by both robots: wander | play (push anywhere) | task."""

    # give-up budget of a task attempt (control steps): 30 s; for the Go2 measured, the attempts
    # that succeed take a median ~45 steps, all within ~75
    TASK_STEPS = 150

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
        self.hold_left = 0  # steps still to stay after a success
        self.attempts = self.successes = 0

    def approach_again(self) -> None:
        self.phase, self.planned = "approach", False

    def next_mode(self, success: bool = False) -> None:
        r, u = self.schedule.random(), self.schedule.random()
        if r < self.task_prob and not success:  # at success already: play it out first
            self.mode, self.steps_left = "task", self.TASK_STEPS
            self.attempts += 1
            self.begin_task()
        elif r < self.task_prob + self.wander_prob:
            self.mode, self.steps_left = "wander", 6 + int(u * 10)
        else:
            self.mode, self.steps_left = "play", 20 + int(u * 25)
        self.approach_again()

    def begin_task(self) -> None:
        """A new task attempt starts (robot-specific state)."""

    def success_step(self, success: bool) -> bool:
        """Bookkeeping of a success in task mode; True at the step the milestone is pressed."""
        if self.mode != "task" or self.hold_left > 0 or not success:
            return False
        self.hold_left, self.successes = HOLD_STEPS, self.successes + 1
        return True

    def holding(self) -> bool:
        """Whether this step is one of staying after a success (counts it); the attempt ends
        after the last."""
        if self.hold_left <= 0:
            return False
        self.hold_left -= 1
        if self.hold_left == 0:  # the attempt is over: a new activity at the next step
            self.mode, self.steps_left = "done", 0
        return True


def _t_contacts(rects: np.ndarray, outline: np.ndarray, radius: float, spacing: float):
    """Where a round end-effector of `radius` can touch the T, in the T's body frame: the
    end-effector's centre (M, 2), the push direction there (the contact normal into the T,
    M x 2) and the contact point (M, 2). Along each edge every `spacing` m, and a fan of
    normals round each convex corner; none where the end-effector would touch two edges."""
    centres, normals, points = [], [], []
    n_out = []
    for a, b in zip(outline, np.roll(outline, -1, axis=0)):
        n = _unit(_perp(b - a))
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
            _wrap(math.atan2(n2[1], n2[0]) - math.atan2(n1[1], n1[0])),
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


class _PushTOperator(_Operator):
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
        centre = obj[:2] + _rot(obj[2]) @ self.T_CENTRE
        if self.target is None:
            self.target = ee.copy()
        # the arm's target may lag the end-effector by at most MAX_LAG (the table's rule)
        lag = float(np.hypot(*(self.target - ee)))
        if lag > 0.06:
            self.target = ee + (self.target - ee) * (0.06 / lag)
        milestone = self.success_step(success)
        if self.holding():  # stay: stop pushing, back off slowly away from the T
            away = self.away if np.hypot(*self.away) > 0 else _unit(centre - ee)
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
        rot = _rot(obj[2])
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
        goal_centre = goal[:2] + _rot(goal[2]) @ self.T_CENTRE
        error, turn = goal_centre - centre, _wrap(goal[2] - obj[2])
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
            return centre + _unit(ee - centre) * self.CLEAR
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

    def _plan(self, ee, centre, obj, goal) -> None:
        """The next stroke: a random push, kept central; for the task (no contact helps: the
        T by a wall or in a corner) one that frees it towards the middle."""
        rng, inward = self.rng, _unit(self.BOARD_CENTRE - centre)
        strokes = []
        speed = float(rng.uniform(0.3, 0.8)) if self.mode != "task" else 0.5
        random_strokes = []
        for _ in range(30 if self.mode != "task" else 0):
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

    def act(self, gt: dict) -> Act:
        """The next action (physical units), the intent label and the milestone press, from
        what the auto_play node gets: pusht "ee", "object", "goal"; go2 "base", "cube",
        "goal"; both "success" (task/success; False when absent) and pusht "coverage"
        (optional). A success in a task attempt presses the milestone (that step only) and
        ends the attempt after HOLD_STEPS steps of staying."""
        action, intent, milestone = self._op.act(gt)
        return Act(np.asarray(action, dtype=np.float32), bool(intent), bool(milestone))

    @property
    def attempts(self) -> int:
        """Task attempts started so far."""
        return self._op.attempts

    @property
    def successes(self) -> int:
        """Task attempts that reached success (milestones pressed)."""
        return self._op.successes
