"""Play-data bags -> sequences aligned on the 5 Hz control steps.

One step per message on the task's action topic (at its log time t):
* frame: the latest camera image logged at or before t (the observation the
  command was issued on), resized to task.image_size with INTER_AREA;
* action: the command in [-1, 1] (task.normalize);
* intent: the latest `intent` Bool at or before t (False before the first);
* milestone: a `milestone` message logged after the previous step, up to t;
* coverage, success, object_pose: the simulated drivers' ground truth (`task/coverage`,
  `task/success`, `task/object_pose`: the latest message at or before t, as intent; NaN,
  False, NaN where the bag has none). Evaluation only (the rewards' figures, the fidelity
  of world models): never a training input or target;
* segment: a new one starts after a gap (> 2.5 control periods between
  commands, or a camera frame older than that), at a `reset` event and at
  the start of each bag. The simulated drivers publish the event (std_msgs/Header,
  any type is accepted) stamped at the new scene's first step, which then starts
  the new segment: the old scene's last step, whose next frame is the new scene,
  ends the old one, so no window (windows.py) spans the teleport. The split
  files of one bag are one continuous recording: only a time gap cuts them.

Task segments (`task_segments`): the intent spans, (start, end, succeeded), for the rewards
to sample from.

Cache: per bag and task settings, memory-mapped .npy arrays in
`<bag>/../.dmo_cache/<bag name>-<key>/` (`~/.cache/dmo_ros/` when that folder is
read-only; `<cache_dir>/` when given), never inside the bag folder. It is rebuilt
when any of the bag's files changes size or mtime, and written to a temp folder
renamed into place, so parallel readers (DDP ranks) never see a half-written cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field, replace
from operator import attrgetter
from pathlib import Path

import cv2
import numpy as np

from dmo_ros.data.bag_reader import Bag, open_bag
from dmo_ros.data.images import image_to_array
from dmo_ros.errors import UserError
from dmo_ros.task import TaskConfig, robot_name

CACHE_VERSION = 2  # 2: coverage, success, object_pose
RESET_TOPIC = "reset"
COVERAGE_TOPIC, SUCCESS_TOPIC, OBJECT_TOPIC = "task/coverage", "task/success", "task/object_pose"
GAP_PERIODS = 2.5
MILESTONE_GRACE = 3  # steps after an intent span whose milestone still counts for it (0.6 s)
ACTION_FIELDS = {  # action message type -> fields, in the order of the task's action_names
    "geometry_msgs/msg/PoseStamped": ("pose.position.x", "pose.position.y", "pose.position.z"),
    "geometry_msgs/msg/TwistStamped": ("twist.linear.x", "twist.linear.y", "twist.angular.z"),
}
_ARRAYS = ("t_ns", "actions", "intent", "milestone", "segment", "coverage", "success")
_ARRAYS += ("object_pose",)


@dataclass(frozen=True)
class TaskSegment:
    """One task attempt (intent span) of a sequence: steps [start, end), end exclusive."""

    start: int
    end: int
    succeeded: bool


@dataclass
class PlaySequence:
    """One bag's control steps; `frames` is memory-mapped from the cache.

    `coverage`, `success` and `object_pose` are the simulator's ground truth at each step's
    frame (see the module docstring): for evaluation only, never for training. Left out when
    building a sequence by hand, they are NaN / False / NaN."""

    bag: str
    t_ns: np.ndarray  # int64 [N]
    frames: np.ndarray  # uint8 [N, H, W, 3]
    actions: np.ndarray  # float32 [N, A] in [-1, 1]; actions[t] issued after seeing frames[t]
    intent: np.ndarray  # bool [N]
    milestone: np.ndarray  # bool [N]
    segment: np.ndarray  # int32 [N]
    frames_file: str | None = field(default=None, repr=False)  # the .npy behind `frames`
    frames_start: int = field(default=0, repr=False)
    coverage: np.ndarray | None = field(default=None, repr=False)  # float32 [N], goal coverage
    success: np.ndarray | None = field(default=None, repr=False)  # bool [N], task/success
    object_pose: np.ndarray | None = field(default=None, repr=False)  # float32 [N, 3] x, y, yaw

    def __post_init__(self) -> None:
        n = len(self.t_ns)
        if self.coverage is None:
            self.coverage = np.full(n, np.nan, np.float32)
        if self.success is None:
            self.success = np.zeros(n, bool)
        if self.object_pose is None:
            self.object_pose = np.full((n, 3), np.nan, np.float32)

    def __len__(self) -> int:
        return len(self.t_ns)

    def slice(self, start: int, stop: int) -> PlaySequence:
        """Steps [start, stop) as a sequence of their own (frames stay memory-mapped)."""
        s = slice(start, stop)
        return replace(
            self,
            t_ns=self.t_ns[s],
            frames=self.frames[s],
            actions=self.actions[s],
            intent=self.intent[s],
            milestone=self.milestone[s],
            segment=self.segment[s],
            coverage=self.coverage[s],
            success=self.success[s],
            object_pose=self.object_pose[s],
            frames_start=self.frames_start + start,
        )

    # Pickled (DataLoader workers, spawn) as a reference to the cache file, not the pixels.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.frames_file is not None:
            state["frames"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.frames is None:
            a = self.frames_start
            self.frames = np.load(self.frames_file, mmap_mode="r")[a : a + len(self.t_ns)]


def _is_bag(p: Path) -> bool:
    return p.suffix == ".mcap" or (p / "metadata.yaml").exists() or any(p.glob("*.mcap"))


def find_bags(paths) -> list[Path]:
    """Bag folders from paths that are bags or folders of bags (e.g. `rosbags/`)."""
    out: list[Path] = []
    for p in [paths] if isinstance(paths, str | os.PathLike) else paths:
        p = Path(p)
        if not p.exists():
            raise UserError(f"{p}: no such bag")
        if _is_bag(p):
            out.append(p)
            continue
        inner = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
        inner = [d for d in inner if _is_bag(d)]
        if not inner:
            raise UserError(f"{p}: not a bag and holds no bag folder")
        out.extend(inner)
    return out


def split_bags(bags, val_fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Train/validation split by bag (seeded). With a single bag the validation list is empty:
    use `split_sequences`, which then splits that bag in time."""
    bags = list(bags)
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if len(bags) < 2 or val_fraction == 0.0:
        return bags, []
    n_val = min(len(bags) - 1, max(1, round(val_fraction * len(bags))))
    order = sorted(range(len(bags)), key=lambda i: str(bags[i]))
    val = set(np.random.default_rng(seed).permutation(order)[:n_val].tolist())
    return [b for i, b in enumerate(bags) if i not in val], [
        b for i, b in enumerate(bags) if i in val
    ]


