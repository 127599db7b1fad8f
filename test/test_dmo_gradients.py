"""The DMO gradient (rl/coupling.py, rl/imagination.py, rl/dmo_sapo.py), the issue's tests:

1. with the RSSM's own prior as the forward model, the DMO gradient is plain BPTT;
2. on a linear system with known Jacobians: an exact local model gives the analytic policy
   gradient; with a wrong forward model the values follow the forward model and the gradient
   the local one (an adjoint recursion with the local Jacobians at the forward states);
3. an actor step leaves the encoder, the reward model and the forward model without gradient.
And SAPO's lambda-returns against Eq. (6) written out.
"""

import numpy as np
import pytest
import torch
from torch import nn

from dmo_ros.config import build
from dmo_ros.rl.coupling import couple
from dmo_ros.rl.dmo_sapo import Learner, PolicySection
from dmo_ros.rl.imagination import unroll
from dmo_ros.rl.policy import Actor, ActorConfig
from dmo_ros.rl.sapo import lambda_returns
from dmo_ros.worldmodels.rssm import RSSM, RSSMConfig

SIZE, A, L, H = 16, 2, 3, 5


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_rssm(decoder: bool = False) -> RSSM:
    torch.manual_seed(0)
    cfg = RSSMConfig(
        action_dim=A, image_size=SIZE, deter=16, hidden=16, stoch=4, classes=4, cnn_depth=4,
        decoder=decoder,
    )  # fmt: skip
    rssm = RSSM(cfg)
    # a reward head that is not zero (it starts at zero output by design)
    for p in rssm.reward_head.parameters():
        nn.init.normal_(p, std=0.3)
    return rssm


def contexts(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(3, L, 3, SIZE, SIZE, generator=g) * 2 - 1
    return frames, torch.rand(3, L, A, generator=g) * 2 - 1


def mean_colour(frames: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    return frames.mean((1, 2, 3))


def test_dmo_with_the_rssm_prior_as_forward_model_is_plain_bptt():
    rssm = tiny_rssm(decoder=True)
    actor = Actor(rssm.feature_dim, A, ActorConfig(hidden=[16]))
    frames, actions = contexts()
    params = list(actor.parameters())

    torch.manual_seed(1)
    traj = unroll(rssm, actor, None, mean_colour, frames, actions, H)
    dmo = torch.autograd.grad(traj.local_rewards.sum() + traj.log_probs.sum(), params)

    # BPTT written out: the same random draws in the same order, no coupling
    torch.manual_seed(1)
    with torch.no_grad():
        posts, _ = rssm.observe_sequence(frames, actions)
    state = {k: v[:, -1] for k, v in posts.items()}
    total = 0.0
    for _ in range(H):
        action, log_prob = actor(rssm.features(state))
        state = rssm.imagine(state, action)
        total = total + rssm.reward(rssm.features(state)).sum() + log_prob.sum()
    bptt = torch.autograd.grad(total, params)
    assert float(total.detach()) == pytest.approx(
        float((traj.local_rewards.sum() + traj.log_probs.sum()).detach())
    )
    for a, b in zip(dmo, bptt):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


class LinearPolicy(nn.Module):
    def __init__(self, k: np.ndarray):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k))

    def forward(self, x):
        return x @ self.k.T


def dmo_linear(k, a_loc, b_loc, a_fwd, b_fwd, x0, steps):
    """J = sum_t -|x_t|^2 over a DMO unroll: local values' gradient, forward values."""
    policy = LinearPolicy(k)
    a_loc, b_loc, a_fwd, b_fwd = (torch.tensor(m) for m in (a_loc, b_loc, a_fwd, b_fwd))
    x, xs, total = torch.tensor(x0), [], 0.0
    for _ in range(steps):
        u = policy(x)
        local = x @ a_loc.T + u @ b_loc.T
        with torch.no_grad():
            observed = x @ a_fwd.T + u @ b_fwd.T
        x = couple(local, observed)
        xs.append(x.detach().numpy())
        total = total - x.square().sum()
    (grad,) = torch.autograd.grad(total, [policy.k])
    return float(total.detach()), grad.numpy(), np.stack(xs)


def adjoint_gradient(k, a_loc, b_loc, xs, x0):
    """dJ/dK by the adjoint recursion with the local Jacobians at the states `xs`."""
    states = np.concatenate([x0[None], xs])  # x_0 .. x_T
    steps = len(xs)
    g = -2 * states[steps]  # dJ/dx_T
    grad = np.zeros_like(k)
    for t in range(steps - 1, -1, -1):  # x_{t+1} = (A + B K) x_t
        grad += b_loc.T @ g[:, None] @ states[t][None]
        if t:
            g = -2 * states[t] + (a_loc + b_loc @ k).T @ g
    return grad


