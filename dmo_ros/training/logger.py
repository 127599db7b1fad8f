"""Training progress: a tqdm bar, TensorBoard scalars and images, and a progress callback.

Only the main process writes (`enabled=False` on the other DDP ranks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

Progress = Callable[[int, int, dict[str, float]], None]  # (step, total_steps, scalars)


class RunLogger:
    def __init__(
        self,
        out: str | Path,
        total_steps: int,
        start_step: int = 0,
        enabled: bool = True,
        progress: Progress | None = None,
        desc: str = "train",
    ):
        self.enabled = enabled
        self.total = total_steps
        self.progress = progress
        self.writer = None
        self.bar = None
        self._t = time.perf_counter()
        if not enabled:
            return
        # Imported here: TensorBoard's import is slow and only the main process needs it.
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(out) / "tb"))
        self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, dynamic_ncols=True)

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        shown = {k.split("/")[-1]: v for k, v in values.items() if k.startswith(("train/", "val/"))}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        if self.progress is not None:
            self.progress(step, self.total, values)

    def images(self, tag: str, step: int, images: torch.Tensor) -> None:
        """`images` [rows, cols, 3, H, W] in [-1, 1], shown as one grid."""
        if not self.enabled:
            return
        x = images.detach().float().clamp(-1, 1).add(1).div(2).cpu()
        grid = torch.cat([torch.cat(list(row), dim=2) for row in x], dim=1)
        self.writer.add_image(tag, grid, step)

    def rate(self, units: int) -> float:
        """Units per second since the previous call (e.g. frames/s)."""
        now = time.perf_counter()
        rate = units / max(now - self._t, 1e-9)
        self._t = now
        return rate

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