def split_sequences(
    sequences: list[PlaySequence], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[PlaySequence], list[PlaySequence]]:
    """Split loaded sequences by bag; a single bag is cut in time instead, at the segment
    boundary nearest to (1 - val_fraction) of its steps (or exactly there when none is near)."""
    if len(sequences) != 1 or val_fraction == 0.0:
        train, val = split_bags([s.bag for s in sequences], val_fraction, seed)
        return [s for s in sequences if s.bag in train], [s for s in sequences if s.bag in val]
    seq = sequences[0]
    n = len(seq)
    target = round(n * (1.0 - val_fraction))
    starts = np.flatnonzero(np.diff(seq.segment)) + 1
    near = starts[np.abs(starts - target) <= 0.1 * n]
    cut = int(near[np.argmin(np.abs(near - target))]) if len(near) else target
    cut = min(max(cut, 1), n - 1) if n >= 2 else n
    return [seq.slice(0, cut)], ([seq.slice(cut, n)] if cut < n else [])


def load_play_data(bags, task: TaskConfig, cache_dir=None) -> list[PlaySequence]:
    """One PlaySequence per bag (cached; see the module docstring)."""
    return [_load(b, task, cache_dir) for b in find_bags(bags)]


def _task_key(task: TaskConfig) -> str:
    fields = {
        k: getattr(task, k)
        for k in (
            "robot",
            "image_size",
            "control_period",
            "action_topic",
            "action_type",
            "action_low",
            "action_high",
            "image_topic",
            "intent_topic",
            "milestone_topic",
        )
    }
    text = json.dumps({**fields, "v": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _fingerprint(bag: Path) -> list:
    files = [bag] if bag.is_file() else sorted([*bag.glob("*.mcap"), bag / "metadata.yaml"])
    return [[f.name, st.st_size, st.st_mtime_ns] for f in files if f.exists() for st in [f.stat()]]


def _cache_dirs(bag: Path, task: TaskConfig, cache_dir) -> list[Path]:
    """Where this bag's cache may live, first choice first."""
    name = bag.stem if bag.is_file() else bag.name
    where = hashlib.sha1(str(bag.absolute()).encode()).hexdigest()[:8]
    key = _task_key(task)
    if cache_dir is not None:
        return [Path(cache_dir) / f"{name}-{where}-{key}"]
    return [
        bag.absolute().parent / ".dmo_cache" / f"{name}-{key}",
        Path.home() / ".cache" / "dmo_ros" / f"{name}-{where}-{key}",  # read-only bag folder
    ]


def _open_cache(d: Path, fingerprint: list) -> PlaySequence | None:
    try:
        meta = json.loads((d / "meta.json").read_text())
        if meta["fingerprint"] != fingerprint or meta["version"] != CACHE_VERSION:
            return None
        n = int(meta["n"])
        arrays = {k: np.load(d / f"{k}.npy") for k in _ARRAYS}
        frames_file = str(d / "frames.npy")
        frames = np.load(frames_file, mmap_mode="r")[:n]
    except (OSError, ValueError, KeyError):
        return None
    return PlaySequence(meta["bag"], frames=frames, frames_file=frames_file, **arrays)


def _load(bag: Path, task: TaskConfig, cache_dir) -> PlaySequence:
    fingerprint = _fingerprint(bag)
    choices = _cache_dirs(bag, task, cache_dir)
    for d in choices:
        if (seq := _open_cache(d, fingerprint)) is not None:
            return seq
    b = open_bag(bag)
    for d in choices:
        tmp = d.parent / f".{d.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            break
        except OSError as exc:
            problem = f"{d.parent}: cannot write the dataset cache: {exc.strerror}"
    else:
        raise UserError(problem)
    try:
        n = _build(b, task, tmp)
        meta = {"version": CACHE_VERSION, "fingerprint": fingerprint, "n": n, "bag": str(bag)}
        (tmp / "meta.json").write_text(json.dumps(meta))  # last: marks the cache complete
        if _open_cache(d, fingerprint) is None:  # else a parallel reader (DDP rank) won
            shutil.rmtree(d, ignore_errors=True)  # stale: the bag changed
            with contextlib.suppress(OSError):  # lost the race to rename: use theirs
                tmp.rename(d)
    except OSError as exc:  # disk full while writing the cache
        raise UserError(f"{d.parent}: cannot write the dataset cache: {exc.strerror}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seq = _open_cache(d, fingerprint)
    if seq is None:
        raise UserError(f"{d}: the dataset cache could not be read back")
    return seq


def _check_robot(b: Bag, task: TaskConfig) -> None:
    recorded = b.metadata.get("dmo_ros.robot")
    if recorded is not None:
        try:
            robot = robot_name(recorded)
        except UserError:
            raise UserError(f"{b.path}: recorded for unknown robot '{recorded}'") from None
        if robot != task.robot:
            raise UserError(
                f"{b.path}: recorded with robot '{recorded}', task '{task.name}' is for "
                f"'{task.robot}'"
            )
    topic = b.find_topic(task.action_topic)
    if topic is None:
        raise UserError(
            f"{b.path}: no action topic '{task.action_topic}' ({task.action_type}) of task "
            f"'{task.name}' (recorded for another robot?)"
        )
    if b.topics[topic][0] != task.action_type:
        raise UserError(
            f"{b.path}: action topic {topic} is {b.topics[topic][0]}, task '{task.name}' "
            f"expects {task.action_type}"
        )


def _build(b: Bag, task: TaskConfig, out_dir: Path) -> int:
    """Stream the bag once and write the cache arrays into `out_dir`; returns the step count."""
    _check_robot(b, task)
    act = b.require_topic(task.action_topic)
    cam = b.require_topic(task.image_topic, "sensor_msgs/msg/Image")
    intent_topic = b.find_topic(task.intent_topic, "std_msgs/msg/Bool")
    milestone_topic = b.find_topic(task.milestone_topic)
    reset_topic = b.find_topic(RESET_TOPIC)
    truth_topics = {
        "coverage": b.find_topic(COVERAGE_TOPIC, "std_msgs/msg/Float32"),
        "success": b.find_topic(SUCCESS_TOPIC, "std_msgs/msg/Bool"),
        "object_pose": b.find_topic(OBJECT_TOPIC, "geometry_msgs/msg/PoseStamped"),
    }
    truth_of = {topic: name for name, topic in truth_topics.items() if topic}
    truths: dict[str, list] = {name: [] for name in truth_topics}  # (t, value) per topic
    fields = ACTION_FIELDS.get(task.action_type)
    if fields is None or task.action_dim > len(fields):
        raise UserError(f"task '{task.name}': action type {task.action_type} is not supported")
    getters = [attrgetter(f) for f in fields[: task.action_dim]]
    t_act = b.timestamps(act)
    if len(t_act) >= 3 and np.median(np.diff(t_act)) < 0.5 * task.control_period * 1e9:
        rate = 1e9 / max(1.0, float(np.median(np.diff(t_act))))
        raise UserError(
            f"{b.path}: {act} runs at {rate:.0f} Hz: expected one command per "
            f"{task.control_period} s control step"
        )
    size = task.image_size
    frames = np.lib.format.open_memmap(
        out_dir / "frames.npy", mode="w+", dtype=np.uint8, shape=(max(1, len(t_act)), size, size, 3)
    )
    max_gap = int(GAP_PERIODS * task.control_period * 1e9)
    steps_t: list[int] = []
    steps_a: list[list[float]] = []
    kept: list[bool] = []
    intents: list[tuple[int, bool]] = []
    milestones: list[int] = []
    resets: list[int] = []
    latest: tuple[int, bytes] | None = None  # the newest camera frame, not decoded yet
    latest_row = -1  # where the newest frame was written, once a step used it
    pending: list[int] = []  # steps waiting for frames logged at their own time
    n = 0

    def settle() -> None:  # give the pending steps the newest frame (or drop them: stale/none)
        nonlocal n, latest_row
        for k in pending:
            ok = latest is not None and steps_t[k] - latest[0] <= max_gap
            kept.append(ok)
            if not ok:
                continue
            if latest_row < 0:
                frames[n] = _frame(b, cam, latest[1], size)
                latest_row = n
            else:
                frames[n] = frames[latest_row]
            n += 1
        pending.clear()

    wanted = [t for t in (act, cam, intent_topic, milestone_topic, reset_topic) if t]
    wanted += list(truth_of)
    for topic, t, data in b.messages(wanted):
        if pending and t > steps_t[pending[0]]:  # every frame up to the steps' time is in
            settle()
        if topic == cam:  # a frame logged at a pending step's own time is its observation
            latest, latest_row = (t, data), -1
        elif topic == act:
            msg = b.decode(topic, data)
            a = [float(g(msg)) for g in getters]
            if not np.all(np.isfinite(a)):
                raise UserError(f"{b.path}: {act}: non-finite command {a} at t={t} ns")
            steps_t.append(t)
            steps_a.append(a)
            pending.append(len(steps_t) - 1)
        elif topic == intent_topic:
            intents.append((t, bool(b.decode(topic, data).data)))
        elif topic == milestone_topic:
            milestones.append(t)
        elif topic in truth_of:
            truths[truth_of[topic]].append((t, _truth(b.decode(topic, data))))
        else:
            resets.append(t)
    settle()
    if n == 0:
        raise UserError(f"{b.path}: no control step on {act} has a camera frame on {cam}")
    frames.flush()

    t_all = np.asarray(steps_t, np.int64)
    keep = np.asarray(kept, bool)
    boundary = np.ones(len(t_all), bool)
    boundary[1:] = (np.diff(t_all) > max_gap) | ~keep[:-1]
    t = t_all[keep]
    boundary = boundary[keep]
    r = np.searchsorted(np.asarray(resets, np.int64), t, side="right")  # resets at or before t
    boundary[1:] |= np.diff(r) > 0
    m = np.searchsorted(np.asarray(milestones, np.int64), t, side="right")
    milestone = np.diff(np.concatenate([[0], m])) > 0
    arrays = {
        "t_ns": t,
        "actions": task.normalize(np.asarray(steps_a, np.float64)[keep]).astype(np.float32),
        "intent": _latest(intents, t, False, bool),
        "milestone": milestone,
        "segment": (np.cumsum(boundary) - 1).astype(np.int32),
        "coverage": _latest(truths["coverage"], t, np.nan, np.float32),
        "success": _latest(truths["success"], t, False, bool),
        "object_pose": _latest(truths["object_pose"], t, [np.nan] * 3, np.float32),
    }
    for k, v in arrays.items():
        np.save(out_dir / f"{k}.npy", v)
    return n


def _latest(events: list[tuple[int, object]], t: np.ndarray, before, dtype) -> np.ndarray:
    """Per step time in `t`, the value of the latest (time, value) event at or before it;
    `before` for steps before the first event (events in log order)."""
    times = np.asarray([e[0] for e in events], np.int64)
    values = np.asarray([before] + [e[1] for e in events], dtype)
    return values[np.searchsorted(times, t, side="right")]


def _truth(msg) -> object:
    """A ground-truth message's value: Float32 / Bool data, a pose's (x, y, yaw)."""
    if not hasattr(msg, "pose"):
        return msg.data
    p, q = msg.pose.position, msg.pose.orientation
    yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
    return (p.x, p.y, yaw)


def task_segments(seq: PlaySequence) -> list[TaskSegment]:
    """The task attempts of a sequence: maximal runs of intent within one segment.

    A run [start, end) succeeded when
    * a milestone falls on one of its steps, or on one of the MILESTONE_GRACE steps after it
      (a person may press it just after letting go of the intent button) that is still in
      its segment and before the next run starts; the auto-play operator presses it at the
      success step, inside the run; or
    * the ground truth `success` (task/success, sim bags; all False where the bag has none)
      is True at one of its steps.
    """
    intent, segment = np.asarray(seq.intent, bool), np.asarray(seq.segment)
    milestone, success = np.asarray(seq.milestone, bool), np.asarray(seq.success, bool)
    n = len(intent)
    if n == 0:
        return []
    # a run starts where intent turns on or a new segment begins with intent on
    new_run = intent & np.r_[True, ~intent[:-1] | (segment[1:] != segment[:-1])]
    ends_here = intent & np.r_[~intent[1:] | (segment[1:] != segment[:-1]), True]
    starts, ends = np.flatnonzero(new_run), np.flatnonzero(ends_here) + 1
    out = []
    for k, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        limit = min(b + MILESTONE_GRACE, n)
        if k + 1 < len(starts):
            limit = min(limit, int(starts[k + 1]))
        after = np.arange(b, limit)
        after = after[segment[after] == segment[a]]
        won = bool(milestone[a:b].any() or milestone[after].any() or success[a:b].any())
        out.append(TaskSegment(a, b, won))
    return out


def _frame(b: Bag, topic: str, data: bytes, size: int) -> np.ndarray:
    try:
        rgb = image_to_array(b.decode(topic, data))
    except UserError as exc:
        raise UserError(f"{b.path}: {topic}: {exc}") from None
    if rgb.shape[:2] != (size, size):
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb
