"""World-model evaluation: image metrics, the repeat-last baseline, files, action response."""

import json
import math

import numpy as np
import pytest
import torch
from play_bags import write_play_bag
from wm_synthetic import BOARD, PIXELS_PER_ACTION, PUSHER, sequences

from dmo_ros import cli
from dmo_ros.data.play_data import PlaySequence
from dmo_ros.data.windows import WindowDataset
from dmo_ros.training.checkpoint import save_checkpoint
from dmo_ros.worldmodels import action_response
from dmo_ros.worldmodels.diamond import frames_to_model
from dmo_ros.worldmodels.evaluate import evaluate, load_model
from dmo_ros.worldmodels.image_metrics import psnr, ssim
from dmo_ros.worldmodels.train import fit, resolve_config


def tiny_run(tmp_path, steps: int = 2):
    resolved = resolve_config(
        "pusht.yaml", "tiny", ["task.image_size=32", f"world_model.train.steps={steps}"]
    )
    data = WindowDataset(sequences(count=2, steps=40, size=32), length=5)
    fit(resolved, data, None, tmp_path / "run", device="cpu")
    return resolved, tmp_path / "run"


def test_psnr_and_ssim_known_values():
    a = torch.zeros(2, 3, 16, 16)
    b = torch.full((2, 3, 16, 16), 0.1)
    assert psnr(a, b).tolist() == pytest.approx([10 * math.log10(4 / 0.01)] * 2, rel=1e-5)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    noisier = (x + 0.9 * torch.randn_like(x)).clamp(-1, 1)
    assert bool((ssim(x, noisy) > ssim(x, noisier)).all())
    assert bool((ssim(x, noisy) < 1).all())


def ramp_sequence(steps: int = 40, size: int = 32) -> PlaySequence:
    """Flat frames whose grey value is 100 + t: repeat-last's error after k steps is k levels."""
    values = (100 + np.arange(steps)).astype(np.uint8)
    return PlaySequence(
        bag="ramp",
        t_ns=np.arange(steps, dtype=np.int64),
        frames=np.broadcast_to(values[:, None, None, None], (steps, size, size, 3)).copy(),
        actions=np.zeros((steps, 2), np.float32),
        intent=np.zeros(steps, bool),
        milestone=np.zeros(steps, bool),
        segment=np.zeros(steps, np.int32),
    )


def test_evaluate_writes_files_and_scores_the_baseline_exactly(tmp_path):
    resolved, run = tiny_run(tmp_path)
    model, _, _ = load_model(run, torch.device("cpu"))
    cfg = resolved.section.eval
    results = evaluate(model, [ramp_sequence()], cfg, tmp_path / "eval")
    base = results["repeat_last"]["psnr"]
    assert len(base) == cfg.horizon == len(results["model"]["psnr"])
    for k in (1, 5, cfg.horizon):  # images in [-1, 1]: k grey levels = k / 127.5
        assert base[k - 1] == pytest.approx(10 * math.log10(4 / (k / 127.5) ** 2), rel=1e-4)
    assert 0.99 < results["repeat_last"]["ssim"][0] < 1.0
    for name in ("world_model.json", "world_model_metrics.png", "world_model_strip.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "eval" / "world_model.json").read_text())
    assert saved["summary"]["baseline_psnr_mean_1_20"] == pytest.approx(np.mean(base[:20]))
    assert set(saved["action_response"]) >= {"sign_agreement", "passed", "calibration"}


def test_displacement_and_calibration_follow_the_pusher():
    seqs = sequences(count=3, steps=60, size=32, seed=3)
    calib = action_response.calibrate(seqs)
    m = calib["matrix"]
    # a0 moves along columns, a1 along rows, by about PIXELS_PER_ACTION px per unit.
    assert m[0, 0] > 0.5 * PIXELS_PER_ACTION and m[1, 1] > 0.5 * PIXELS_PER_ACTION
    assert abs(m[0, 1]) < 0.3 * m[0, 0] and abs(m[1, 0]) < 0.3 * m[1, 1]
    assert calib["r2"] > 0.5


class Oracle:
    """A world model that knows the synthetic physics: it moves the pusher `gain` x as far."""

    def __init__(self, gain: float):
        self.gain = gain

    def init(self, frames, actions):
        return frames[:, -1].clone()

    def step(self, state, action, generator=None):
        out = []
        board = torch.tensor(BOARD).float().div(127.5).sub(1).view(3, 1, 1)
        blue = torch.tensor(PUSHER).float().div(127.5).sub(1).view(3, 1, 1)
        for frame, a in zip(state, action):
            mask = ((frame - blue).abs().sum(0) < 0.05).nonzero()
            r, c = mask.min(0).values.tolist()
            frame = frame.clone()
            frame[:, r : r + 4, c : c + 4] = board
            dr, dc = (self.gain * PIXELS_PER_ACTION * a.flip(0)).round().int().tolist()
            r, c = min(max(r + dr, 0), 28), min(max(c + dc, 0), 28)
            frame[:, r : r + 4, c : c + 4] = blue
            out.append(frame)
        frames = torch.stack(out)
        return frames, frames


def test_action_response_check_tells_a_responsive_model_from_a_deaf_one():
    seqs = sequences(count=3, steps=60, size=32, seed=4)
    matrix = action_response.calibrate(seqs)["matrix"]
    frames = frames_to_model(torch.from_numpy(np.stack([s.frames[20:24] for s in seqs])))
    actions = torch.zeros(3, 4, 2)
    good = action_response.check(Oracle(1.0), frames, actions, matrix, steps=2, magnitude=1.0)
    deaf = action_response.check(Oracle(0.0), frames, actions, matrix, steps=2, magnitude=1.0)
    backwards = action_response.check(Oracle(-1.0), frames, actions, matrix, 2, 1.0)
    assert good["sign_agreement"] >= 0.9
    assert deaf["sign_agreement"] == 0.0
    assert backwards["sign_agreement"] <= 0.1


def test_cli_eval_writes_to_the_run_and_refuses_bad_models(tmp_path, capsys):
    _, run = tiny_run(tmp_path)
    bag = write_play_bag(tmp_path / "held_out", steps=30)
    assert cli.main(["eval", "world-model", "--model", str(run), "--bags", str(bag)]) == 0
    out = capsys.readouterr().out
    assert "repeat-last" in out and "sign agreement" in out
    assert (run / "eval" / "world_model.json").is_file()

    other = tmp_path / "other.pt"
    save_checkpoint(other, {"kind": "rssm", "task": "pusht", "model_config": {}})
    for model, words in ((tmp_path / "nothing", "no such model"), (other, "expected a")):
        code = cli.main(["eval", "world-model", "--model", str(model), "--bags", str(bag)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and words in err
