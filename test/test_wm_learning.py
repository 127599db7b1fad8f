"""A trained tiny world model has learned something: it beats repeat-last-frame on its own
training data and its frames depend on the actions it is given.

The synthetic pusher moves 3 px per unit action (wm_synthetic.py); trained for 1500 steps
at one thread (about 20-30 s), seeded. Margins, measured over seeds 0-2, bf16 on and off
and AVX2 kernels (ATEN_CPU_CAPABILITY=avx2): model/repeat-last MSE 0.35-0.56 against the
bound 0.8; MSE under negated/recorded actions 1.45-2.4 against the bound 1.2.
"""

import pytest
import torch
from wm_synthetic import sequences

from dmo_ros.data.windows import WindowDataset
from dmo_ros.worldmodels.evaluate import gather, load_model, open_loop, windows
from dmo_ros.worldmodels.train import fit, resolve_config

STEPS, HORIZON, ROLLOUTS = 1500, 3, 24


@pytest.fixture
def one_thread():
    """train.threads=1 sets torch's thread count for the process: put it back afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_trained_tiny_model_beats_repeat_last_and_follows_actions(tmp_path, bf16, one_thread):
    data = sequences(count=3, steps=60, size=32, seed=0)
    sets = [
        "task.image_size=32",
        f"world_model.train.bf16={bf16}",
        "world_model.train.threads=1",
        f"world_model.train.steps={STEPS}",
        f"world_model.train.log_every={STEPS}",
        f"world_model.train.image_every={STEPS}",
        f"world_model.train.checkpoint_every={STEPS}",
    ]
    resolved = resolve_config("pusht.yaml", "tiny", sets)
    fit(resolved, WindowDataset(data, length=5), None, tmp_path, device="cpu")
    model, _, _ = load_model(tmp_path, torch.device("cpu"))
    L = model.cfg.context
    frames, actions = gather(data, windows(data, L + HORIZON, ROLLOUTS), L + HORIZON)
    real = frames[:, L:]

    def mse(pred: torch.Tensor) -> float:
        return float(pred.sub(real[:, : pred.shape[1]]).div(2).pow(2).mean())

    # Open loop on the recorded actions, against holding the last context frame.
    pred = open_loop(model, frames, actions, HORIZON, ROLLOUTS, seed=0, bf16=False)
    repeat = frames[:, L - 1 : L].expand_as(real)
    assert mse(pred) < 0.8 * mse(repeat), (mse(pred), mse(repeat))

    # One step under the recorded action and under its opposite, with the same noise: a
    # model deaf to actions scores both exactly alike.
    def one_step(action: torch.Tensor) -> float:
        state = model.init(frames[:, :L], actions[:, :L])
        frame, _ = model.step(state, action, generator=torch.Generator().manual_seed(0))
        return mse(frame[:, None])

    recorded, negated = one_step(actions[:, L - 1]), one_step(-actions[:, L - 1])
    assert negated > 1.2 * recorded, (recorded, negated)
