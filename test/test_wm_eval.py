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
from dmo_ros.sim.pusht_table import PushTTable
from dmo_ros.training.checkpoint import save_checkpoint
from dmo_ros.worldmodels import action_response
from dmo_ros.worldmodels.diamond import frames_to_model
from dmo_ros.worldmodels.evaluate import evaluate, load_model, step_metrics, summarize
from dmo_ros.worldmodels.image_metrics import PSNR_MAX_DB, mse, psnr_of_mse, ssim, to_unit
from dmo_ros.worldmodels.object_fit import BOARD_M, centre_of
from dmo_ros.worldmodels.train import fit, resolve_config


def tiny_run(tmp_path, bf16: str, steps: int = 2):
    sets = [
        "task.image_size=32",
        f"world_model.train.steps={steps}",
        f"world_model.train.bf16={bf16}",
    ]
    resolved = resolve_config("pusht.yaml", "tiny", sets)
    data = WindowDataset(sequences(count=2, steps=40, size=32), length=5)
    fit(resolved, data, None, tmp_path / "run", device="cpu")
    return resolved, tmp_path / "run"


def skimage_ssim(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """scikit-image's SSIM with the paper's settings (Gaussian 11x11, σ 1.5), per image."""
    from skimage.metrics import structural_similarity

    hwc = lambda x: x.permute(1, 2, 0).double().numpy()  # noqa: E731
    return [
        structural_similarity(
            hwc(x),
            hwc(y),
            data_range=1.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for x, y in zip(a, b)
    ]


def test_ssim_matches_scikit_image():
    g = torch.Generator().manual_seed(0)
    scene = frames_to_model(torch.from_numpy(np.stack([s.frames[5] for s in sequences(3)])))
    scene = to_unit(scene)  # board, bar and pusher, [3,3,32,32] in [0, 1]
    noise = lambda x, s: (x + s * torch.randn(x.shape, generator=g)).clamp(0, 1)  # noqa: E731
    rand = torch.rand(3, 3, 24, 40, generator=g)
    pairs = [
        (scene, scene),
        (scene, noise(scene, 0.05)),
        (scene, scene.roll(2, dims=-1)),  # the pusher and bar moved two pixels
        (scene, scene.flip(0)),  # another scene
        (rand, noise(rand, 0.3)),
        (rand * 0.2, rand * 0.2 + 0.5),  # dark against light
    ]
    for a, b in pairs:
        assert ssim(a, b).tolist() == pytest.approx(skimage_ssim(a, b), abs=1e-6)


def test_ssim_luminance_near_mid_grey():
    # Flat frames: SSIM is the luminance term (2 μa μb + C1) / (μa² + μb² + C1), C1 = 0.01².
    grey, brighter = 128 / 255, 141 / 255
    a = torch.full((1, 3, 16, 16), grey, dtype=torch.float64)
    b = torch.full((1, 3, 16, 16), brighter, dtype=torch.float64)
    expected = (2 * grey * brighter + 1e-4) / (grey**2 + brighter**2 + 1e-4)
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-9)
    assert 0.99 < expected < 1  # 13 grey levels brighter is still very similar
    assert ssim(a, b).item() == pytest.approx(skimage_ssim(a, b)[0], abs=1e-6)


def test_psnr_of_mse_and_its_cap():
    a, b = torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.1)
    assert mse(a, b).tolist() == pytest.approx([0.01, 0.01])
    assert psnr_of_mse(mse(a, b)).tolist() == pytest.approx([20.0, 20.0])
    assert float(psnr_of_mse(1 / 255**2)) == pytest.approx(20 * math.log10(255))
    assert psnr_of_mse(mse(a, a)).tolist() == [PSNR_MAX_DB] * 2  # identical: the cap, not 100 dB
    assert float(psnr_of_mse(1e-12)) == PSNR_MAX_DB


