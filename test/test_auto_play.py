"""The scripted tele-operator on both simulated robots: contact-rich play with both labels,
task attempts that end on success (one milestone, a moment of staying, intent off)."""

import numpy as np
import pytest

from dmo_ros.errors import UserError
from dmo_ros.sim import make_sim
from dmo_ros.sim.auto_play import HOLD_STEPS, Act, AutoPlay
from dmo_ros.sim.pusht_table import PushTTable

# what the auto_play node gets from the sim driver's topics
GT_KEYS = {
    "pusht": ("ee", "object", "goal", "success", "coverage"),
    "go2": ("base", "cube", "goal", "success"),
}


def play(robot: str, seed: int, steps: int) -> dict:
    """The operator on a scene that is never reset (as under ROS: the sim driver keeps a
    scene at success, so that the operator can stay)."""
    env = make_sim(robot, seed=seed)
    _, gt = env.reset()
    operator = AutoPlay(robot, seed=seed)
    low, high = env.action_space.low, env.action_space.high
    contact, intent, milestones, success, actions = [], [], [], [], []
    for _ in range(steps):
        # the operator sees only what a ROS node gets from the pose and task topics
        out = operator.act({k: gt[k] for k in GT_KEYS[robot]})
        assert isinstance(out, Act)
        action, label, milestone = out
        assert action.shape == low.shape and np.all(np.isfinite(action))
        assert np.all(action >= low - 1e-6) and np.all(action <= high + 1e-6)
        success.append(gt["success"])
        _, _, _, _, gt = env.step(action)
        contact.append(gt["contact"])
        intent.append(label)
        milestones.append(milestone)
        actions.append(action)
    env.close()
    return {
        "contact": float(np.mean(contact)),
        "intent": np.array(intent),
        "milestone": np.array(milestones),
        "success": np.array(success),
        "actions": np.array(actions),
        "gt": gt,
        "operator": operator,
    }


@pytest.mark.parametrize(("robot", "seed"), [("pusht", 4), ("go2", 4)])
def test_auto_play_touches_the_object_and_labels_both_ways(robot, seed):
    result = play(robot, seed, 300)
    intent = result["intent"]
    print(
        f"\n{robot}: contact ratio {result['contact']:.3f}, intent ratio {intent.mean():.3f}, "
        f"milestones {result['milestone'].sum()} in 300 steps"
    )
    assert result["contact"] >= 0.3
    assert 0.0 < intent.mean() < 1.0
    # varied, not a constant command
    assert np.std(result["actions"], axis=0).min() > 0.1 * np.abs(result["actions"]).max()
    # milestones only within task attempts, at most one per attempt
    assert not (result["milestone"] & ~intent).any()
    starts = np.flatnonzero(np.diff(np.concatenate([[0], intent.astype(int)])) == 1)
    per_attempt = np.add.reduceat(result["milestone"].astype(int), starts) if len(starts) else []
    assert np.all(np.asarray(per_attempt) <= 1)
    if robot == "pusht":  # and the T is still on the board after all that pushing
        assert np.all((result["gt"]["object"][:2] > 0.0) & (result["gt"]["object"][:2] < 0.512))


def test_pusht_attempts_succeed():
    """Seeded 1,500 steps (5 min of play): most task attempts reach the goal (coverage 0.95),
    each success pressed as one milestone at the step it is seen."""
    result = play("pusht", 1, 1500)
    intent, milestone, success = result["intent"], result["milestone"], result["success"]
    operator = result["operator"]
    assert operator.attempts >= 4
    assert operator.successes == milestone.sum() >= 0.3 * operator.attempts
    assert success[milestone].all()  # pressed when the success was seen, intent on
    assert intent[milestone].all()


