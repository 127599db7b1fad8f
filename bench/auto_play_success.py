"""Task attempts of the scripted tele-operator (auto-play): how many reach success.

Pure Python, no ROS: the simulated robot and `AutoPlay` in a loop, the operator seeing what
the auto_play node gets (poses, and task/success, task/coverage), the scene never reset on
success (the sim driver does not reset it either, so the operator can stay at the goal).
For each robot and seed, STEPS control steps (9,000 = 30 min of play at 5 Hz):

* attempts: maximal runs of intent-on steps (the operator's task attempts);
* successes: attempts in which the ground truth reports success at some step (and, from the
  operator, attempts with a milestone press: the two agree for the current operator);
* intent share of the steps, contact ratio (steps in which the robot touched the object);
* Push-T: fraction of the frames with goal coverage >= 0.8 and >= 0.95, and per attempt the
  coverage gain (last step - first step) and the best coverage reached.

`--operator FILE --label before` measures another version of `dmo_ros/sim/auto_play.py`
(e.g. a copy of the old one: its `act` may return (action, intent) only); `--old-node` gives
the operator only the poses, as the auto_play node did before it subscribed task/success
(under ROS the old Go2 operator never saw a success). Results of every label are kept in
bench/results/auto_play_success.json; the PNG shows, per label, the histogram of the best
coverage reached per Push-T attempt, and the coverage over time.

    python bench/auto_play_success.py --operator /tmp/auto_play_before.py --label before
    python bench/auto_play_success.py --operator /tmp/auto_play_before.py --old-node \
        --robots go2 --label before_ros
    python bench/auto_play_success.py            # the current operator: label "after"
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dmo_ros.sim import make_sim

STEPS = 9000
SEEDS = (0, 1)
RESULTS = Path(__file__).resolve().parent / "results"
# what the auto_play node puts into the ground-truth dict (from the sim driver's topics)
KEYS = {
    "pusht": ("ee", "object", "goal", "success", "coverage"),
    "go2": ("base", "cube", "goal", "success"),
}
# what it got before it subscribed task/success and task/coverage (--old-node)
OLD_NODE_KEYS = {"pusht": ("ee", "object", "goal"), "go2": ("base", "cube", "goal")}


def load_operator(path: str | None):
    if path is None:
        from dmo_ros.sim.auto_play import AutoPlay

        return AutoPlay
    spec = importlib.util.spec_from_file_location("auto_play_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AutoPlay


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of True, end exclusive."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def play(operator_cls, robot: str, seed: int, steps: int, keys: dict = KEYS) -> dict:
    env = make_sim(robot, seed=seed)
    _, gt = env.reset()
    operator = operator_cls(robot, seed=seed)
    n = steps
    intent, milestone = np.zeros(n, bool), np.zeros(n, bool)
    success, contact = np.zeros(n, bool), np.zeros(n, bool)
    coverage = np.full(n, np.nan)
    start = time.perf_counter()
    for t in range(n):
        out = operator.act({k: gt[k] for k in keys[robot] if k in gt})
        action, label = out[0], out[1]
        intent[t], milestone[t] = bool(label), bool(out[2]) if len(out) > 2 else False
        success[t] = bool(gt["success"])  # of the frame the action was chosen on
        coverage[t] = gt.get("coverage", np.nan)
        _, _, _, _, gt = env.step(action)
        contact[t] = bool(gt["contact"])
    seconds = time.perf_counter() - start
    env.close()
    spans = runs(intent)
    won = [bool(success[a:b].any()) for a, b in spans]
    pressed = [bool(milestone[a:b].any()) for a, b in spans]
    to_success = [int(np.argmax(success[a:b])) for (a, b), w in zip(spans, won) if w]
    out = {
        "robot": robot,
        "seed": seed,
        "steps": n,
        "attempts": len(spans),
        "successes": int(sum(won)),
        "success_rate": float(np.mean(won)) if spans else None,
        "attempts_with_milestone": int(sum(pressed)),
        "milestones": int(milestone.sum()),
        "milestones_outside_intent": int((milestone & ~intent).sum()),
        "intent_share": float(intent.mean()),
        "contact_ratio": float(contact.mean()),
        "attempt_steps_mean": float(np.mean([b - a for a, b in spans])) if spans else None,
        "steps_to_success_median": float(np.median(to_success)) if to_success else None,
        "steps_to_success_p90": float(np.percentile(to_success, 90)) if to_success else None,
        "steps_to_success_max": int(max(to_success)) if to_success else None,
        "success_frames_share": float(success.mean()),
        "wall_s": round(seconds, 1),
    }
    if robot == "pusht":
        out.update(
            {
                "coverage_ge_0.8": float(np.mean(coverage >= 0.8)),
                "coverage_ge_0.95": float(np.mean(coverage >= 0.95)),
                "coverage_gain_mean": float(
                    np.mean([coverage[b - 1] - coverage[a] for a, b in spans])
                )
                if spans
                else None,
                "best_coverage_gain_mean": float(
                    np.mean([coverage[a:b].max() - coverage[a] for a, b in spans])
                )
                if spans
                else None,
                "attempt_best_coverage": [round(float(coverage[a:b].max()), 4) for a, b in spans],
                "coverage_trace": [round(float(c), 3) for c in coverage[::5]],
            }
        )
    return out


def summary(per_seed: list[dict]) -> dict:
    attempts = sum(r["attempts"] for r in per_seed)
    successes = sum(r["successes"] for r in per_seed)
    s = {
        "attempts": attempts,
        "successes": successes,
        "success_rate": successes / attempts if attempts else None,
        "intent_share": float(np.mean([r["intent_share"] for r in per_seed])),
        "contact_ratio": float(np.mean([r["contact_ratio"] for r in per_seed])),
    }
    if per_seed[0]["robot"] == "pusht":
        for k in ("coverage_ge_0.8", "coverage_ge_0.95"):
            s[k] = float(np.mean([r[k] for r in per_seed]))
        w = [r["attempts"] for r in per_seed]
        for k in ("coverage_gain_mean", "best_coverage_gain_mean"):
            vals = [r[k] for r in per_seed if r[k] is not None]
            s[k] = float(np.average(vals, weights=[x for x in w if x])) if vals else None
    return s


def plot(results: dict, path: Path) -> None:
    labels = sorted(k for k, v in results["labels"].items() if "pusht" in v)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2))
    bins = np.linspace(0.0, 1.0, 21)
    for label in labels:
        best = [
            c
            for r in results["labels"][label]["pusht"]["seeds"]
            for c in r["attempt_best_coverage"]
        ]
        rate = results["labels"][label]["pusht"]["summary"]["success_rate"] or 0.0
        ax0.hist(
            best, bins=bins, alpha=0.55, label=f"{label}: {len(best)} attempts, {rate:.0%} succeed"
        )
        trace = results["labels"][label]["pusht"]["seeds"][0]["coverage_trace"]
        ax1.plot(np.arange(len(trace)) * 5 * 0.2 / 60, trace, lw=0.6, label=label)
    ax0.axvline(0.95, color="k", ls="--", lw=0.8)
    ax0.set_xlabel("best goal coverage reached in the attempt")
    ax0.set_ylabel("task attempts")
    ax0.set_title("Push-T auto-play: per-attempt best coverage (all seeds)")
    ax0.legend(fontsize=8)
    ax1.axhline(0.95, color="k", ls="--", lw=0.8)
    ax1.set_xlabel("play time (min, 5 Hz)")
    ax1.set_ylabel("goal coverage")
    ax1.set_title("coverage over time, first seed")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--robots", nargs="+", default=["pusht", "go2"])
    p.add_argument("--operator", help="another auto_play.py to measure (default: the package's)")
    p.add_argument("--label", default="after", help="name of this measurement in the JSON")
    p.add_argument(
        "--old-node",
        action="store_true",
        help="give the operator only the poses (the auto_play node before task/success)",
    )
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    operator_cls = load_operator(args.operator)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = RESULTS / "auto_play_success.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {"labels": {}}
    entry = {}
    for robot in args.robots:
        keys = OLD_NODE_KEYS if args.old_node else KEYS
        per_seed = [play(operator_cls, robot, seed, args.steps, keys) for seed in args.seeds]
        s = summary(per_seed)
        entry[robot] = {"summary": s, "seeds": per_seed}
        line = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in s.items()
        )
        print(f"{args.label} {robot} ({args.steps} steps x seeds {args.seeds}): {line}")
        for r in per_seed:
            print(
                f"  seed {r['seed']}: {r['successes']}/{r['attempts']} attempts succeed, "
                f"{r['milestones']} milestones, intent {r['intent_share']:.0%}, "
                f"contact {r['contact_ratio']:.0%}, {r['wall_s']} s"
            )
    results["labels"][args.label] = entry
    results["labels"][args.label]["meta"] = {
        "operator": args.operator or "dmo_ros/sim/auto_play.py",
        "steps": args.steps,
        "seeds": args.seeds,
        "ground_truth": {
            r: list((OLD_NODE_KEYS if args.old_node else KEYS)[r]) for r in args.robots
        },
        "python": platform.python_version(),
    }
    out_json.write_text(json.dumps(results, indent=1))
    if any("pusht" in v for v in results["labels"].values()):
        plot(results, RESULTS / "auto_play_success.png")
    print(f"saved {out_json}")


if __name__ == "__main__":
    main()
