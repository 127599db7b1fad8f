"""Fixed-length windows of play data for the models (the only data module that imports torch).

A window is `length` consecutive control steps of one segment: it never
crosses a gap, a reset or a bag boundary. Frames are read from the
memory-mapped cache on demand, so an epoch costs one copy per frame.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from dmo_ros.data.play_data import PlaySequence
from dmo_ros.errors import UserError


class WindowDataset(Dataset):
    """Item i: {"frames": uint8 [T,H,W,3], "actions": float32 [T,A], "intent": bool [T],
    "milestone": bool [T]} with T = length."""

    def __init__(self, sequences: list[PlaySequence], length: int, stride: int = 1) -> None:
        if length < 1 or stride < 1:
            raise UserError(f"window length and stride must be >= 1, got {length}, {stride}")
        self.sequences = list(sequences)
        self.length = length
        index = []
        longest = 0
        for si, seq in enumerate(self.sequences):
            seg = np.asarray(seq.segment)
            cuts = np.flatnonzero(np.diff(seg)) + 1
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(seg)]):
                longest = max(longest, int(b - a))
                starts = np.arange(a, b - length + 1, stride)
                index.append(np.stack([np.full(len(starts), si), starts], axis=1))
        if not index or sum(len(x) for x in index) == 0:
            raise UserError(
                f"no window of {length} steps fits in the play data "
                f"(longest segment: {longest} steps)"
            )
        self.index = np.concatenate(index).astype(np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        si, start = self.index[i]
        seq = self.sequences[si]
        s = slice(int(start), int(start) + self.length)
        # np.array copies out of the read-only memmap into memory torch may own.
        return {
            "frames": torch.from_numpy(np.array(seq.frames[s])),
            "actions": torch.from_numpy(np.array(seq.actions[s], dtype=np.float32)),
            "intent": torch.from_numpy(np.array(seq.intent[s], dtype=bool)),
            "milestone": torch.from_numpy(np.array(seq.milestone[s], dtype=bool)),
        }