def test_step_psnr_is_of_the_mean_squared_error_not_a_mean_of_db():
    real = torch.full((2, 3, 3, 16, 16), -1.0)  # two rollouts of three black steps
    pred = real.clone()
    pred[0, 1] += 2 * 0.1  # rollout 0, step 2: 0.1 too light in [0, 1] -> MSE 0.01
    pred[:, 2] += 2 * 0.2  # both rollouts, step 3: 0.2 too light -> MSE 0.04
    m = step_metrics(pred, real)
    assert m["mse"] == pytest.approx([0.0, 0.005, 0.04])
    assert m["psnr"] == pytest.approx([PSNR_MAX_DB, 10 * math.log10(200), 10 * math.log10(25)])
    base = step_metrics(real + 2 * 0.06, real)  # off by 0.06 everywhere: MSE 0.0036
    s = summarize(m, base, 2)
    # Steps 1-2: PSNR of the mean MSE 0.0025 (26.0 dB); a mean of dB would say 41.5 dB.
    assert s["psnr_1_2"] == pytest.approx(10 * math.log10(400))
    assert s["psnr_all"] == pytest.approx(10 * math.log10(3 / 0.045))
    assert s["baseline_psnr_1_2"] == pytest.approx(10 * math.log10(1 / 0.0036))
    assert s["beats_repeat_last"] is True  # 0.0025 < 0.0036 over steps 1-2
    assert summarize(base, m, 2)["beats_repeat_last"] is False
    assert summarize(m, base, 3)["beats_repeat_last"] is False  # 0.015 > 0.0036
    assert summarize(base, m, 3)["beats_repeat_last"] is True


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


