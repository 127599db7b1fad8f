"""Synthetic play-data bags with known contents, written through BagWriter (test helper).

Camera frames every 100 ms at t0 + 100 ms * i (frame i is a flat colour that
names i, so it survives any resize); commands every 200 ms at t0 + 200 ms * k,
i.e. exactly at the time of frame 2k and written just before it (the tie the
dataset must resolve as "at or before"). Intent and milestones land where the
caller says; a reset of step k is what the simulated driver logs: a std_msgs/Header
stamped at step k's time, logged then, before that step's command and frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmo_ros.data.bag_writer import BagWriter, offered_qos, typestore
from dmo_ros.data.images import fill_image

T0 = 1_700_000_000_000_000_000
CAM_NS = 100_000_000
STEP_NS = 200_000_000


def ros(name: str):
    return typestore().types[name]


def cdr(msg, msgtype: str) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msgtype))


def header(t_ns: int, frame: str = "world"):
    stamp = ros("builtin_interfaces/msg/Time")(t_ns // 10**9, t_ns % 10**9)
    return ros("std_msgs/msg/Header")(stamp, frame)


def frame_colour(i: int) -> np.ndarray:
    return np.array([i % 256, (i // 256) % 256, 7], np.uint8)


def image(i: int, t_ns: int, width: int = 32, height: int = 24):
    msg = ros("sensor_msgs/msg/Image")(
        header(t_ns, "camera"), 0, 0, "", 0, 0, np.zeros(0, np.uint8)
    )
    return fill_image(msg, np.broadcast_to(frame_colour(i), (height, width, 3)), "rgb8")


def flexiv_action(k: int) -> tuple[float, float]:
    """A known, distinct command per step, inside the Push-T bounds (+-0.04 m)."""
    return 0.03 * np.sin(0.7 * k), 0.03 * np.cos(0.3 * k)


def go2_action(k: int) -> tuple[float, float, float]:
    return 0.2 + 0.1 * np.sin(k), 0.1 * np.cos(k), 0.5 * np.sin(0.5 * k)


def write_play_bag(
    path: Path,
    robot: str = "flexiv",
    steps: int = 40,
    skip_steps: range = range(0, 0),
    intent_on: tuple[int, ...] = (),
    intent_off: tuple[int, ...] = (),
    milestones: tuple[int, ...] = (),
    resets: tuple[int, ...] = (),
    cam_size: tuple[int, int] = (32, 24),
    metadata: dict | None = None,
    **writer_kwargs,
) -> Path:
    """Write a play bag; intent_on/off, milestones and resets are step numbers k: the event
    is logged 30 ms before command k (a reset: at its time, before it), so step k is the
    first to see it."""
    robot_meta = {
        "dmo_ros.robot": robot,
        "dmo_ros.task": "pusht" if robot == "flexiv" else "push_cube",
    }
    meta = robot_meta if metadata is None else metadata
    w = BagWriter(path, metadata=meta, **writer_kwargs)
    action_topic, action_type = (
        ("ee_delta", "geometry_msgs/msg/PoseStamped")
        if robot == "flexiv"
        else ("cmd_vel", "geometry_msgs/msg/TwistStamped")
    )
    w.add_topic("camera/image_raw", "sensor_msgs/msg/Image", offered_qos(reliable=False, depth=5))
    w.add_topic(action_topic, action_type)
    w.add_topic("intent", "std_msgs/msg/Bool", offered_qos(transient_local=True, depth=1))
    w.add_topic("milestone", "std_msgs/msg/Empty")
    if resets:
        w.add_topic("reset", "std_msgs/msg/Header")
    events = []
    for i in range(2 * steps):
        t = T0 + i * CAM_NS
        events.append(
            (t, 2, "camera/image_raw", cdr(image(i, t, *cam_size), "sensor_msgs/msg/Image"))
        )
    for k in range(steps):
        if k in skip_steps:
            continue
        t = T0 + k * STEP_NS
        if robot == "flexiv":
            dx, dy = flexiv_action(k)
            pose = ros("geometry_msgs/msg/Pose")(
                ros("geometry_msgs/msg/Point")(dx, dy, 0.0),
                ros("geometry_msgs/msg/Quaternion")(0.0, 0.0, 0.0, 1.0),
            )
            msg = ros("geometry_msgs/msg/PoseStamped")(header(t), pose)
        else:
            vx, vy, wz = go2_action(k)
            v3 = ros("geometry_msgs/msg/Vector3")
            twist = ros("geometry_msgs/msg/Twist")(v3(vx, vy, 0.0), v3(0.0, 0.0, wz))
            msg = ros("geometry_msgs/msg/TwistStamped")(header(t, "base_link"), twist)
        events.append((t, 1, action_topic, cdr(msg, action_type)))  # before its frame
    bool_ = ros("std_msgs/msg/Bool")
    empty = ros("std_msgs/msg/Empty")()
    events.append((T0 - 5 * CAM_NS, 0, "intent", cdr(bool_(False), "std_msgs/msg/Bool")))
    before = 30_000_000
    for k in intent_on:
        events.append(
            (T0 + k * STEP_NS - before, 0, "intent", cdr(bool_(True), "std_msgs/msg/Bool"))
        )
    for k in intent_off:
        events.append(
            (T0 + k * STEP_NS - before, 0, "intent", cdr(bool_(False), "std_msgs/msg/Bool"))
        )
    for k in milestones:
        events.append((T0 + k * STEP_NS - before, 0, "milestone", cdr(empty, "std_msgs/msg/Empty")))
    for k in resets:
        t = T0 + k * STEP_NS
        events.append((t, 0, "reset", cdr(header(t), "std_msgs/msg/Header")))
    for t, _, topic, data in sorted(events, key=lambda e: (e[0], e[1])):
        w.write(topic, t, data)
    w.close()
    return path
