"""The scripted tele-operator on both simulated robots: contact-rich play with both labels."""

import numpy as np
import pytest

from dmo_ros.errors import UserError
from dmo_ros.sim import make_sim
from dmo_ros.sim.auto_play import AutoPlay
from dmo_ros.sim.pusht_table import PushTTable

GT_KEYS = {"pusht": ("ee", "object", "goal"), "go2": ("base", "cube", "goal", "success")}


def play(robot: str, seed: int, steps: int) -> dict:
    env = make_sim(robot, seed=seed)
    _, gt = env.reset()
    operator = AutoPlay(robot, seed=seed)
    low, high = env.action_space.low, env.action_space.high
    contact, intent, successes, actions = [], [], 0, []
    for _ in range(steps):
        # the operator sees only what a ROS node gets from the pose topics
        action, label = operator.act({k: gt[k] for k in GT_KEYS[robot]})
        assert action.shape == low.shape and np.all(np.isfinite(action))
        assert np.all(action >= low - 1e-6) and np.all(action <= high + 1e-6)
        _, _, terminated, _, gt = env.step(action)
        contact.append(gt["contact"])
        intent.append(label)
        actions.append(action)
        if terminated:  # a new scene after a success, as an operator asks `reset` for
            successes += 1
            _, gt = env.reset()
    return {
        "contact": float(np.mean(contact)),
        "intent": float(np.mean(intent)),
        "successes": successes,
        "actions": np.array(actions),
        "gt": gt,
    }


@pytest.mark.parametrize(("robot", "seed"), [("pusht", 4), ("go2", 4)])
def test_auto_play_touches_the_object_and_labels_both_ways(robot, seed):
    result = play(robot, seed, 300)
    print(
        f"\n{robot}: contact ratio {result['contact']:.3f}, intent ratio {result['intent']:.3f}, "
        f"successes {result['successes']} in 300 steps"
    )
    assert result["contact"] >= 0.3
    assert 0.0 < result["intent"] < 1.0
    # varied, not a constant command
    assert np.std(result["actions"], axis=0).min() > 0.1 * np.abs(result["actions"]).max()
    if robot == "pusht":  # and the T is still on the board after all that pushing
        assert np.all((result["gt"]["object"][:2] > 0.0) & (result["gt"]["object"][:2] < 0.512))


def test_auto_play_is_seeded():
    a = play("pusht", 5, 40)["actions"]
    b = play("pusht", 5, 40)["actions"]
    c = play("pusht", 6, 40)["actions"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_pusht_workspace_defaults_match_the_table():
    operator = AutoPlay("pusht")
    table = PushTTable()
    assert np.allclose(operator._op.low, table.workspace_low)
    assert np.allclose(operator._op.high, table.workspace_high)
    with pytest.raises(UserError, match="unknown option"):
        AutoPlay("go2", workspace_low=(0, 0))
    with pytest.raises(UserError, match="unknown robot"):
        AutoPlay("spot")