def test_pusht_success_stops_pushing_presses_once_and_ends_the_attempt():
    """From a scene near the goal: success, then the operator stays (no contact, the T keeps
    its coverage) for HOLD_STEPS steps with the intent on, and ends the attempt; while the T
    is at success no new attempt starts."""
    env = PushTTable(seed=0)
    goal = env.reset()[1]["goal"]
    _, gt = env.reset(options={"object": goal + np.array([0.012, -0.008, 0.15]), "ee": (0.1, 0.1)})
    assert gt["coverage"] < 0.8
    operator = AutoPlay("pusht", seed=0, task_prob=1.0, wander_prob=0.0)
    log = []
    for _ in range(200):
        action, intent, milestone = operator.act({k: gt[k] for k in GT_KEYS["pusht"]})
        seen = gt["success"]
        _, _, _, _, gt = env.step(action)
        log.append((intent, milestone, seen, gt["contact"], gt["object"], action))
    intent, milestone, seen, contact = (np.array([r[i] for r in log]) for i in range(4))
    pose, actions = (np.array([r[i] for r in log]) for i in (4, 5))
    assert milestone.sum() == 1 and operator.successes == operator.attempts == 1
    at = int(np.flatnonzero(milestone)[0])
    assert at == int(np.argmax(seen)) < 150  # pressed at the first step success is seen
    hold = slice(at, at + HOLD_STEPS)
    assert intent[hold].all() and not intent[at + HOLD_STEPS :].any()
    # the T stays where it is; the end-effector is off it after the first step
    assert (
        np.abs(pose[hold] - pose[at]).max() < 5e-4 and not contact[at + 1 : at + HOLD_STEPS].any()
    )
    assert np.abs(actions[at + 1 : at + HOLD_STEPS]).max() <= 0.0015 + 1e-6  # backing off slowly
    assert seen[at + HOLD_STEPS :].all()  # played with, the T stays put (no new attempt)


def test_go2_attempt_ends_on_success():
    env = make_sim("go2", seed=0)
    _, gt = env.reset(options={"base": (-0.3, 0.1, 0.0), "cube": (0.3, 0.0, 0.0)})
    operator = AutoPlay("go2", seed=0, task_prob=1.0, wander_prob=0.0)
    log = []
    for _ in range(40):
        action, intent, milestone = operator.act({k: gt[k] for k in GT_KEYS["go2"]})
        log.append((intent, milestone, gt["success"], action))
        _, _, _, _, gt = env.step(action)
    env.close()
    intent, milestone, seen = (np.array([r[i] for r in log]) for i in range(3))
    actions = np.array([r[3] for r in log])
    assert milestone.sum() == 1 and operator.successes == operator.attempts == 1
    at = int(np.flatnonzero(milestone)[0])
    assert at == int(np.argmax(seen)) < 30
    assert intent[: at + HOLD_STEPS].all() and not intent[at + HOLD_STEPS :].any()
    hold = actions[at : at + HOLD_STEPS]
    assert np.all(hold[:, 0] < 0.0) and np.abs(hold).max() <= 0.1 + 1e-6  # stepping back slowly


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


class _Sent:
    """Stands in for a publisher: keeps what the node publishes."""

    def __init__(self) -> None:
        self.messages: list = []

    def publish(self, msg) -> None:
        self.messages.append(msg)


def test_node_sees_success_and_presses_the_milestone(ros_context):
    """The auto_play node's wiring, fed the sim driver's messages step by step (callbacks
    called directly: deterministic): task/success and task/coverage reach the operator, the
    success is pressed once on milestone_press with the intent on, and report() counts it."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Bool, Float32

    from dmo_ros.nodes.auto_play import AutoPlayNode
    from dmo_ros.nodes.msgs import planar_pose

    node = AutoPlayNode(context=ros_context)
    node._player = AutoPlay("pusht", seed=0, task_prob=1.0, wander_prob=0.0)
    node._action_pub, node._intent_pub, node._milestone_pub = _Sent(), _Sent(), _Sent()
    try:
        env = PushTTable(seed=0)
        goal = env.reset()[1]["goal"]
        _, gt = env.reset(options={"object": goal + np.array([0.006, 0.004, -0.1])})
        stamp, seen, pressed = Time(), [], []
        node._on_frame(b"")  # no state yet: nothing is published
        assert not node._action_pub.messages
        for _ in range(150):
            node._on_ee(planar_pose(stamp, "world", *gt["ee"]))
            node._on_object(planar_pose(stamp, "world", *gt["object"]))
            node._on_goal(planar_pose(stamp, "world", *gt["goal"]))
            node._on_success(Bool(data=bool(gt["success"])))
            node._on_coverage(Float32(data=float(gt["coverage"])))
            node._on_frame(b"")
            seen.append(gt["success"])
            pressed.append(len(node._milestone_pub.messages))
            delta = node._action_pub.messages[-1].pose.position
            _, _, _, _, gt = env.step(np.array([delta.x, delta.y]))
        intent = [m.data for m in node._intent_pub.messages]
        assert len(node._milestone_pub.messages) == node.milestones == 1
        at = pressed.index(1)
        assert seen.index(True) == at and intent[at]  # at the first success, intent on
        assert intent[at + HOLD_STEPS - 1] and not intent[at + HOLD_STEPS]
        assert "1 task attempts, 1 succeeded (100%)" in node.report()
    finally:
        node.destroy_node()
