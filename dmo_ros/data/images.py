"""sensor_msgs/Image <-> numpy, duck-typed: rclpy messages and rosbags-decoded ones alike.

PyPI's cv_bridge does not work with the ROS 2 wheels (see REFERENCE.md), and
none is needed: the payload is rows of `step` bytes, of which the first
width * channels are pixels (the rest is padding).
"""

from __future__ import annotations

import numpy as np

from dmo_ros.errors import UserError

# encoding -> (channels, index of R, G, B in a pixel; None: grey)
ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}


def image_to_array(msg) -> np.ndarray:
    """An image message as an RGB uint8 array (H, W, 3); row padding (`step`) is dropped."""
    enc = str(msg.encoding).lower()
    if enc not in ENCODINGS:
        raise UserError(
            f"image encoding '{msg.encoding}' is not supported (use {', '.join(ENCODINGS)})"
        )
    channels, rgb = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * channels
    if step < row:
        raise UserError(f"image step {step} is shorter than a row of {w} {enc} pixels")
    try:
        flat = np.frombuffer(msg.data, dtype=np.uint8)
    except (TypeError, ValueError):  # e.g. a list of ints
        flat = np.asarray(msg.data, dtype=np.uint8)
    if flat.size < step * h:
        raise UserError(f"image data has {flat.size} bytes, {h} rows of {step} need {step * h}")
    pixels = flat[: step * h].reshape(h, step)[:, :row].reshape(h, w, channels)
    if rgb is None:
        return np.repeat(pixels, 3, axis=2)
    if rgb == (0, 1, 2) and channels == 3:
        return np.ascontiguousarray(pixels)
    return np.ascontiguousarray(pixels[:, :, list(rgb)])


def fill_image(msg, array: np.ndarray, encoding: str = "rgb8"):
    """Set height, width, encoding, step and data of `msg` from an (H, W, C) or (H, W) uint8
    array already in `encoding`; returns `msg`."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    enc = encoding.lower()
    if enc not in ENCODINGS:
        raise UserError(
            f"image encoding '{encoding}' is not supported (use {', '.join(ENCODINGS)})"
        )
    channels = ENCODINGS[enc][0]
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] != channels:
        raise ValueError(f"an {enc} image needs shape (H, W, {channels}), got {array.shape}")
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = enc
    msg.is_bigendian = 0
    msg.step = int(a.shape[1]) * channels
    # rosbags messages hold a numpy array, rclpy ones take bytes (copied in C, fast).
    as_array = isinstance(getattr(msg, "data", None), np.ndarray)
    msg.data = a.reshape(-1).copy() if as_array else a.tobytes()
    return msg
