"""DreamerV3 RSSM: the local latent model whose prior supplies DMO's policy gradients.

A CNN encodes each frame; a normed GRU carries the deterministic state `deter`;
32 categoricals × 32 classes (1 % unimix, straight-through samples) form `stoch`. The
prior predicts `stoch` from `deter` alone, the posterior also sees the frame's embedding.
A twohot reward head (symlog bins) reads the features, an optional decoder the frames.

State: a dict {"deter" [B,D], "stoch" [B,S*K] (one-hot, straight-through), "logits"
[B,S,K] (log-probabilities after the unimix)}. Time convention of the data: `actions[t]`
is issued after `frames[t]`, so the posterior at t+1 is
`observe(state_t, actions[t], encode(frames[t + 1]))`; t = 0 is observed from `initial`
with a zero action. Distributions, KL and twohot are computed in float32, so the model
runs under bf16 autocast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmo_ros.config import build

KIND = "world_model/rssm"
State = dict[str, Tensor]


@dataclass
class RSSMConfig:
    action_dim: int
    image_size: int = 64
    deter: int = 512
    hidden: int = 512
    stoch: int = 32
    classes: int = 32
    cnn_depth: int = 32
    unimix: float = 0.01
    free_bits: float = 1.0
    kl_dyn: float = 0.5
    kl_rep: float = 0.1
    reward_bins: int = 255
    reward_scale: float = 1.0
    decoder: bool = False
    recon_scale: float = 1.0

    def validate(self) -> str | None:
        """A one-line problem with this config, or None."""
        size = self.image_size
        if size < 16 or size & (size - 1):
            return f"image_size must be a power of two >= 16, got {size}"
        sizes = ("action_dim", "deter", "hidden", "stoch", "cnn_depth")
        for name in sizes:
            if getattr(self, name) < 1:
                return f"{name} must be positive, got {getattr(self, name)}"
        if self.classes < 2 or self.reward_bins < 2:
            return "classes and reward_bins must be at least 2"
        if not 0.0 < self.unimix < 1.0:  # the floor keeps log-probabilities and KL finite
            return f"unimix must be in (0, 1), got {self.unimix}"
        weights = ("free_bits", "kl_dyn", "kl_rep", "reward_scale", "recon_scale")
        for name in weights:
            if getattr(self, name) < 0:
                return f"{name} must be >= 0, got {getattr(self, name)}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "checkpoint") -> RSSMConfig:
        return build(cls, data, source)


# -- symlog and twohot (DreamerV3) ------------------------------------------------------


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def twohot(values: Tensor, bins: Tensor) -> Tensor:
    """[...] symlog-space values -> [..., len(bins)] weights on the two nearest bins."""
    values = values.float().clamp(bins[0], bins[-1])
    above = torch.bucketize(values, bins).clamp(1, len(bins) - 1)  # first bin >= value
    below = above - 1
    lo, hi = bins[below], bins[above]
    w_hi = (values - lo) / (hi - lo)
    out = torch.zeros(*values.shape, len(bins), device=values.device)
    out.scatter_(-1, below[..., None], (1 - w_hi)[..., None])
    out.scatter_add_(-1, above[..., None], w_hi[..., None])
    return out


def twohot_decode(logits: Tensor, bins: Tensor) -> Tensor:
    """[..., bins] logits -> [...] value: symexp of the expected bin."""
    return symexp((logits.float().softmax(-1) * bins).sum(-1))


def twohot_loss(logits: Tensor, target: Tensor, bins: Tensor) -> Tensor:
    """Mean cross-entropy of the logits against twohot(symlog(target))."""
    labels = twohot(symlog(target.float()), bins)
    return -(labels * logits.float().log_softmax(-1)).sum(-1).mean()


def kl_balance(post: Tensor, prior: Tensor, free_bits: float) -> tuple[Tensor, Tensor, Tensor]:
    """DreamerV3's dyn and rep KL terms from log-probs [..., S, K]: (dyn, rep, raw KL).

    KL is summed over the stochastic variables and clipped below at `free_bits` per
    sample (a clipped sample gives no gradient), then averaged.
    """

    def kl(p: Tensor, q: Tensor) -> Tensor:
        return (p.exp() * (p - q)).sum((-2, -1))

    post, prior = post.float(), prior.float()
    dyn = kl(post.detach(), prior)
    rep = kl(post, prior.detach())
    return (
        dyn.clamp(min=free_bits).mean(),
        rep.clamp(min=free_bits).mean(),
        dyn.detach().mean(),
    )


# -- layers -----------------------------------------------------------------------------


class Norm(nn.RMSNorm):
    """RMSNorm over the last dim, computed in float32 (bf16 squares lose too much)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)