def test_evaluate_writes_files_and_scores_the_baseline_exactly(tmp_path, bf16):
    resolved, run = tiny_run(tmp_path, bf16)
    model, _, _ = load_model(run, torch.device("cpu"))
    cfg = resolved.section.eval
    results = evaluate(model, [ramp_sequence()], cfg, tmp_path / "eval")
    base = results["repeat_last"]
    assert len(base["psnr"]) == cfg.horizon == len(results["model"]["psnr"])
    for k in (1, 5, cfg.horizon):  # k grey levels off on every pixel: MSE (k / 255)²
        assert base["mse"][k - 1] == pytest.approx((k / 255) ** 2, rel=1e-6)
        assert base["psnr"][k - 1] == pytest.approx(20 * math.log10(255 / k), rel=1e-6)
    # Flat frames one level apart: SSIM is the luminance term of each rollout's grey values.
    L = results["context"]
    grey = [(100 + t + L - 1) / 255 for _, t in results["windows"]]
    lum = [(2 * g * (g + 1 / 255) + 1e-4) / (g**2 + (g + 1 / 255) ** 2 + 1e-4) for g in grey]
    assert base["ssim"][0] == pytest.approx(np.mean(lum), rel=1e-9)
    for name in ("world_model.json", "world_model_metrics.png", "world_model_strip.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "eval" / "world_model.json").read_text())
    k = saved["summary_steps"]
    assert k == 20
    assert set(saved["summary"]) == {
        f"{who}{what}"
        for who in ("", "baseline_")
        for what in (f"psnr_1_{k}", f"ssim_mean_1_{k}", "psnr_all")
    } | {"beats_repeat_last"}
    expected = 10 * math.log10(1 / np.mean([(j / 255) ** 2 for j in range(1, k + 1)]))
    assert saved["summary"][f"baseline_psnr_1_{k}"] == pytest.approx(expected, rel=1e-6)
    assert saved["definitions"]["psnr_max_db"] == PSNR_MAX_DB
    assert {"mse", "psnr", "ssim", "frames"} <= set(saved["definitions"])
    assert set(saved["action_response"]) >= {"sign_agreement", "passed", "calibration"}
    assert "skipped" in saved["object"]  # not Push-T: no object block, no object plot
    assert not (tmp_path / "eval" / "world_model_object.png").exists()


def t_pose(t: int) -> tuple[float, float, float]:
    """The T slides 3 mm and turns 0.03 rad a step."""
    return (0.2 + 0.003 * t, 0.25, 0.5 + 0.03 * t)


def pusht_sequence(truth: bool, steps: int = 40, size: int = 32) -> PlaySequence:
    """Push-T frames of the T at t_pose(t), the pusher 5 mm further right each step; with the
    T's ground truth (task/object_pose) or without (NaN)."""
    env = PushTTable(image_size=size, seed=0)
    frames = [
        env.reset(seed=0, options={"object": t_pose(t), "ee": (0.1 + 0.005 * t, 0.4)})[0]
        for t in range(steps)
    ]
    return PlaySequence(
        bag="pusht",
        t_ns=np.arange(steps, dtype=np.int64),
        frames=np.stack(frames),
        actions=np.zeros((steps, 2), np.float32),
        intent=np.zeros(steps, bool),
        milestone=np.zeros(steps, bool),
        segment=np.zeros(steps, np.int32),
        object_pose=np.array([t_pose(t) for t in range(steps)], np.float32) if truth else None,
    )


def test_pusht_object_block_tracks_the_t_against_its_ground_truth(tmp_path, bf16):
    resolved, run = tiny_run(tmp_path, bf16)
    model, _, _ = load_model(run, torch.device("cpu"))
    cfg, task = resolved.section.eval, resolved.task
    L, px = model.cfg.context, 32 / BOARD_M
    for truth in (True, False):
        seq = pusht_sequence(truth)
        out = tmp_path / f"eval_{truth}"
        obj = evaluate(model, [seq], cfg, out, task=task)["object"]
        assert ("ground truth" in obj["reference"]) is truth
        assert obj["rollouts_with_ground_truth"] == (cfg.rollouts if truth else 0)
        assert (out / "world_model_object.png").stat().st_size > 0
        saved = json.loads((out / "world_model.json").read_text())
        assert {"object.t_iou", "object.position_error", "object.reference"} <= set(
            saved["definitions"]
        )
        step = obj["summary_step"]
        assert step == min(32, cfg.horizon)
        for who in ("model", "repeat_last"):
            assert all(len(v) == cfg.horizon for v in obj[who].values())
            assert obj["summary"][who]["t_iou"] == obj[who]["t_iou"][step - 1]
        assert min(obj["real"]["t_iou"]) > 0.85 and min(obj["repeat_last"]["t_iou"]) > 0.85
        # repeat-last stands still: its error after k steps is how far the T (the pusher) moved
        starts = np.array([t + L - 1 for _, t in saved["windows"]])  # the last context frame
        poses = np.array([t_pose(t) for t in range(40)])
        for k in (1, cfg.horizon):
            moved = np.linalg.norm(centre_of(poses[starts + k]) - centre_of(poses[starts]), axis=1)
            base = obj["repeat_last"]
            assert base["position_error_px"][k - 1] == pytest.approx(moved.mean() * px, abs=0.4)
            assert base["angle_error_deg"][k - 1] == pytest.approx(np.rad2deg(0.03 * k), abs=4)
            assert base["pusher_error_px"][k - 1] == pytest.approx(0.005 * k * px, abs=0.4)
        assert set(obj["summary"]["beats_repeat_last"]) == {"position", "angle", "pusher"}


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


def test_cli_eval_writes_to_the_run_and_refuses_bad_models(tmp_path, capsys, bf16):
    _, run = tiny_run(tmp_path, bf16)
    bag = write_play_bag(tmp_path / "held_out", steps=30)
    assert cli.main(["eval", "world-model", "--model", str(run), "--bags", str(bag)]) == 0
    out = capsys.readouterr().out
    assert "repeat-last" in out and "sign agreement" in out
    saved = json.loads((run / "eval" / "world_model.json").read_text())
    assert saved["sampler"]["steps"] == 2  # the tiny preset's own
    two = ["eval", "world-model", "--model", str(run), "--bags", str(bag), "--out"]
    assert cli.main([*two, str(tmp_path / "one"), "--sampler-steps", "1"]) == 0
    saved = json.loads((tmp_path / "one" / "world_model.json").read_text())
    assert saved["sampler"]["steps"] == 1
    capsys.readouterr()
    assert cli.main([*two, str(tmp_path / "none"), "--sampler-steps", "0"]) == 2
    assert "--sampler-steps" in capsys.readouterr().err

    other = tmp_path / "other.pt"
    save_checkpoint(other, {"kind": "rssm", "task": "pusht", "model_config": {}})
    for model, words in ((tmp_path / "nothing", "no such model"), (other, "expected a")):
        code = cli.main(["eval", "world-model", "--model", str(model), "--bags", str(bag)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and words in err
