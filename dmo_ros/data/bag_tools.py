"""`dmo-ros bag info BAG`, `dmo-ros bag video BAG --out x.mp4`, `dmo-ros bag repair BAG`."""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from dmo_ros.data.bag_reader import Bag, open_bag
from dmo_ros.data.images import image_to_array
from dmo_ros.data.play_data import MILESTONE_GRACE
from dmo_ros.errors import UserError

IMAGE = "sensor_msgs/msg/Image"
BOOL = "std_msgs/msg/Bool"
GAP_S = 1.0  # camera silences longer than this are reported
SUCCESS_TOPIC = "task/success"
# a milestone up to MILESTONE_GRACE control steps (0.2 s) after an intent span counts for it
GRACE_NS = MILESTONE_GRACE * 200_000_000
MIN_VIDEO_SIDE = 240  # small frames (64x64 sims) are scaled up so the label stays legible


def camera_topic(bag: Bag, topic: str | None = None, required: bool = True) -> str | None:
    """The image topic to show: `topic`, else the only Image topic, else camera/image_raw."""
    if topic:
        return bag.require_topic(topic, IMAGE)
    images = sorted(t for t, (msgtype, _) in bag.topics.items() if msgtype == IMAGE)
    if len(images) == 1:
        return images[0]
    if preferred := bag.find_topic("camera/image_raw", IMAGE):
        return preferred
    if not required:
        return images[0] if images else None
    if not images:
        raise UserError(f"{bag.path}: no {IMAGE} topic")
    raise UserError(
        f"{bag.path}: several image topics ({', '.join(images)}): pick one with --topic"
    )


def _bool_events(bag: Bag, topic: str) -> list[tuple[int, bool]]:
    return [(t, bool(bag.decode(topic, d).data)) for _, t, d in bag.messages([topic])]


def intent_ratio(bag: Bag, topic: str, events=None) -> tuple[float, int]:
    """Fraction of the bag's time span with intent on, and how often it was turned on."""
    events = _bool_events(bag, topic) if events is None else events
    span = max(1, bag.end_ns - bag.start_ns)
    on_ns, switches, prev = 0, 0, False
    for (t, v), nxt in zip(events, [*[e[0] for e in events[1:]], bag.end_ns]):
        if v:
            on_ns += max(0, nxt - max(t, bag.start_ns))
        switches += v and not prev
        prev = v
    return on_ns / span, switches


def task_attempts(bag: Bag, intent_events: list[tuple[int, bool]]) -> dict:
    """The task attempts (intent spans: from turning intent on to turning it off, or the bag's
    end) and which succeeded: by `task/success` (a True message within the span) where the
    bag has it (the simulators' ground truth), and by `milestone` (a press within the span
    or up to MILESTONE_GRACE control steps after it, before the next span: as the dataset's
    task_segments). Returns {"attempts", "by_success" (None without task/success),
    "by_milestone" (None without a milestone topic)}."""
    spans, on_at = [], None
    for t, v in intent_events:
        if v and on_at is None:
            on_at = t
        elif not v and on_at is not None:
            spans.append((on_at, t))
            on_at = None
    if on_at is not None:
        spans.append((on_at, bag.end_ns + 1))
    starts = np.array([a for a, _ in spans], np.int64)
    ends = np.array([b for _, b in spans], np.int64)
    out: dict = {"attempts": len(spans), "by_success": None, "by_milestone": None}
    if success := bag.find_topic(SUCCESS_TOPIC, BOOL):
        hits = np.array([t for t, v in _bool_events(bag, success) if v], np.int64)
        out["by_success"] = _spans_hit(hits, starts, ends)
    if milestone := bag.find_topic("milestone"):
        following = np.r_[starts[1:], np.iinfo(np.int64).max]
        limit = np.maximum(ends, np.minimum(ends + GRACE_NS, following))
        out["by_milestone"] = _spans_hit(bag.timestamps(milestone), starts, limit)
    return out


