"""numpy <-> ROS message conversions used by the driver nodes (planar poses, twists, images)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, Quaternion, TwistStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Image

from dmo_ros.data.images import fill_image


def yaw_quaternion(yaw: float) -> Quaternion:
    """A rotation of `yaw` radians about z."""
    return Quaternion(z=math.sin(0.5 * yaw), w=math.cos(0.5 * yaw))


def quaternion_yaw(q: Quaternion) -> float:
    """The rotation about z of quaternion `q` (x, y, z, w)."""
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def planar_pose(stamp: Time, frame_id: str, x: float, y: float, yaw: float = 0.0) -> PoseStamped:
    """A PoseStamped at (x, y, 0) turned by `yaw` about z."""
    msg = PoseStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y = float(x), float(y)
    msg.pose.orientation = yaw_quaternion(float(yaw))
    return msg


def tcp_pose(stamp: Time, frame_id: str, pose: Sequence[float]) -> PoseStamped:
    """A PoseStamped from a Flexiv tcp pose [x, y, z, qw, qx, qy, qz]."""
    x, y, z, qw, qx, qy, qz = (float(v) for v in pose)
    msg = PoseStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
    msg.pose.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
    return msg


def odometry(
    stamp: Time,
    frame_id: str,
    child_frame_id: str,
    base: Sequence[float],
    velocity: Sequence[float],
) -> Odometry:
    """Odometry from a planar base pose (x, y, yaw) and its body-frame velocity (vx, vy, wz)."""
    msg = Odometry()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id  # the twist is expressed in this (body) frame
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(base[0]), float(base[1])
    msg.pose.pose.orientation = yaw_quaternion(float(base[2]))
    msg.twist.twist.linear.x, msg.twist.twist.linear.y = float(velocity[0]), float(velocity[1])
    msg.twist.twist.angular.z = float(velocity[2])
    return msg


def twist_stamped(stamp: Time, frame_id: str, command: Sequence[float]) -> TwistStamped:
    """A TwistStamped carrying a planar body velocity (vx, vy, wz)."""
    msg = TwistStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.twist.linear.x, msg.twist.linear.y = float(command[0]), float(command[1])
    msg.twist.angular.z = float(command[2])
    return msg


def planar_delta(msg: PoseStamped) -> list[float]:
    """(dx, dy) of a relative end-effector pose; the planar Push-T task ignores z and rotation."""
    return [msg.pose.position.x, msg.pose.position.y]


def planar_twist(msg: TwistStamped) -> list[float]:
    """(vx, vy, wz) of a body velocity command."""
    return [msg.twist.linear.x, msg.twist.linear.y, msg.twist.angular.z]


def image(stamp: Time, frame_id: str, array: np.ndarray) -> Image:
    """An rgb8 Image holding an RGB uint8 array (H, W, 3)."""
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return fill_image(msg, array, "rgb8")
