"""Synthetic play data for the world-model tests: a pusher that moves as commanded.

Each sequence shows a light board, a static grey bar (random place) and a blue 4x4 pusher
that moves `PIXELS_PER_ACTION` pixels per unit of normalised action along (column, row)
= (action 0, action 1), clipped to the image; actions are a smooth random walk in [-1, 1].
Sequences are real `PlaySequence`s (in memory), as `load_play_data` returns them.
"""

from __future__ import annotations

import numpy as np

from dmo_ros.data.play_data import PlaySequence

PIXELS_PER_ACTION = 3.0
BOARD = (235, 235, 225)
BAR = (119, 136, 153)
PUSHER = (65, 105, 225)


def render(size: int, pusher: np.ndarray, bar: tuple[int, int]) -> np.ndarray:
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BOARD
    r, c = bar
    img[r : r + 3, c : c + size // 3] = BAR
    pr, pc = round(float(pusher[1])), round(float(pusher[0]))
    img[pr : pr + 4, pc : pc + 4] = PUSHER
    return img


def sequences(
    count: int = 2, steps: int = 60, size: int = 32, seed: int = 0, segment_every: int = 0
) -> list[PlaySequence]:
    """`count` sequences of `steps` control steps; a new segment every `segment_every` steps."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        bar = (int(rng.integers(2, size - 5)), int(rng.integers(0, size - size // 3)))
        pos = rng.uniform(4, size - 8, 2)
        action = np.zeros(2)
        frames, actions = [], []
        for _ in range(steps):
            frames.append(render(size, pos, bar))
            action = np.clip(0.7 * action + rng.normal(0, 0.6, 2), -1, 1)
            actions.append(action.astype(np.float32))
            pos = np.clip(pos + PIXELS_PER_ACTION * action, 0, size - 4)
        segment = (np.arange(steps) // segment_every) if segment_every else np.zeros(steps)
        out.append(
            PlaySequence(
                bag=f"synthetic_{k}",
                t_ns=np.arange(steps, dtype=np.int64) * 200_000_000,
                frames=np.stack(frames),
                actions=np.stack(actions),
                intent=np.zeros(steps, bool),
                milestone=np.zeros(steps, bool),
                segment=segment.astype(np.int32),
            )
        )
    return out
