"""The simulated robot as a batched forward model: the `--forward sim` / `--reward sim` oracle.

`SimForward` holds `batch` Push-T tables and speaks the global world model's protocol
(worldmodels/interface.py: `init`, `step`) and the reward's call shape (rewards/interface.py),
so the learner can swap it in for the diffusion model to tell policy learning apart from
world-model errors. The scenes are the state: `init` and `step` do not branch or rewind.
Frames come from the sim as uint8 [H,W,3] and go out as float [3,H,W] in [-1, 1]
(diamond.frames_to_model). The reward is the sim's goal coverage after the last step.
`snapshot` / `restore` carry the scenes across a checkpoint: the reset seeds and the actions
since, replayed (the simulator is deterministic).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import Tensor

from dmo_ros.errors import UserError
from dmo_ros.sim.pusht_table import PushTTable
from dmo_ros.task import TaskConfig
from dmo_ros.worldmodels.diamond import frames_to_model

VARIANTS = ("near", "full")


def make_table(task: TaskConfig) -> PushTTable:
    """A Push-T table with the task's camera, control period and action bound."""
    if task.robot != "flexiv":
        raise UserError(f"task '{task.name}': the simulated robot is Push-T only for now")
    return PushTTable(
        image_size=task.image_size,
        control_period=task.control_period,
        max_delta=float(task.action_high[0]),
    )


def reset_options(variant: str, near: dict | None) -> dict:
    """PushTTable.reset options of a start variant; `near` = config policy.variants.near."""
    if variant not in VARIANTS:
        raise UserError(f"unknown start variant '{variant}' (expected one of: near, full)")
    if variant == "full":
        return {}  # gym-pusht's own start distribution
    if near is None:
        raise UserError("the near variant needs its position and angle_deg")
    return {"near": (float(near["position"]), float(np.radians(near["angle_deg"])))}


class SimForward:
    """`batch` Push-T scenes stepped in lockstep; actions [B,A] in [-1, 1]."""

    kind = "sim"

    def __init__(
        self,
        task: TaskConfig,
        batch: int,
        variant: str,
        near: dict | None,
        seed: int,
        context: int,
        device: str | torch.device = "cpu",
    ) -> None:
        if batch < 1 or context < 1:
            raise UserError(f"sim forward: batch {batch} and context {context} must be >= 1")
        self.task, self.batch, self.context = task, int(batch), int(context)
        self.image_size = task.image_size
        self.device = torch.device(device)
        self.options = reset_options(variant, near)
        self.tables = [make_table(task) for _ in range(self.batch)]
        self._rng = np.random.default_rng(seed)  # the scenes' reset seeds, call after call
        self._truth: list[dict] = []
        self._seeds: list[int] = []  # of the last reset, and the actions since (snapshot)
        self._history: list[np.ndarray] = []

    @property
    def rng_state(self) -> dict:
        """The reset seeds' generator state (a checkpoint's, for an exact resume)."""
        return self._rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    def _frames(self, images: list[np.ndarray]) -> Tensor:
        return frames_to_model(torch.from_numpy(np.stack(images))).to(self.device)

    def starts(self) -> tuple[Tensor, Tensor]:
        """Reset every scene: (frames [B,L,3,H,W], zero actions [B,L,A]), the start repeated."""
        self._seeds = [int(s) for s in self._rng.integers(0, 2**31, self.batch)]
        images = self._reset()
        frames = self._frames(images).unsqueeze(1).expand(-1, self.context, -1, -1, -1)
        actions = torch.zeros(self.batch, self.context, self.task.action_dim, device=self.device)
        return frames.contiguous(), actions

    def _reset(self) -> list[np.ndarray]:
        images, self._truth, self._history = [], [], []
        for table, s in zip(self.tables, self._seeds):
            image, truth = table.reset(seed=s, options=self.options)
            images.append(image)
            self._truth.append(truth)
        return images

    def snapshot(self) -> dict:
        """The scenes as a checkpoint keeps them: the seeds' generator, the last reset's
        seeds and the (physical) actions since."""
        return {
            "rng": json.dumps(self.rng_state),  # 128-bit ints: a checkpoint keeps text
            "seeds": list(self._seeds),
            "actions": torch.from_numpy(np.array(self._history, np.float64)),
        }

    def restore(self, snap: dict) -> None:
        """The scenes of `snapshot`: reset with its seeds, its actions stepped again."""
        self.rng_state = json.loads(snap["rng"])
        self._seeds = [int(s) for s in snap["seeds"]]
        if self._seeds:
            self._reset()
            for a in snap["actions"].numpy():
                self._step(a)

    def init(self, frames: Tensor, actions: Tensor) -> int:
        """The scenes are the state (the frames must be those of `starts`): the step count."""
        if frames.shape[0] != self.batch:
            raise ValueError(f"SimForward.init: batch {frames.shape[0]}, scenes {self.batch}")
        return 0

    def step(self, state: int, action: Tensor) -> tuple[Tensor, int]:
        """Step every scene by `action` [B,A] in [-1, 1]: (frames [B,3,H,W], state)."""
        a = self.task.denormalize(action.detach().float().cpu().numpy())
        if a.shape != (self.batch, self.task.action_dim):
            raise ValueError(f"SimForward.step: action shape {tuple(action.shape)}")
        return self._frames(self._step(a)), state + 1

    def _step(self, a: np.ndarray) -> list[np.ndarray]:
        images, self._truth = [], []
        for table, ai in zip(self.tables, a):
            image, *_, truth = table.step(ai)
            images.append(image)
            self._truth.append(truth)
        self._history.append(np.asarray(a, np.float64))
        return images

    def reward(self, frames: Tensor, start: Tensor | None = None) -> Tensor:
        """Goal coverage [B] of each scene after its last step (frames and start unused)."""
        return torch.tensor([t["coverage"] for t in self._truth], device=self.device)

    __call__ = reward  # the Reward protocol's call

    def success(self) -> Tensor:
        """[B] bool: coverage >= SUCCESS_COVERAGE after the last step."""
        return torch.tensor([bool(t["success"]) for t in self._truth], device=self.device)

    def ground_truth(self) -> list[dict]:
        """The sims' ground truth after the last reset or step, one dict per scene."""
        return list(self._truth)
