"""The `policy:` section of a task config (config/pusht.yaml, config/push_cube.yaml): DMO-SAPO,
PPO, the start variants and the evaluation in the simulated robot."""

from __future__ import annotations

from dataclasses import dataclass, field

from dmo_ros.rl.policy import ActorConfig, CriticConfig
from dmo_ros.rl.sapo import AlphaConfig

SECTION = "policy"


@dataclass
class PPOConfig:
    horizon: int = 64  # the paper needed a longer imagination for PPO than for DMO
    epochs: int = 4
    minibatches: int = 4
    clip: float = 0.2
    lr: float = 3.0e-4
    entropy_coef: float = 0.0
    grad_clip: float = 0.5


@dataclass
class FinetuneConfig:
    finetune_steps: int  # RSSM updates per epoch (Algorithm 1's model mini-epochs)
    batch_size: int
    window: int
    lr: float
    grad_clip: float
    replay_capacity: int  # steps


@dataclass
class NearConfig:
    position: float  # fraction of the board
    angle_deg: float
    steps: int


@dataclass
class FullConfig:
    steps: int


@dataclass
class Variants:
    full: FullConfig
    near: NearConfig | None = None  # None: the task's simulator has no near starts (Go2)

    def near_dict(self) -> dict | None:
        """The near starts as the simulators' reset options take them (None: none)."""
        if self.near is None:
            return None
        return {"position": self.near.position, "angle_deg": self.near.angle_deg}


@dataclass
class PolicyEvalConfig:
    episodes: int
    batch: int
    seed: int
    every: int  # epochs between evaluations in the simulated robot (the learning curve)


@dataclass
class PolicySection:
    horizon: int
    batch: int
    epochs: int
    gamma: float
    lam: float
    actor: ActorConfig
    critic: CriticConfig
    alpha: AlphaConfig
    rssm: FinetuneConfig
    variants: Variants
    eval: PolicyEvalConfig
    seed: int
    log_every: int
    checkpoint_every: int
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig())
    start_quantile: float = 0.9  # near, bag starts: last frame's learned reward in this top part
    threads: int = 1  # CPU threads for torch (see world_model.train.threads)
