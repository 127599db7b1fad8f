"""WindowDataset: exact windows from the cache, never across a segment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from play_bags import flexiv_action, frame_colour, write_play_bag
from torch.utils.data import DataLoader

from dmo_ros.data.play_data import load_play_data
from dmo_ros.data.windows import WindowDataset
from dmo_ros.errors import UserError
from dmo_ros.task import task_for_robot

PUSHT = task_for_robot("pusht")


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    # bag a: steps 0..11 | gap | 16..29 ; bag b: 0..9 (with intent from step 4)
    write_play_bag(root / "a", steps=30, skip_steps=range(12, 16), milestones=(20,))
    write_play_bag(root / "b", steps=10, intent_on=(4,))
    return load_play_data([root / "a", root / "b"], PUSHT, cache_dir=root / "cache")


def step_of(frame: torch.Tensor) -> int:
    """The bag step whose camera frame this is (frame 2k is a flat colour naming 2k)."""
    r, g, _ = frame[0, 0].tolist()
    return (r + 256 * g) // 2


def test_windows_are_exact_and_never_cross_a_segment(sequences) -> None:
    a_steps = [*range(12), *range(16, 30)]
    ds = WindowDataset(sequences, length=5)
    # segments of 12, 14 (bag a) and 10 (bag b) steps
    assert len(ds) == (12 - 4) + (14 - 4) + (10 - 4)
    seen = []
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"frames", "actions", "intent", "milestone"}
        assert item["frames"].shape == (5, 64, 64, 3) and item["frames"].dtype == torch.uint8
        assert item["actions"].shape == (5, 2) and item["actions"].dtype == torch.float32
        assert item["intent"].dtype == torch.bool and item["milestone"].dtype == torch.bool
        steps = [step_of(f) for f in item["frames"]]
        assert steps == list(range(steps[0], steps[0] + 5))  # consecutive: no gap inside
        for f in item["frames"]:
            assert (f == torch.from_numpy(frame_colour(2 * step_of(f)))).all()
        expected = np.array([flexiv_action(k) for k in steps]) / 0.04
        np.testing.assert_allclose(item["actions"].numpy(), expected, atol=1e-6)
        seen.append(steps[0])
    assert seen[:8] == list(range(8)) and seen[8:18] == list(range(16, 26))
    assert seen[18:] == list(range(6))
    # labels travel with their frames
    by_start = {(0, s): ds[i] for i, s in enumerate(seen[:18])}
    assert by_start[0, 16]["milestone"].tolist() == [False, False, False, False, True]
    assert ds[18]["intent"].tolist() == [False, False, False, False, True]
    assert all(s in a_steps for s in seen[:18])


def test_stride_and_length_limits(sequences) -> None:
    ds = WindowDataset(sequences, length=10, stride=3)
    starts = [step_of(ds[i]["frames"][0]) for i in range(len(ds))]
    assert starts == [0, 16, 19, 0]  # 12-step, 14-step and 10-step segments
    with pytest.raises(
        UserError, match=r"no window of 15 steps fits .* \(longest segment: 14 steps\)"
    ):
        WindowDataset(sequences, length=15)


def test_dataloader_batches(sequences) -> None:
    loader = DataLoader(WindowDataset(sequences, length=4), batch_size=8, shuffle=True)
    batches = list(loader)
    assert sum(b["frames"].shape[0] for b in batches) == (12 - 3) + (14 - 3) + (10 - 3)
    assert batches[0]["frames"].shape == (8, 4, 64, 64, 3)
    assert batches[0]["actions"].shape == (8, 4, 2)


def test_no_window_spans_a_reset(tmp_path) -> None:
    """A reset at step 7 (logged at that step's time, as the driver does): windows end at
    step 6 at the latest or start at 7, the new scene's first frame."""
    bag = write_play_bag(tmp_path / "reset", steps=15, resets=(7,))
    (seq,) = load_play_data(bag, PUSHT, cache_dir=tmp_path / "cache")
    ds = WindowDataset([seq], length=4)
    starts = [step_of(ds[i]["frames"][0]) for i in range(len(ds))]
    assert starts == [0, 1, 2, 3, 7, 8, 9, 10, 11]