def test_dmo_gradient_is_the_analytic_one_and_follows_the_local_model():
    rng = np.random.default_rng(0)
    a = np.array([[1.0, 0.1], [-0.2, 0.95]])
    b = np.array([[0.5, 0.0], [0.1, 0.3]])
    k = rng.normal(size=(2, 2)) * 0.3
    x0 = np.array([1.0, -0.5])
    steps = 6

    # exact local model: the gradient of the true return, from its closed form
    j, grad, xs = dmo_linear(k, a, b, a, b, x0, steps)
    kt = torch.tensor(k, requires_grad=True)
    closed = torch.tensor(a) + torch.tensor(b) @ kt
    xt, total = torch.tensor(x0), 0.0
    for _ in range(steps):
        xt = closed @ xt
        total = total - xt.square().sum()
    (analytic,) = torch.autograd.grad(total, [kt])
    assert j == pytest.approx(float(total.detach()))
    np.testing.assert_allclose(grad, analytic.numpy(), rtol=1e-10)
    np.testing.assert_allclose(grad, adjoint_gradient(k, a, b, xs, x0), rtol=1e-10)

    # a wrong forward model: values from it, the gradient from the local Jacobians there
    a_fwd, b_fwd = a + np.array([[0.0, 0.3], [0.2, 0.0]]), b * 1.5
    j_wrong, grad_wrong, xs_wrong = dmo_linear(k, a, b, a_fwd, b_fwd, x0, steps)
    expect, x = [], x0
    for _ in range(steps):
        x = (a_fwd + b_fwd @ k) @ x
        expect.append(x)
    np.testing.assert_allclose(xs_wrong, np.stack(expect), rtol=1e-12)
    assert j_wrong == pytest.approx(-float(np.square(expect).sum()))
    np.testing.assert_allclose(grad_wrong, adjoint_gradient(k, a, b, xs_wrong, x0), rtol=1e-10)
    assert not np.allclose(grad_wrong, grad, rtol=0.05)  # it did see other states


class ConvForward(nn.Module):
    """A forward model with parameters: next frame from the last one and the action."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3 + A, 3, 3, padding=1)

    def init(self, frames, actions):
        return frames[:, -1]

    def step(self, state, action):
        a = action[:, :, None, None].expand(-1, -1, SIZE, SIZE)
        frame = torch.tanh(self.conv(torch.cat([state, a], 1)))
        return frame, frame


class ConvReward(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3)

    def forward(self, frames, start):
        return self.conv(frames).mean((1, 2, 3))


def section(**over) -> PolicySection:
    data = {
        "horizon": H, "batch": 3, "epochs": 1, "gamma": 0.99, "lam": 0.95,
        "actor": {"hidden": [16]}, "critic": {"hidden": [16], "iterations": 2, "minibatches": 2},
        "alpha": {},
        "rssm": {"finetune_steps": 1, "batch_size": 2, "window": 4, "lr": 1e-3,
                 "grad_clip": 100.0, "replay_capacity": 100},
        "variants": {"near": {"position": 0.1, "angle_deg": 30.0, "steps": 8},
                     "full": {"steps": 8}},
        "eval": {"episodes": 2, "batch": 2, "seed": 0, "every": 1},
        "seed": 0, "log_every": 1, "checkpoint_every": 1, **over,
    }  # fmt: skip
    return build(PolicySection, data)


def test_an_actor_step_leaves_encoder_reward_and_forward_model_without_gradient():
    rssm, forward, reward = tiny_rssm(), ConvForward(), ConvReward()
    learner = Learner(section(), rssm, "dmo", torch.device("cpu"))
    frames, actions = contexts()
    before = [p.detach().clone() for p in learner.actor.parameters()]
    traj = unroll(rssm, learner.actor, forward, reward, frames, actions, H)
    logs = learner.actor_step(traj)
    assert logs["train/actor_grad_norm"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, learner.actor.parameters()))
    for name, module in [
        ("encoder", rssm.encoder),
        ("RSSM", rssm),
        ("critics", learner.critics),
        ("forward model", forward),
        ("reward model", reward),
    ]:
        got = [n for n, p in module.named_parameters() if p.grad is not None]
        assert not got, f"{name} received a gradient: {got[:3]}"


def test_a_learner_epoch_fills_the_replay_and_finetunes_the_rssm_on_it():
    rssm, forward, reward = tiny_rssm(), ConvForward(), ConvReward()
    learner = Learner(section(), rssm, "dmo", torch.device("cpu"))

    class Starts:
        def sample(self, batch, generator):
            return contexts()

        def advance(self, traj):
            pass

    first = learner.epoch(forward, reward, Starts())
    assert not any(k.startswith("rssm/") for k in first)  # nothing to learn from yet
    assert len(learner.replay) == 3 * (H + 1)
    second = learner.epoch(forward, reward, Starts())
    assert second["rssm/loss"] > 0 and second["train/critic_loss"] >= 0


def test_lambda_returns_are_equation_6():
    g = torch.Generator().manual_seed(0)
    h, gamma, lam = 5, 0.9, 0.7
    r, v = torch.rand(h, 2, generator=g), torch.rand(h + 1, 2, generator=g)

    def n_step(t, n):  # V_n(s_t): n rewards, then the value
        return sum(gamma**i * r[t + i] for i in range(n)) + gamma**n * v[t + n]

    expect = []
    for t in range(h):
        rest = h - t
        mix = sum(lam ** (n - 1) * n_step(t, n) for n in range(1, rest))
        expect.append((1 - lam) * mix + lam ** (rest - 1) * n_step(t, rest))
    torch.testing.assert_close(lambda_returns(r, v, gamma, lam), torch.stack(expect))


def test_actor_log_prob_of_its_own_sample_is_the_sampled_log_prob():
    torch.manual_seed(0)
    actor = Actor(8, A, ActorConfig(hidden=[16]))
    feats = torch.randn(64, 8)
    action, log_prob = actor(feats)
    assert action.abs().max() < 1
    torch.testing.assert_close(actor.log_prob(feats, action), log_prob, rtol=1e-4, atol=1e-3)
