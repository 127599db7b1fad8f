"""Does the world model move the pusher where the actions say? (a check on generated frames)

Motion between two frames is read off their foreground maps: w(F) = colour distance of
each pixel from the background (the first frame's median colour). Where w grew, something
arrived; where it shrank, something left. The first moment of the change, Σ x·Δw
(x = (column, row)), is the moving blob's mass times its displacement; the mass is what
both frames hold near the change (within MARGIN pixels of it), so for a blob translating
on a clear background the displacement comes out in pixels exactly, overlap or not.

The mapping from actions to image motion (camera and robot conventions) is not assumed: it
is fitted on the real held-out data with the same estimator (displacement ≈ M · action), and
the model's response to a constant command e must point along M · e.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from dmo_ros.errors import UserError
from dmo_ros.training.device import autocast
from dmo_ros.worldmodels.diamond import frames_to_model
from dmo_ros.worldmodels.interface import GlobalWorldModel

MIN_CHANGE = 4.0  # Σ|Δw| below this (about two pixels of pusher) counts as "nothing moved"
MARGIN = 3  # pixels around the change that belong to the moving blob


def displacement(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Motion from frames a to b ([N,3,H,W] in [-1, 1]): (pixels [N,2], changed mass [N])."""
    a, b = a.float(), b.float()
    bg = a.flatten(2).median(dim=2).values[:, :, None, None]
    wa, wb = (a - bg).norm(dim=1), (b - bg).norm(dim=1)  # [N,H,W]
    change = wb - wa
    h, w = change.shape[1:]
    rows = torch.arange(h, dtype=torch.float32, device=a.device)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float32, device=a.device)[None, :].expand(h, w)
    changed = change.abs().flatten(1).sum(1)
    moment = torch.stack(
        [(change * cols).flatten(1).sum(1), (change * rows).flatten(1).sum(1)], dim=1
    )
    near = (change.abs() > 0.1)[:, None].float()
    near = torch.nn.functional.max_pool2d(near, 2 * MARGIN + 1, stride=1, padding=MARGIN)[:, 0]
    # A translating blob holds at least half of what changed: the floor keeps diffuse
    # changes (noise) from dividing by next to nothing.
    mass = torch.maximum(((wa + wb) / 2 * near).flatten(1).sum(1), changed / 2)
    disp = moment / mass.clamp_min(1e-6)[:, None]
    return torch.where(changed[:, None] >= MIN_CHANGE, disp, torch.zeros_like(disp)), changed


def calibrate(sequences: list, max_pairs: int = 2000) -> dict[str, Any]:
    """Fit displacement ≈ M · action on consecutive real frames of the same segment."""
    pairs = []
    for si, seq in enumerate(sequences):
        seg = np.asarray(seq.segment)
        ts = np.flatnonzero(seg[:-1] == seg[1:])
        pairs.extend((si, int(t)) for t in ts)
    if len(pairs) < 8:
        raise UserError(f"only {len(pairs)} consecutive held-out frame pairs to calibrate on")
    pick = np.linspace(0, len(pairs) - 1, min(max_pairs, len(pairs))).round().astype(int)
    pairs = [pairs[i] for i in pick]
    a = frames_to_model(torch.from_numpy(np.stack([sequences[s].frames[t] for s, t in pairs])))
    b = frames_to_model(torch.from_numpy(np.stack([sequences[s].frames[t + 1] for s, t in pairs])))
    actions = torch.from_numpy(np.stack([sequences[s].actions[t] for s, t in pairs])).double()
    disp = torch.cat(
        [displacement(a[i : i + 256], b[i : i + 256])[0] for i in range(0, len(a), 256)]
    )
    m = torch.linalg.lstsq(actions, disp.double()).solution.T  # [2, A]
    fitted = actions @ m.T
    r2 = 1 - (disp - fitted).pow(2).sum() / (disp - disp.mean(0)).pow(2).sum().clamp_min(1e-9)
    return {"matrix": m.float(), "r2": float(r2), "pairs": len(pairs)}


@torch.no_grad()
def check(
    model: GlobalWorldModel,
    frames: Tensor,
    actions: Tensor,
    matrix: Tensor,
    steps: int,
    magnitude: float,
    seed: int = 0,
    bf16: bool = False,
) -> dict[str, Any]:
    """Roll each context [N,L,3,H,W] `steps` steps under ±magnitude on each action axis and
    under no action (same sampler noise); score the motion against the real-data mapping."""
    n, a_dim = frames.shape[0], actions.shape[-1]
    device = frames.device
    commands = {"none": torch.zeros(a_dim)}
    for i in range(a_dim):
        for sign, name in ((1, "+"), (-1, "-")):
            e = torch.zeros(a_dim)
            e[i] = sign * magnitude
            commands[f"{name}a{i}"] = e
    finals = {}
    for name, e in commands.items():
        generator = torch.Generator(device=device).manual_seed(seed)
        state = model.init(frames, actions)
        command = e.to(device).expand(n, a_dim)
        with autocast(device, bf16):
            for _ in range(steps):
                frame, state = model.step(state, command, generator=generator)
        finals[name] = frame.float()
    results: dict[str, Any] = {}
    agree_all = []
    for name, e in commands.items():
        if name == "none":
            continue
        disp, mass = displacement(finals["none"], finals[name])
        expected = (matrix.to(device) @ e.to(device)) * steps
        cos = torch.nn.functional.cosine_similarity(disp, expected[None].expand_as(disp), dim=1)
        agree = (cos > 0) & (mass >= MIN_CHANGE)
        agree_all.append(agree)
        results[name] = {
            "command": e.tolist(),
            "expected_px": expected.tolist(),
            "mean_displacement_px": disp.mean(0).tolist(),
            "sign_agreement": float(agree.float().mean()),
        }
    fraction = float(torch.cat(agree_all).float().mean())
    return {"directions": results, "sign_agreement": fraction, "contexts": n, "steps": steps}
