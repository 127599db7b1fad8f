"""`dmo-ros eval reward`: how well a learned reward ranks and tracks held-out play data.

ranking -> <model>/eval/reward.json and reward.png:
* pairwise accuracy: held-out samples drawn as in training (task segments and play windows,
  each with its own start and hindsight goal frame); a pair counts when f orders it as time
  does (pairs of equal steps left out); also per kind of sample, and on task segments with
  the task's goal image(s) as the goal;
* along held-out task segments (intent spans), the reward with the goal image(s) and
  start = the segment's first frame, against the ground-truth goal coverage the simulated
  bags carry (`task/coverage`, evaluation only): Spearman's rank correlation over all those
  frames, the share of segments whose reward ends above its start (and, beside it, the share
  whose coverage does), and the same correlation over every held-out frame without a start.
intent -> reward.json and reward.png: ROC AUC of p(intent) against the held-out intent
labels (and of p(milestone) where milestones exist), with the ROC curve and a timeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmo_ros.config import build
from dmo_ros.errors import UserError
from dmo_ros.rewards import intent, ranking
from dmo_ros.rewards.encoder import to_model
from dmo_ros.rewards.interface import load_model
from dmo_ros.rewards.ranking import RankingSamples, pair_labels
from dmo_ros.rewards.train import SECTION, EvalConfig, RewardSection, task_spans
from dmo_ros.task import TaskConfig
from dmo_ros.training.device import pick_device
from dmo_ros.worldmodels.evaluate import held_out


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of x, ties sharing the mean of their ranks."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson of average ranks); NaN when either is constant."""
    ra, rb = average_ranks(a) - (len(a) + 1) / 2.0, average_ranks(b) - (len(b) + 1) / 2.0
    den = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative) + P(tie) / 2."""
    labels = np.asarray(labels, bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    rank_sum = average_ranks(scores)[labels].sum()
    return float((rank_sum - pos * (pos + 1) / 2.0) / (pos * neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) at every distinct threshold, from (0, 0)."""
    labels = np.asarray(labels, bool)
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    s, y = np.asarray(scores)[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the end of each group of ties
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return np.r_[0.0, fp / max(1, (~labels).sum())], np.r_[0.0, tp / max(1, labels.sum())]


@torch.no_grad()
def frame_rewards(model, frames: np.ndarray, starts: np.ndarray | None, batch: int, device):
    """The model's reward of uint8 frames [N,H,W,3] (starts: the same, or None) -> [N]."""
    out = []
    for a in range(0, len(frames), batch):
        f = to_model(torch.from_numpy(np.array(frames[a : a + batch])).to(device))
        s = None
        if starts is not None:
            s = to_model(torch.from_numpy(np.array(starts[a : a + batch])).to(device))
        out.append(model.reward(f, s).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


@torch.no_grad()
def pair_accuracy(model, samples: RankingSamples, count: int, device, goals=None) -> dict:
    """Share of correctly ordered pairs over `count` samples: all, task segments, windows."""
    right = {True: 0, False: 0}
    total = {True: 0, False: 0}
    for i in range(count):
        item = {k: v[None].to(device) for k, v in samples[i].items()}
        if goals is not None:
            frames = to_model(item["frames"][0])
            start = to_model(item["start"]).expand_as(frames)
            f = model.raw(frames, start, goals)[None]
        else:
            f = model.sample_energy(item)
        later, used = pair_labels(item["t"])
        ok = ((f[:, :, None] > f[:, None, :]) == later)[used]
        task = bool(item["task"])
        right[task] += int(ok.sum())
        total[task] += int(ok.numel())
    share = lambda r, n: r / n if n else float("nan")  # noqa: E731
    return {
        "accuracy": share(sum(right.values()), sum(total.values())),
        "accuracy_task_segments": share(right[True], total[True]),
        "accuracy_windows": share(right[False], total[False]),
        "pairs": sum(total.values()),
        "pairs_task_segments": total[True],
    }


def evaluate_ranking(model, sequences, section: RewardSection, out: Path, device) -> dict:
    cfg: EvalConfig = section.eval
    spans = task_spans(sequences, ground_truth=True)
    samples = RankingSamples(sequences, spans, section.ranking.pairs, cfg.seed)
    results: dict[str, Any] = {"kind": "ranking", "definitions": DEFINITIONS["ranking"]}
    results["own_goal"] = pair_accuracy(model, samples, cfg.samples, device)
    task_only = RankingSamples(
        sequences, spans, dataclasses.replace(section.ranking.pairs, task_fraction=1.0), cfg.seed
    )
    if task_only.tasks is not None:
        goals = to_model(model.goals)
        got = pair_accuracy(model, task_only, cfg.samples, device, goals)
        results["goal_image"] = {"accuracy_task_segments": got["accuracy_task_segments"]}

    segments = []
    for s in spans:
        seq = sequences[s.seq]
        frames = seq.frames[s.start : s.end]
        starts = np.broadcast_to(seq.frames[s.start], frames.shape)
        r = frame_rewards(model, frames, starts, cfg.batch_size, device)
        cov = np.asarray(seq.coverage[s.start : s.end], np.float64)
        segments.append({"bag": str(seq.bag), "start": s.start, "reward": r, "coverage": cov})
    results["task_segments"] = len(segments)
    results["task_segments_succeeded"] = sum(s.succeeded for s in spans)
    long_enough = [g for g in segments if len(g["reward"]) >= 2]
    rises = [bool(g["reward"][-1] > g["reward"][0]) for g in long_enough]
    results["reward_rise_fraction"] = float(np.mean(rises)) if rises else float("nan")
    covered = [g for g in long_enough if np.isfinite(g["coverage"][[0, -1]]).all()]
    if covered:
        results["coverage_rise_fraction"] = float(
            np.mean([g["coverage"][-1] > g["coverage"][0] for g in covered])
        )
    r_all = np.concatenate([g["reward"] for g in segments]) if segments else np.zeros(0)
    c_all = np.concatenate([g["coverage"] for g in segments]) if segments else np.zeros(0)
    ok = np.isfinite(c_all)
    results["coverage_frames"] = int(ok.sum())
    if ok.sum() >= 2:
        results["spearman_task_frames"] = spearman(r_all[ok], c_all[ok])
    cov = np.concatenate([np.asarray(s.coverage, np.float64) for s in sequences])
    every = np.concatenate(
        [frame_rewards(model, s.frames, None, cfg.batch_size, device) for s in sequences]
    )
    ok = np.isfinite(cov)
    if ok.sum() >= 2:
        results["spearman_all_frames_no_start"] = spearman(every[ok], cov[ok])
    results["reward_mean_std"] = [float(every.mean()), float(every.std())]
    results["norm"] = model.norm.tolist()
    out.mkdir(parents=True, exist_ok=True)
    (out / "reward.json").write_text(json.dumps(results, indent=1))
    _plot_ranking(segments, r_all, c_all, results, cfg.plot_segments, out / "reward.png")
    return results


def evaluate_intent(model, sequences, section: RewardSection, out: Path, device) -> dict:
    cfg = section.eval
    probs = []
    for seq in sequences:
        p = []
        for a in range(0, len(seq), cfg.batch_size):
            f = to_model(torch.from_numpy(np.array(seq.frames[a : a + cfg.batch_size])))
            p.append(model.probabilities(f.to(device)).float().cpu())
        probs.append(torch.cat(p).numpy())
    p = np.concatenate(probs)
    labels = np.concatenate([np.asarray(s.intent, bool) for s in sequences])
    miles = np.concatenate([np.asarray(s.milestone, bool) for s in sequences])
    if labels.all() or not labels.any():
        raise UserError("eval reward: the held-out bags need both intent and play steps")
    bonus = model.cfg.milestone_bonus
    reward = p[:, 0] + bonus * p[:, 1]
    label_reward = intent.frame_rewards(labels, miles, bonus)
    results = {
        "kind": "intent",
        "definitions": DEFINITIONS["intent"],
        "frames": len(labels),
        "intent_share": float(labels.mean()),
        "auc_intent": roc_auc(p[:, 0], labels),
        "accuracy_intent": float(((p[:, 0] > 0.5) == labels).mean()),
        "milestones": int(miles.sum()),
        "auc_milestone": roc_auc(p[:, 1], miles) if miles.any() else None,
        "auc_reward_vs_intent": roc_auc(reward, labels),
        "spearman_reward_vs_label_reward": spearman(reward, label_reward),
        "reward_mean_intent": float(reward[labels].mean()),
        "reward_mean_play": float(reward[~labels].mean()),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "reward.json").write_text(json.dumps(results, indent=1))
    _plot_intent(p[:, 0], labels, reward, results, out / "reward.png")
    return results


DEFINITIONS = {
    "ranking": {
        "own_goal.accuracy": "share of frame pairs (i, j) of held-out samples, drawn as in "
        "training with their own start and hindsight goal frame, where f(s_i) > f(s_j) "
        "exactly when i is later; pairs of the same step left out",
        "goal_image.accuracy_task_segments": "the same over task-segment samples with the "
        "task's goal image(s) as the goal (scores averaged over them)",
        "reward_rise_fraction": "share of held-out task segments (intent spans, >= 2 steps) "
        "whose reward (goal image, start = first frame) at the last step exceeds the first",
        "coverage_rise_fraction": "the same for the ground-truth goal coverage",
        "spearman_task_frames": "Spearman's rho of reward and coverage over all frames of the "
        "held-out task segments (reward with start = the segment's first frame)",
        "spearman_all_frames_no_start": "Spearman's rho over every held-out frame with "
        "coverage, the reward without a start",
    },
    "intent": {
        "auc_intent": "ROC AUC of p(intent) against the intent label of every held-out frame "
        "(ties count one half)",
        "auc_milestone": "ROC AUC of p(milestone) against the milestone steps",
        "auc_reward_vs_intent": "ROC AUC of the reward p(intent) + bonus * p(milestone)",
        "spearman_reward_vs_label_reward": "Spearman's rho of the reward and the label "
        "reward intent + bonus * milestone",
    },
}


def _plot_ranking(segments, r_all, c_all, results, count: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    pick = sorted(segments, key=lambda g: -len(g["reward"]))[:count]
    for k, g in enumerate(pick):
        t = np.arange(len(g["reward"]))
        line = ax.plot(t, g["reward"], label=f"reward {k}")[0]
        if np.isfinite(g["coverage"]).any():
            ax.plot(t, 4 * g["coverage"] - 2, "--", color=line.get_color(), alpha=0.6)
    ax.set_xlabel("step in the held-out task segment (0.2 s)")
    ax.set_ylabel("reward (solid); 4 x coverage - 2 (dashed)")
    ax.set_title("longest held-out task segments")
    ax.grid(alpha=0.3)
    ax = axes[1]
    ok = np.isfinite(c_all)
    ax.scatter(c_all[ok], r_all[ok], s=3, alpha=0.3)
    rho = results.get("spearman_task_frames", float("nan"))
    ax.set_title(f"task-segment frames: Spearman {rho:.3f}")
    ax.set_xlabel("ground-truth goal coverage")
    ax.set_ylabel("reward (goal image, start = segment start)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_intent(p, labels, reward, results, path: Path, span: int = 600) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 2]})
    fpr, tpr = roc_curve(p, labels)
    axes[0].plot(fpr, tpr)
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set_title(f"p(intent) ROC, AUC {results['auc_intent']:.3f}")
    axes[0].set_xlabel("false-positive rate")
    axes[0].set_ylabel("true-positive rate")
    t = np.arange(min(span, len(p)))
    axes[1].fill_between(t, 0, labels[t], step="post", alpha=0.2, label="intent label")
    axes[1].plot(t, reward[t], label="reward")
    axes[1].set_xlabel("held-out step (0.2 s)")
    axes[1].legend()
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    kind, model, ckpt, file = load_model(args.model)
    config = ckpt.get("config", {})
    source = str(file)
    try:
        task = build(TaskConfig, config["task"], source, "task.")
        section = build(RewardSection, config[SECTION], source, f"{SECTION}.")
    except KeyError:
        raise UserError(f"{file}: checkpoint lacks its training config") from None
    if task.image_size != model.cfg.image_size:
        raise UserError(f"{file}: task image size {task.image_size} != {model.cfg.image_size}")
    if kind == ranking.KIND and int(model.norm_frames) == 0:
        raise UserError(f"{file}: ranking reward is not normalised yet (finish it with --resume)")
    sequences = held_out(ckpt, list(args.bags), task)
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    out = Path(args.out) if args.out else run_dir / "eval"
    if section.train.threads > 0:
        torch.set_num_threads(section.train.threads)
    model.to(device)
    if kind == ranking.KIND:
        r = evaluate_ranking(model, sequences, section, out, device)
        print(
            f"ranking reward: pair accuracy {r['own_goal']['accuracy']:.3f}, reward rises on "
            f"{r['reward_rise_fraction']:.0%} of {r['task_segments']} task segments, Spearman "
            f"with coverage {r.get('spearman_task_frames', float('nan')):.3f} -> {out}"
        )
    else:
        r = evaluate_intent(model, sequences, section, out, device)
        print(f"intent reward: AUC {r['auc_intent']:.3f} on {r['frames']} frames -> {out}")
    return 0