class ChannelNorm(Norm):
    """RMSNorm over the channels of [N, C, H, W]."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def dense(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, out, bias=False), Norm(out), nn.SiLU())


def to_model(frames: Tensor) -> Tensor:
    """uint8 frames -> float in [-1, 1]; float frames are taken as already there."""
    if frames.dtype == torch.uint8:
        return frames.float().div(127.5).sub(1.0)
    return frames.float()


class Encoder(nn.Module):
    """[N,3,S,S] -> [N, E]: stride-2 convs, channels doubling, down to 4×4."""

    def __init__(self, size: int, depth: int):
        super().__init__()
        layers, inp = [], 3
        for i in range(int(math.log2(size // 4))):
            out = depth * 2**i
            layers += [nn.Conv2d(inp, out, 4, 2, 1), ChannelNorm(out), nn.SiLU()]
            inp = out
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out_dim = inp * 16

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Features [N, F] -> frames [N,3,S,S] (≈[-1, 1]): the encoder's mirror."""

    def __init__(self, features: int, size: int, depth: int):
        super().__init__()
        stages = int(math.log2(size // 4))
        self.top = depth * 2 ** (stages - 1)
        self.inp = nn.Linear(features, self.top * 16)
        layers, inp = [], self.top
        for i in reversed(range(stages)):
            if i == 0:
                layers.append(nn.ConvTranspose2d(inp, 3, 4, 2, 1))
            else:
                out = depth * 2 ** (i - 1)
                layers += [nn.ConvTranspose2d(inp, out, 4, 2, 1), ChannelNorm(out), nn.SiLU()]
                inp = out
        self.net = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(self.inp(features).unflatten(-1, (self.top, 4, 4)))


class GRUCell(nn.Module):
    """DreamerV3's GRU: one normed Linear for the reset, candidate and update gates."""

    def __init__(self, inp: int, size: int):
        super().__init__()
        self.linear = nn.Linear(inp + size, 3 * size, bias=False)
        self.norm = Norm(3 * size)

    def forward(self, x: Tensor, deter: Tensor) -> Tensor:
        parts = self.norm(self.linear(torch.cat([x, deter.to(x.dtype)], -1)))
        reset, cand, update = parts.float().chunk(3, -1)  # float32 keeps deter exact
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)  # bias -1: keep the old state early on
        return update * cand + (1 - update) * deter


# -- the model --------------------------------------------------------------------------


class RSSM(nn.Module):
    kind = KIND

    def __init__(self, cfg: RSSMConfig):
        super().__init__()
        problem = cfg.validate()
        if problem:
            raise ValueError(problem)
        self.cfg = cfg
        flat = cfg.stoch * cfg.classes
        self.feature_dim = cfg.deter + flat
        self.encoder = Encoder(cfg.image_size, cfg.cnn_depth)
        self.img_in = dense(flat + cfg.action_dim, cfg.hidden)
        self.gru = GRUCell(cfg.hidden, cfg.deter)
        self.prior_head = nn.Sequential(dense(cfg.deter, cfg.hidden), nn.Linear(cfg.hidden, flat))
        self.post_head = nn.Sequential(
            dense(cfg.deter + self.encoder.out_dim, cfg.hidden), nn.Linear(cfg.hidden, flat)
        )
        self.init_deter = nn.Parameter(torch.zeros(cfg.deter))
        self.reward_head = nn.Sequential(
            dense(self.feature_dim, cfg.hidden),
            dense(cfg.hidden, cfg.hidden),
            nn.Linear(cfg.hidden, cfg.reward_bins),
        )
        # Zero output: the reward starts at 0 and early gradients into the features are 0.
        nn.init.zeros_(self.reward_head[-1].weight)
        nn.init.zeros_(self.reward_head[-1].bias)
        self.register_buffer("bins", torch.linspace(-20.0, 20.0, cfg.reward_bins))
        self.decoder = (
            Decoder(self.feature_dim, cfg.image_size, cfg.cnn_depth) if cfg.decoder else None
        )

    # -- distributions ----------------------------------------------------------------
    def _logits(self, raw: Tensor) -> Tensor:
        """Head output [B, S*K] -> unimixed log-probs [B, S, K], float32."""
        probs = raw.float().unflatten(-1, (self.cfg.stoch, self.cfg.classes)).softmax(-1)
        u = self.cfg.unimix
        return ((1 - u) * probs + u / self.cfg.classes).log()

    def _sample(self, logits: Tensor, mode: bool = False) -> Tensor:
        """Straight-through one-hot [B, S*K]: the sample's value, the probabilities' gradient."""
        if mode:
            index = logits.argmax(-1)
        else:  # exponential race = Gumbel-max: argmax(p / E), E ~ Exp(1), without a graph break
            index = (logits - torch.empty_like(logits).exponential_().log()).argmax(-1)
        probs = logits.exp()
        onehot = F.one_hot(index, self.cfg.classes).to(probs.dtype)
        return (onehot + (probs - probs.detach())).flatten(-2)  # exactly one-hot in value

    # -- interface --------------------------------------------------------------------
    def encode(self, frames: Tensor) -> Tensor:
        """Frames [..., 3, S, S], uint8 or float in [-1, 1] -> embeddings [..., E]."""
        s = self.cfg.image_size
        if frames.shape[-3:] != (3, s, s):
            raise ValueError(f"frames must be [..., 3, {s}, {s}], got {list(frames.shape)}")
        lead = frames.shape[:-3]
        return self.encoder(to_model(frames).reshape(-1, 3, s, s)).reshape(*lead, -1)

    def initial(self, batch: int) -> State:
        """The learned initial state: deter = tanh(vector), stoch = the prior's mode."""
        deter = torch.tanh(self.init_deter).expand(batch, -1)
        logits = self._logits(self.prior_head(deter))
        return {"deter": deter, "stoch": self._sample(logits, mode=True), "logits": logits}

    def imagine(self, state: State, action: Tensor) -> State:
        """One prior step: the state after `action` [B, A] (in [-1, 1]), differentiable."""
        x = self.img_in(torch.cat([state["stoch"], action.to(state["stoch"].dtype)], -1))
        deter = self.gru(x, state["deter"])
        logits = self._logits(self.prior_head(deter))
        return {"deter": deter, "stoch": self._sample(logits), "logits": logits}

    def observe(self, state: State, action: Tensor, embed: Tensor) -> tuple[State, State]:
        """One filter step on the frame embedded as `embed`: (posterior, prior)."""
        prior = self.imagine(state, action)
        return self.posterior(prior, embed), prior

    def posterior(self, prior: State, embed: Tensor, mode: bool = False) -> State:
        """The filter's correction of a prior step on the frame embedded as `embed` (the same
        deter; mode: the most likely stoch instead of a sample, for a deterministic policy)."""
        deter = prior["deter"]
        logits = self._logits(self.post_head(torch.cat([deter, embed.to(deter.dtype)], -1)))
        return {"deter": deter, "stoch": self._sample(logits, mode), "logits": logits}

    def features(self, state: State) -> Tensor:
        return torch.cat([state["deter"], state["stoch"]], -1)

    def reward(self, features: Tensor) -> Tensor:
        """Features [..., F] -> decoded reward [...]."""
        return twohot_decode(self.reward_head(features), self.bins)

    def reward_loss(self, features: Tensor, rewards: Tensor) -> Tensor:
        """Twohot cross-entropy of the reward head against rewards [...]."""
        return twohot_loss(self.reward_head(features), rewards, self.bins)

    def decode(self, features: Tensor) -> Tensor:
        """Features [..., F] -> frames [..., 3, S, S] in (about) [-1, 1]; needs `decoder`."""
        if self.decoder is None:
            raise RuntimeError("this RSSM has no decoder (config decoder: false)")
        s = self.cfg.image_size
        frames = self.decoder(features.reshape(-1, features.shape[-1]))
        return frames.reshape(*features.shape[:-1], 3, s, s)

    def observe_sequence(
        self, frames: Tensor, actions: Tensor, is_first: Tensor | None = None
    ) -> tuple[State, State]:
        """Filter frames [B,T,3,S,S] with actions [B,T,A]: (posteriors, priors), each [B,T,...].

        Step t is observed with `actions[:, t - 1]`; where `is_first[:, t]` (and always at
        t = 0) the state is reset to `initial` and the action to zero first.
        """
        b, steps = frames.shape[:2]
        embed = self.encode(frames)
        init = self.initial(b)
        state, posts, priors = init, [], []
        for t in range(steps):
            action = actions[:, t - 1] if t else torch.zeros_like(actions[:, 0])
            if t and is_first is not None:
                first = is_first[:, t].bool()
                state = {k: _where(first, init[k], v) for k, v in state.items()}
                action = _where(first, torch.zeros_like(action), action)
            post, prior = self.observe(state, action, embed[:, t])
            posts.append(post)
            priors.append(prior)
            state = post
        return _stack(posts), _stack(priors)

    # -- training -----------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """World-model loss on windows: frames uint8 [B,T,3,S,S], actions [B,T,A], optional
        rewards [B,T] (label of the state at t) and is_first [B,T].

        logs: loss, kl_dyn and kl_rep (the clipped terms), kl (raw KL(post || prior)),
        prior_post_mse, and reward_loss / recon_loss (and recon_mse per pixel) where those
        losses are on.
        """
        cfg = self.cfg
        frames, actions = batch["frames"], batch["actions"].float()
        posts, priors = self.observe_sequence(frames, actions, batch.get("is_first"))
        dyn, rep, kl = kl_balance(posts["logits"], priors["logits"], cfg.free_bits)
        loss = cfg.kl_dyn * dyn + cfg.kl_rep * rep
        # One-step error of the prior: squared distance of its probabilities to the
        # posterior's, per stochastic variable (the deter part of the features is shared).
        err = (priors["logits"].exp() - posts["logits"].exp()).square().sum(-1).mean()
        terms = {"kl_dyn": dyn, "kl_rep": rep, "kl": kl, "prior_post_mse": err}
        feats = self.features(posts)
        if "rewards" in batch:
            reward_loss = self.reward_loss(feats, batch["rewards"])
            loss = loss + cfg.reward_scale * reward_loss
            terms["reward_loss"] = reward_loss
        if self.decoder is not None:
            # Summed over the pixels (a Gaussian log-likelihood, as DreamerV3): a per-pixel
            # mean is 3*S*S times weaker against the KL, and the posterior then collapses
            # onto the prior (measured: KL below free bits, reward not linearly decodable).
            sq = (self.decode(feats).float() - to_model(frames)).square()
            recon = sq.sum((-3, -2, -1)).mean()
            loss = loss + cfg.recon_scale * recon
            terms["recon_loss"], terms["recon_mse"] = recon, sq.mean()
        terms["loss"] = loss
        values = torch.stack([v.detach().float() for v in terms.values()]).tolist()  # one sync
        return loss, dict(zip(terms, values))


def _stack(states: list[State]) -> State:
    return {k: torch.stack([s[k] for s in states], 1) for k in states[0]}


def _where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """torch.where with a [B] mask broadcast over the trailing dims of a and b."""
    return torch.where(mask.view(-1, *[1] * (b.dim() - 1)), a, b)