def _spans_hit(times: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> int:
    """How many spans [start, end) hold at least one of the sorted `times`."""
    if not len(times):
        return 0
    first = np.searchsorted(times, starts, side="left")  # the first time at or after the start
    return int(np.sum((first < len(times)) & (times[np.minimum(first, len(times) - 1)] < ends)))


def camera_gaps(times: np.ndarray, gap_s: float = GAP_S) -> list[tuple[int, float]]:
    """(time, length in s) of each silence longer than `gap_s` between camera frames."""
    d = np.diff(times) / 1e9
    return [(int(times[i]), float(d[i])) for i in np.flatnonzero(d > gap_s)]


def _attempts_line(a: dict) -> str:
    n = a["attempts"]
    line = f"{n} attempts (intent spans)"
    if a["by_success"] is not None:
        source, won = "task/success", a["by_success"]
        if a["by_milestone"] is not None:
            source += f"; {a['by_milestone']} with a milestone"
    elif a["by_milestone"] is not None:
        source, won = "milestone (no task/success)", a["by_milestone"]
    else:
        return line + ", success unknown (no task/success, no milestone topic)"
    rate = f" ({won / n:.0%})" if n else ""
    return f"{line}, {won} succeeded{rate} by {source}"


def _when(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / 1e9, UTC).isoformat(timespec="milliseconds")


def info(args: argparse.Namespace) -> int:
    bag = open_bag(args.bag)
    size = sum(f.stat().st_size for f in bag.files)
    duration = (bag.end_ns - bag.start_ns) / 1e9
    print(f"bag:       {bag.path}  ({len(bag.files)} file(s), {size / 1e6:.1f} MB)")
    for note in bag.recovered:
        print(f"recovered: {note}")
    if bag.recovered and bag.path.is_dir():
        print(
            f"repair:    run `dmo-ros bag repair {bag.path}` so that ros2 bag, Foxglove and "
            "rosbags open it too"
        )
    print(f"start:     {_when(bag.start_ns)}")
    print(f"end:       {_when(bag.end_ns)}")
    print(f"duration:  {duration:.2f} s")
    print(f"messages:  {bag.message_count}")
    print("topics:")
    width = max(len(t) for t in bag.topics)
    for topic, (msgtype, count) in sorted(bag.topics.items()):
        times = bag.timestamps(topic)
        span = (times[-1] - times[0]) / 1e9 if len(times) > 1 else 0.0
        rate = f"{(len(times) - 1) / span:8.2f} Hz" if span > 0 else "       - Hz"
        print(f"  {topic:<{width}}  {msgtype:<32} {count:>8}  {rate}")
    if intent := bag.find_topic("intent", BOOL):
        events = _bool_events(bag, intent)
        ratio, switches = intent_ratio(bag, intent, events)
        print(f"intent:    on {100 * ratio:.1f}% of the time (turned on {switches} times)")
        print(f"task:      {_attempts_line(task_attempts(bag, events))}")
    else:
        print("intent:    no intent topic")
        print("task:      no intent topic: no task attempts")
    if cam := camera_topic(bag, required=False):
        gaps = camera_gaps(bag.timestamps(cam))
        listed = ", ".join(f"{s:.1f} s at +{(t - bag.start_ns) / 1e9:.1f} s" for t, s in gaps[:5])
        more = f" (+{len(gaps) - 5} more)" if len(gaps) > 5 else ""
        print(
            f"gaps:      {len(gaps)} over {GAP_S:g} s without {cam}"
            + (f": {listed}{more}" if gaps else "")
        )
    else:
        print("gaps:      no camera topic")
    meta = ", ".join(f"{k}={v}" for k, v in sorted(bag.metadata.items())) or "none"
    print(f"metadata:  {meta}")
    return 0


def repair(args: argparse.Namespace) -> int:
    """`dmo-ros bag repair BAG [--out DIR]`: see `bag_repair`."""
    from dmo_ros.data.bag_repair import repair as repair_bag

    out = Path(args.out) if args.out else None
    for line in repair_bag(Path(args.bag), out):
        print(f"{out or args.bag}: {line}")
    return 0


def video(args: argparse.Namespace) -> int:
    bag = open_bag(args.bag)
    cam = camera_topic(bag, args.topic)
    intent_topic = bag.find_topic("intent", BOOL)
    times = bag.timestamps(cam)
    span = (times[-1] - times[0]) / 1e9 if len(times) > 1 else 0.0
    fps = min(120.0, max(1.0, (len(times) - 1) / span)) if span > 0 else 1.0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # intent at a frame = the latest value logged at or before it (as in the dataset)
    events = (
        [(t, bool(bag.decode(tp, d).data)) for tp, t, d in bag.messages([intent_topic])]
        if intent_topic
        else []
    )
    intent_t = np.array([t for t, _ in events], np.int64)
    intent_v = [v for _, v in events]
    writer, size, n, n_intent = None, (0, 0), 0, 0
    try:
        for topic, t, data in bag.messages([cam]):
            i = int(np.searchsorted(intent_t, t, side="right")) - 1
            on = i >= 0 and intent_v[i]
            try:
                rgb = image_to_array(bag.decode(topic, data))
            except UserError as exc:
                raise UserError(f"{bag.path}: {cam}: {exc}") from None
            if writer is None:
                scale = max(1, math.ceil(MIN_VIDEO_SIDE / min(rgb.shape[:2])))
                size = (rgb.shape[1] * scale, rgb.shape[0] * scale)
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                if not writer.isOpened():
                    raise UserError(f"{out}: cannot write an MP4 video there")
            frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            if frame.shape[1::-1] != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_NEAREST)
            if on:
                _mark_intent(frame)
                n_intent += 1
            writer.write(frame)
            n += 1
    finally:
        if writer is not None:
            writer.release()
    print(
        f"{out}: {n} frames of {cam}, {size[0]}x{size[1]} at {fps:.1f} fps, intent on in {n_intent}"
    )
    return 0


def _mark_intent(frame: np.ndarray) -> None:
    """A green border and the label INTENT while the operator holds the intent button."""
    h, w = frame.shape[:2]
    border = max(3, min(h, w) // 40)
    cv2.rectangle(frame, (0, 0), (w - 1, h - 1), (0, 200, 0), 2 * border)
    scale = max(0.5, min(h, w) / 400)
    cv2.putText(
        frame,
        "INTENT",
        (3 * border, 3 * border + int(22 * scale)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 200, 0),
        max(1, int(2 * scale)),
        cv2.LINE_AA,
    )
