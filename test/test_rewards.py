"""Learned rewards: Eq. (3)'s loss and pairs, learning on synthetic progress, the goal image,
the intent classifier, the metrics, and the one-line refusals of bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr

from dmo_ros.data.play_data import PlaySequence
from dmo_ros.errors import UserError
from dmo_ros.rewards import evaluate, intent, ranking
from dmo_ros.rewards.encoder import to_model
from dmo_ros.rewards.goal import GOAL_RING, goal_images
from dmo_ros.rewards.ranking import PairConfig, RankingSamples, Span, pair_labels
from dmo_ros.rewards.train import fit, resolve_config, task_spans
from dmo_ros.sim.pusht_table import PushTTable
from dmo_ros.task import load_task

BOARD, TARGET, MOVER = (235, 235, 225), (144, 238, 144), (65, 105, 225)


def scene(size: int, pos, target) -> np.ndarray:
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BOARD
    tr, tc = target
    img[tr : tr + 6, tc : tc + 6] = TARGET
    r, c = (round(float(v)) for v in pos)
    img[r : r + 4, c : c + 4] = MOVER
    return img


def progress_sequences(count=2, episodes=12, size=32, seed=0) -> list[PlaySequence]:
    """Each episode is a segment: 6 steps of play (intent off, a random walk), then the task
    (intent on): the square moves from where it is onto the target (top-left at `target`)
    in 10-20 steps, with jitter. `coverage` = the task's progress 0..1 (0 in play)."""
    rng = np.random.default_rng(seed)
    target = (size // 2 - 3, size // 2 - 3)
    out = []
    for k in range(count):
        frames, intents, cover, segment = [], [], [], []
        for e in range(episodes):
            pos = rng.uniform(0, size - 4, 2)
            for _ in range(6):
                frames.append(scene(size, pos, target))
                intents.append(False)
                cover.append(0.0)
                pos = np.clip(pos + rng.normal(0, 2, 2), 0, size - 4)
            start, n = pos.copy(), int(rng.integers(10, 21))
            goal = np.array(target, float) + 1
            for t in range(n):
                p = start + (goal - start) * t / (n - 1) + rng.normal(0, 0.4, 2)
                frames.append(scene(size, np.clip(p, 0, size - 4), target))
                intents.append(True)
                cover.append(t / (n - 1))
            segment += [e] * (6 + n)
        steps = len(frames)
        seq = PlaySequence(
            bag=f"progress_{seed}_{k}",
            t_ns=np.arange(steps, dtype=np.int64) * 200_000_000,
            frames=np.stack(frames),
            actions=np.zeros((steps, 2), np.float32),
            intent=np.array(intents),
            milestone=np.zeros(steps, bool),
            segment=np.array(segment, np.int32),
            coverage=np.array(cover, np.float32),  # ground truth, for evaluation only
        )
        out.append(seq)
    return out


def tiny(*sets: str, config: str = "pusht.yaml"):
    return resolve_config(config, "tiny", ["task.image_size=32", *sets])


def test_bradley_terry_loss_on_known_values():
    f_i, f_j = torch.tensor([2.0, 2.0, 0.5, -1.0]), torch.tensor([0.0, 0.0, 0.5, 3.0])
    later = torch.tensor([True, False, True, False])
    got = ranking.bradley_terry_loss(f_i, f_j, later)
    # -log σ(2), -log σ(-2), -log σ(0), -log σ(4): P(i ≻ j) = e^fi / (e^fi + e^fj) as Eq. (3)
    want = [
        math.log1p(math.exp(-2)),
        math.log1p(math.exp(2)),
        math.log(2),
        math.log1p(math.exp(-4)),
    ]
    assert got.tolist() == pytest.approx(want, rel=1e-5)
    p = math.exp(2) / (math.exp(2) + math.exp(0))
    assert float(got[0]) == pytest.approx(-math.log(p), rel=1e-6)


def test_pair_labels_order_by_time_each_pair_once_and_skip_ties():
    later, used = pair_labels(torch.tensor([[3, 1, 1, 5]]))
    pairs = {(i, j): bool(later[0, i, j]) for i in range(4) for j in range(4) if used[0, i, j]}
    assert pairs == {(0, 1): True, (0, 2): True, (0, 3): False, (1, 3): False, (2, 3): False}


def numbered_sequence(steps=200, segment_every=50) -> PlaySequence:
    """Frame t shows its own step number (pixel [0, 0] = t % 256, [0, 1] = t // 256)."""
    frames = np.zeros((steps, 8, 8, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(steps) % 256
    frames[:, 0, 1, 0] = np.arange(steps) // 256
    intent = (np.arange(steps) % segment_every >= 20) & (np.arange(steps) % segment_every < 40)
    return PlaySequence(
        bag="numbered",
        t_ns=np.arange(steps, dtype=np.int64),
        frames=frames,
        actions=np.zeros((steps, 2), np.float32),
        intent=intent,
        milestone=np.zeros(steps, bool),
        segment=(np.arange(steps) // segment_every).astype(np.int32),
    )


def step_of(frame: torch.Tensor) -> torch.Tensor:
    return frame[..., 0, 0, 0].long() + 256 * frame[..., 0, 1, 0].long()


def test_samples_lie_inside_one_segment_between_start_and_goal():
    seq = numbered_sequence()
    spans = task_spans([seq])
    assert [(s.start, s.end) for s in spans] == [(20 + 50 * k, 40 + 50 * k) for k in range(4)]
    cfg = PairConfig(frames=6, task_fraction=0.5, min_span=4, max_span=30)
    data = RankingSamples([seq], spans, cfg, seed=3)
    kinds = []
    for i in range(300):
        item = data[i]
        a, b = int(step_of(item["start"])), int(step_of(item["goal"]))
        assert a // 50 == b // 50  # one segment
        assert torch.equal(step_of(item["frames"]), a + item["t"])
        assert (item["t"] >= 0).all() and (item["t"] <= b - a).all()
        if item["task"]:
            assert (a, b + 1) in [(s.start, s.end) for s in spans]
        else:
            assert 4 <= b - a + 1 <= 30
        kinds.append(bool(item["task"]))
    assert 0.4 < np.mean(kinds) < 0.6
    for key, value in data[7].items():  # item i is a function of i: resume draws the same
        assert torch.equal(value, data[7][key])


def test_successful_task_segments_are_drawn_more_often():
    seq = numbered_sequence()
    spans = [Span(0, s.start, s.end, succeeded=k == 0) for k, s in enumerate(task_spans([seq]))]
    cfg = PairConfig(frames=2, task_fraction=1.0, success_weight=4.0)
    data = RankingSamples([seq], spans, cfg)
    starts = [int(step_of(data[i]["start"])) for i in range(700)]
    # weights 4 : 1 : 1 : 1 -> 4/7 of the samples from the first segment
    assert np.mean(np.array(starts) == 20) == pytest.approx(4 / 7, abs=0.06)


def train_ranking(tmp_path, steps=120):
    resolved = tiny(
        f"reward.train.steps={steps}",
        "reward.train.bf16=false",
        "reward.train.log_every=50",
        "reward.ranking.encoder.channels=[16, 32]",
        "reward.ranking.encoder.embed_dim=64",
        "reward.ranking.hidden=[64]",
        "reward.ranking.pairs.task_fraction=1.0",
        "reward.ranking.pairs.frames=6",
    )
    seqs = progress_sequences(seed=0)
    # the test's own goal: the square on the target (the sim's render is for Push-T)
    target = (32 // 2 - 3, 32 // 2 - 3)
    resolved.goals = np.stack([scene(32, (target[0] + 1, target[1] + 1), target)] * 2)
    train = RankingSamples(seqs, task_spans(seqs), resolved.section.ranking.pairs, 0)
    fit(resolved, train, None, tmp_path, device="cpu")
    return resolved


def test_ranking_learns_synthetic_progress_and_its_reward_follows_it(tmp_path):
    resolved = train_ranking(tmp_path)
    from dmo_ros.rewards.interface import load_model

    _, model, _, _ = load_model(tmp_path)
    held = progress_sequences(seed=1)
    out = evaluate.evaluate_ranking(model, held, resolved.section, tmp_path / "eval", "cpu")
    assert out["own_goal"]["accuracy"] > 0.8, out["own_goal"]
    assert out["goal_image"]["accuracy_task_segments"] > 0.8, out["goal_image"]
    assert out["spearman_task_frames"] > 0.6, out
    assert out["reward_rise_fraction"] > 0.8, out
    assert out["coverage_rise_fraction"] == 1.0
    assert (tmp_path / "eval" / "reward.png").stat().st_size > 0
    assert model.norm_frames == 8 * 6  # norm_samples x pairs.frames of the tiny preset
    assert model.norm[1] > 0


def test_goal_render_is_a_scene_with_the_t_on_its_goal():
    table = PushTTable(image_size=64, seed=5)
    table.reset()
    before = table.ground_truth()
    frame_before = table.render()
    goal = before["goal"]
    ee = goal[:2] + np.array([GOAL_RING, 0.0])
    image = table.render_goal(ee)
    # the scene is untouched by the render
    assert np.array_equal(table.render(), frame_before)
    after = table.ground_truth()
    assert np.array_equal(after["object"], before["object"]) and np.array_equal(
        after["ee"], before["ee"]
    )
    # a real scene with the T placed on its goal and the pusher there looks the same
    other = PushTTable(image_size=64, seed=9)
    real, gt = other.reset(options={"object": goal, "ee": ee})
    assert gt["coverage"] == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(image, real)
    # the goal's green is covered: no light-green pixel is left
    green = np.all(np.abs(image.astype(int) - (144, 238, 144)) < 12, axis=-1)
    assert green.sum() == 0
    assert np.all(np.abs(frame_before.astype(int) - (144, 238, 144)) < 12, axis=-1).sum() > 20


def test_rendered_goals_place_the_pusher_around_the_t():
    task = load_task("pusht.yaml")
    goals = goal_images("sim", task, 4)
    assert goals.shape == (4, 64, 64, 3) and goals.dtype == np.uint8
    blue = np.all(np.abs(goals.astype(int) - (65, 105, 225)) < 30, axis=-1)
    centres = [np.argwhere(b).mean(0) for b in blue]
    assert len({tuple(np.round(c)) for c in centres}) == 4  # four places, one per render
    for c in centres:  # on the ring, far from the T in the middle
        assert np.hypot(*(c - 32)) == pytest.approx(GOAL_RING / 0.512 * 64, abs=1.5)
    same = np.all(goals == goals[:1], axis=-1).all(0)
    assert same.mean() > 0.9  # the rest (board, T on its goal) is the same in every render


def test_goal_image_from_a_file_and_missing_ones(tmp_path):
    import cv2

    task = load_task("pusht.yaml")
    photo = np.zeros((120, 160, 3), np.uint8)
    photo[:, :80] = (255, 0, 0)  # RGB red on the left half
    cv2.imwrite(str(tmp_path / "goal.png"), photo[..., ::-1])
    got = goal_images(str(tmp_path / "goal.png"), task, 8)
    assert got.shape == (1, 64, 64, 3)
    assert tuple(got[0, 10, 5]) == (255, 0, 0) and tuple(got[0, 10, 60]) == (0, 0, 0)
    for spec, match in [
        (str(tmp_path / "nope.png"), r"nope\.png: no such image \(a camera frame of the T"),
        ("", "goal_image is not set"),
    ]:
        with pytest.raises(UserError, match=match) as err:
            goal_images(spec, task, 8)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="only the simulated Push-T table renders") as err:
        resolve_config("push_cube.yaml", "tiny", ["reward.kind=ranking"])
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="nope.png: no such image"):
        resolve_config("pusht.yaml", "tiny", [f"reward.ranking.goal_image={tmp_path}/nope.png"])


def separable_sequences(seed: int, steps: int = 300) -> list[PlaySequence]:
    """Intent exactly when the square is in the left half of the image."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 28, (steps, 2))
    frames = np.stack([scene(32, p, (0, 26)) for p in pos])
    return [
        PlaySequence(
            bag=f"separable_{seed}",
            t_ns=np.arange(steps, dtype=np.int64),
            frames=frames,
            actions=np.zeros((steps, 3), np.float32),
            intent=pos[:, 1] < 14,
            milestone=np.zeros(steps, bool),
            segment=np.zeros(steps, np.int32),
        )
    ]


def test_intent_classifier_learns_a_separable_label(tmp_path):
    resolved = tiny(
        "reward.train.steps=150",
        "reward.train.bf16=false",
        "reward.train.batch_size=16",
        "reward.intent.encoder.channels=[16, 32]",
        config="push_cube.yaml",
    )
    fit(resolved, intent.IntentFrames(separable_sequences(0)), None, tmp_path, device="cpu")
    from dmo_ros.rewards.interface import load_reward

    reward = load_reward(tmp_path, resolved.task)
    held = separable_sequences(1)
    out = evaluate.evaluate_intent(reward.model, held, resolved.section, tmp_path / "e", "cpu")
    assert out["auc_intent"] > 0.9, out
    assert (tmp_path / "e" / "reward.png").stat().st_size > 0
    r = reward(to_model(torch.from_numpy(held[0].frames[:8])))
    assert r.shape == (8,) and bool(((r >= 0) & (r <= 2)).all())


def test_intent_labels_and_refusal_of_unlabelled_bags():
    r = intent.frame_rewards(np.array([0, 1, 1, 0], bool), np.array([0, 0, 1, 0], bool), 2.0)
    assert r.tolist() == [0.0, 1.0, 3.0, 0.0]
    unlabelled = separable_sequences(0)[0]
    unlabelled.intent = np.zeros(len(unlabelled), bool)
    with pytest.raises(UserError, match=r"no intent labels in separable_0 \(no 'intent' topic"):
        intent.check_labels([unlabelled])
    unlabelled.intent[:] = True
    with pytest.raises(UserError, match="intent is on in every step"):
        intent.check_labels([unlabelled])


def test_roc_auc_by_hand_and_with_ties():
    assert evaluate.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    # positives 0.5, 0.9 vs negatives 0.5, 0.2: pairs 1/2 (tie), 1, 1, 1 -> 3.5 / 4
    assert evaluate.roc_auc(np.array([0.5, 0.5, 0.2, 0.9]), np.array([1, 0, 0, 1])) == 0.875
    assert evaluate.roc_auc(np.ones(4), np.array([1, 0, 1, 0])) == 0.5
    assert math.isnan(evaluate.roc_auc(np.ones(3), np.ones(3)))
    fpr, tpr = evaluate.roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1] and tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)


def test_spearman_and_ranks_match_scipy():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 50).astype(float)  # many ties
    b = a + rng.normal(0, 2, 50)
    assert evaluate.average_ranks(a).tolist() == rankdata(a).tolist()
    assert evaluate.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert math.isnan(evaluate.spearman(np.ones(5), np.arange(5.0)))


def test_reward_checks_its_input_and_its_checkpoint(tmp_path):
    from dmo_ros.rewards.interface import Reward, load_reward

    resolved = tiny("reward.train.steps=2", "reward.train.bf16=false")
    data = RankingSamples(progress_sequences(1, 3), [], resolved.section.ranking.pairs, seed=0)
    fit(resolved, data, None, tmp_path, device="cpu")
    reward = load_reward(tmp_path, resolved.task)
    assert isinstance(reward, Reward)
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    assert reward(x).shape == reward(x, x).shape == (5,)
    cases = [
        (
            lambda: reward(torch.zeros(2, 3, 64, 64)),
            r"frames are 64x64 pixels, the reward "
            r"model takes 32x32",
        ),
        (lambda: reward(x, torch.zeros(5, 3, 16, 16)), "16x16 pixels"),
        (
            lambda: load_reward(tmp_path, load_task("pusht.yaml")),
            r"takes 32x32 images, task "
            r"'pusht' has 64x64",
        ),
        (
            lambda: load_reward(tmp_path, load_task("push_cube.yaml")),
            "trained for task 'pusht', not 'push_cube'",
        ),
        (lambda: load_reward(tmp_path / "nothing", resolved.task), "no such model folder"),
    ]
    for call, match in cases:
        with pytest.raises(UserError, match=match) as err:
            call()
        assert "\n" not in str(err.value)


def test_random_shift_moves_whole_images_within_the_pad():
    from dmo_ros.rewards.encoder import random_shift

    x = torch.rand(6, 3, 8, 8)
    assert torch.equal(random_shift(x, 0), x)
    y = random_shift(x, 2, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for k in range(6):  # each image is one 8x8 window of its padded self
        windows = [padded[k, :, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(y[k], w) for w in windows)
