"""The `policy:` section of a task config (config/pusht.yaml, config/push_cube.yaml): DMO-SAPO,
PPO, the start variants and the evaluation in the simulated robot."""

from __future__ import annotations

from dataclasses import dataclass, field

from dmo_ros.errors import UserError
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

    def resolve(self, variant: str | None, task_name: str) -> str:
        """The start variant asked for, or the task's first (near where it has near starts,
        as Push-T does; else full, the push-cube scene's only one); near where there is none
        and an unknown name are UserErrors."""
        if variant is None:
            return "near" if self.near is not None else "full"
        if variant not in ("near", "full"):
            raise UserError(f"unknown start variant '{variant}' (expected near or full)")
        if variant == "near" and self.near is None:
            raise UserError(
                f"--variant near: the {task_name} task has no near starts (its simulator has "
                "one start distribution); pass --variant full"
            )
        return variant


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
