"""`dmo-ros eval world-model`: open-loop rollouts of the global model on held-out play data.

From held-out contexts of L real frames, the model is driven by the recorded actions for
`horizon` steps (60 = 12 s); each generated frame is scored against the real one (PSNR,
SSIM on frames in [0, 1]), beside the "repeat the last context frame" baseline. For Push-T
the task's object too (object_fit.py): in each generated frame the best-fit T's IoU with the
T-coloured pixels (does the T stay a T) and its pose against the real one (does it stay where
it is), and the pusher's position. Then the action-response check (action_response.py).
Written to <model>/eval/: world_model.json (its "definitions" say how each number is
computed), world_model_metrics.png, world_model_object.png (Push-T) and world_model_strip.png
(rows real / model at t = 0, 5, ...).

PSNR is taken of the mean squared error (per step over rollouts, or over a range of
steps), never averaged in dB: one unchanged frame would otherwise score the cap and
outweigh every other step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmo_ros.config import build
from dmo_ros.errors import UserError
from dmo_ros.task import TaskConfig
from dmo_ros.training.checkpoint import load_checkpoint, resolve_checkpoint
from dmo_ros.training.device import autocast, pick_device, use_bf16
from dmo_ros.worldmodels import action_response, object_fit
from dmo_ros.worldmodels.diamond import KIND, DiamondConfig, DiamondWorldModel, frames_to_model
from dmo_ros.worldmodels.image_metrics import PSNR_MAX_DB, mse, psnr_of_mse, ssim, to_unit
from dmo_ros.worldmodels.train import SECTION, EvalConfig, WorldModelSection

STRIP_EVERY = 5
SUMMARY_STEPS = 20  # "beats repeat-last on PSNR over steps 1-20"
DEFINITIONS = {
    "frames": "compared in [0, 1] (uint8 / 255); model frames clamped to [-1, 1] first",
    "mse": "mean squared error of one step, over rollouts, pixels and channels",
    "psnr": f"10 log10(1 / mse) in dB of that step's mse, capped at {PSNR_MAX_DB:g} dB",
    "psnr_max_db": PSNR_MAX_DB,
    "ssim": "mean SSIM of one step over rollouts (Wang et al. 2004: 11x11 Gaussian window, "
    "sigma 1.5, K1 0.01, K2 0.03, data range 1, valid windows, channels averaged)",
    "summary.psnr_1_K": "PSNR of the mse over steps 1..K and all rollouts (not a mean of dB)",
    "summary.ssim_mean_1_K": "mean of the per-step SSIM over steps 1..K",
    "summary.beats_repeat_last": "psnr_1_K above baseline_psnr_1_K (a lower mse)",
}
OBJECT_STEP = 32  # DMO-SAPO's imagination horizon (6.4 s)
OBJECT_DEFINITIONS = {
    "object": "Push-T only: the T fitted in each frame (object_fit.py): the pose (x, y, angle) "
    "whose T mask (its known shape at the camera's scale) best overlaps the T-coloured pixels",
    "object.t_iou": "mean over rollouts of the best-fit T mask's IoU with the T-coloured pixels "
    "(pusher pixels excluded; 0 without T pixels): ~0.97 on real frames, 0.51 for a disc of "
    "the T's area, ~0.77 / 0.61 for the T blurred by sigma 1.5 / 2 px",
    "object.t_found": "share of rollouts whose frame has enough T pixels (a quarter of the T) "
    "for a pose; the errors are means over those",
    "object.position_error": "distance between the T centres (area centroids) of the fit and "
    "the reference, in pixels and in % of the board (the frame's width)",
    "object.angle_error_deg": "|fitted - reference angle| wrapped to [0, 180] (no symmetry)",
    "object.reference": "the real frame's T pose: ground truth (task/object_pose) where the "
    "rollout's window has it, else the T fitted in the real frame",
    "object.pusher_error": "distance between the centroids of the pusher's colour blob in the "
    "generated and in the real frame (no ground truth needed), px and % of the board",
    "object.pusher_found": "share of rollouts with a pusher blob in both frames",
    "object.real": "the real frames' own fit: t_iou (the ceiling) and, with ground truth, the "
    "fit's errors (its accuracy on this data)",
    "object.summary": f"the values at step {OBJECT_STEP} (or the horizon's last step); "
    "beats_repeat_last: a lower error than the repeat-last baseline's (its T is real, so its "
    "t_iou is the real frames')",
}


def load_model(path: str | Path, device: torch.device) -> tuple[DiamondWorldModel, dict, Path]:
    """The EMA weights of a trained run (folder or checkpoint) -> (model, checkpoint, file)."""
    file = resolve_checkpoint(path)
    ckpt = load_checkpoint(file, kind=KIND)
    try:
        cfg = DiamondConfig.from_dict(ckpt["model_config"], str(file))
        model = DiamondWorldModel(cfg)
        model.load_state_dict(ckpt["ema"]["module"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise UserError(f"{file}: checkpoint does not fit its model ({str(exc)[:120]})") from None
    return model.to(device).eval(), ckpt, file


def windows(sequences: list, length: int, count: int) -> list[tuple[int, int]]:
    """`count` (sequence, start) pairs evenly spread over all windows inside one segment."""
    starts = []
    for si, seq in enumerate(sequences):
        seg = np.asarray(seq.segment)
        ok = np.ones(max(0, len(seg) - length + 1), bool)
        for k in range(1, length):
            ok &= seg[k : k + len(ok)] == seg[: len(ok)]
        starts.extend((si, int(t)) for t in np.flatnonzero(ok))
    if not starts:
        raise UserError(f"held-out data has no segment of {length} steps to roll out from")
    pick = np.linspace(0, len(starts) - 1, min(count, len(starts))).round().astype(int)
    return [starts[i] for i in pick]


def object_poses(sequences: list, spans: list[tuple[int, int]], length: int) -> np.ndarray:
    """Ground-truth object poses [N,T,3] of the chosen windows (NaN where the bag has none)."""
    return np.stack([sequences[s].object_pose[t : t + length] for s, t in spans]).astype(float)


def gather(sequences: list, spans: list[tuple[int, int]], length: int):
    """Frames [N,T,3,H,W] in [-1, 1] and actions [N,T,A] of the chosen windows."""
    frames = np.stack([sequences[s].frames[t : t + length] for s, t in spans])
    actions = np.stack([sequences[s].actions[t : t + length] for s, t in spans])
    return frames_to_model(torch.from_numpy(frames)), torch.from_numpy(actions).float()


@torch.no_grad()
def open_loop(
    model: DiamondWorldModel,
    frames: torch.Tensor,
    actions: torch.Tensor,
    horizon: int,
    batch_size: int,
    seed: int,
    bf16: bool,
) -> torch.Tensor:
    """Generated frames [N,horizon,3,H,W] driven by the recorded actions after the context."""
    L = model.cfg.context
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(frames), batch_size):
        f = frames[i : i + batch_size].to(device)
        a = actions[i : i + batch_size].to(device)
        generator = torch.Generator(device=device).manual_seed(seed + i)
        state = model.init(f[:, :L], a[:, :L])
        steps = []
        with autocast(device, bf16):
            for t in range(horizon):
                frame, state = model.step(state, a[:, L - 1 + t], generator=generator)
                steps.append(frame.float().cpu())
        out.append(torch.stack(steps, dim=1))
    return torch.cat(out)


def step_metrics(pred: torch.Tensor, real: torch.Tensor) -> dict[str, list[float]]:
    """Per-step MSE, PSNR of that MSE and mean SSIM over rollouts; pred, real [N,T,3,H,W]
    in [-1, 1]."""
    n, t = pred.shape[:2]
    a, b = to_unit(pred.clamp(-1, 1).flatten(0, 1)), to_unit(real.flatten(0, 1))
    err = mse(a, b).view(n, t).mean(0)
    s = ssim(a, b).view(n, t).mean(0)
    return {"mse": err.tolist(), "psnr": psnr_of_mse(err).tolist(), "ssim": s.tolist()}


def summarize(model_m: dict, base_m: dict, k: int) -> dict[str, float | bool]:
    """Steps 1..k and all steps: PSNR of the mean MSE, mean SSIM; model and repeat-last."""
    out: dict[str, float | bool] = {}
    for prefix, m in (("", model_m), ("baseline_", base_m)):
        out[f"{prefix}psnr_1_{k}"] = float(psnr_of_mse(float(np.mean(m["mse"][:k]))))
        out[f"{prefix}ssim_mean_1_{k}"] = float(np.mean(m["ssim"][:k]))
        out[f"{prefix}psnr_all"] = float(psnr_of_mse(float(np.mean(m["mse"]))))
    out["beats_repeat_last"] = bool(np.mean(model_m["mse"][:k]) < np.mean(base_m["mse"][:k]))
    return out


def _mean(x: np.ndarray) -> np.ndarray:
    """Mean over rollouts (axis 0) of the finite values; NaN where there are none."""
    ok = np.isfinite(x)
    n = ok.sum(0)
    return np.where(n > 0, np.where(ok, x, 0.0).sum(0) / np.maximum(n, 1), np.nan)


def _json(curve: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in curve]


def _hwc(frames: torch.Tensor) -> np.ndarray:
    """[..., 3, H, W] in [-1, 1] -> numpy [..., H, W, 3] for object_fit."""
    return frames.clamp(-1, 1).movedim(-3, -1).numpy()


def _fit(frames: np.ndarray) -> tuple[object_fit.TFit, np.ndarray]:
    """The T fit and the pusher of frames [N,T,H,W,3], arrays shaped [N,T,...]."""
    n, t = frames.shape[:2]
    flat = frames.reshape(n * t, *frames.shape[2:])
    fit = object_fit.fit_t(flat)
    fit = object_fit.TFit(*(a.reshape(n, t, *a.shape[1:]) for a in (fit.pose, fit.iou, fit.pixels)))
    return fit, object_fit.find_pusher(flat).reshape(n, t, 2)


def _tracking(fit, pusher, reference, real_pusher, size: int) -> dict[str, list]:
    """Per-step curves of one set of frames against the real ones."""
    px = size / object_fit.BOARD_M  # pixels per metre
    pos, ang = object_fit.pose_errors(fit.pose, reference)
    push = np.linalg.norm(pusher - real_pusher, axis=-1) / px  # metres, NaN where not found
    curves = {
        "t_iou": _mean(fit.iou),
        "t_found": np.isfinite(fit.pose[..., 0]).mean(0),
        "position_error_px": _mean(pos) * px,
        "position_error_pct_board": _mean(pos) / object_fit.BOARD_M * 100,
        "angle_error_deg": np.rad2deg(_mean(ang)),
        "pusher_error_px": _mean(push) * px,
        "pusher_error_pct_board": _mean(push) / object_fit.BOARD_M * 100,
        "pusher_found": np.isfinite(push).mean(0),
    }
    return {k: _json(v) for k, v in curves.items()}


def object_metrics(pred: torch.Tensor, real: torch.Tensor, last: torch.Tensor, truth) -> dict:
    """Push-T's object block: pred, real [N,T,3,H,W] and the last context frames [N,3,H,W]
    in [-1, 1]; truth [N,T,3] ground-truth poses of the real frames (NaN without)."""
    n, t = real.shape[:2]
    size = real.shape[-1]
    gen_fit, gen_pusher = _fit(_hwc(pred))
    real_fit, real_pusher = _fit(_hwc(real))
    last_fit, last_pusher = _fit(_hwc(last[:, None]))
    has_truth = np.isfinite(truth).all((1, 2))
    reference = np.where(has_truth[:, None, None], truth, real_fit.pose)
    k = int(has_truth.sum())
    if k == n:
        source = "ground truth (task/object_pose)"
    elif k == 0:
        source = "the T fitted in the real frame (no task/object_pose)"
    else:
        source = f"ground truth in {k} of {n} rollouts, else the T fitted in the real frame"
    repeat = object_fit.TFit(
        *(np.repeat(a, t, 1) for a in (last_fit.pose, last_fit.iou, last_fit.pixels))
    )
    block = {
        "reference": source,
        "rollouts_with_ground_truth": k,
        "model": _tracking(gen_fit, gen_pusher, reference, real_pusher, size),
        "repeat_last": _tracking(
            repeat, np.repeat(last_pusher, t, 1), reference, real_pusher, size
        ),
        "real": {"t_iou": _json(_mean(real_fit.iou))},
    }
    if k:
        pos, ang = object_fit.pose_errors(real_fit.pose[has_truth], truth[has_truth])
        block["real"]["position_error_px"] = _json(_mean(pos) * size / object_fit.BOARD_M)
        block["real"]["angle_error_deg"] = _json(np.rad2deg(_mean(ang)))
    step = min(OBJECT_STEP, t)
    at = {
        who: {m: v[step - 1] for m, v in block[who].items()}
        for who in ("model", "repeat_last", "real")
    }

    def lower(metric: str) -> bool | None:
        a, b = at["model"][metric], at["repeat_last"][metric]
        return None if a is None or b is None else a < b

    at["beats_repeat_last"] = {
        "position": lower("position_error_px"),
        "angle": lower("angle_error_deg"),
        "pusher": lower("pusher_error_px"),
    }
    block["summary_step"] = step
    block["summary"] = at
    return block


def evaluate(
    model: DiamondWorldModel,
    sequences: list,
    cfg: EvalConfig,
    out: str | Path,
    bf16: bool = False,
    task: TaskConfig | None = None,
) -> dict[str, Any]:
    """Rollout metrics, baseline, Push-T's object block (task pusht), strip image and
    action-response check; files in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L, horizon = model.cfg.context, cfg.horizon
    spans = windows(sequences, L + horizon, cfg.rollouts)
    frames, actions = gather(sequences, spans, L + horizon)
    real = frames[:, L:]  # the frames after each context, step 1..horizon
    pred = open_loop(model, frames, actions, horizon, cfg.batch_size, cfg.seed, bf16)
    repeat = frames[:, L - 1 : L].expand_as(real)
    model_m, base_m = step_metrics(pred, real), step_metrics(repeat, real)
    k = min(SUMMARY_STEPS, horizon)
    summary = summarize(model_m, base_m, k)
    if task is not None and task.name == "pusht":
        truth = object_poses(sequences, spans, L + horizon)[:, L:]
        objects = object_metrics(pred, real, frames[:, L - 1], truth)
    else:
        name = "none given" if task is None else f"'{task.name}'"
        objects = {"skipped": f"task {name}: the object fit knows Push-T's T only"}

    device = next(model.parameters()).device
    calib = action_response.calibrate(sequences)
    ctx = windows(sequences, L, cfg.response_contexts)
    cf, ca = gather(sequences, ctx, L)
    response = action_response.check(
        model,
        cf.to(device),
        ca.to(device),
        calib["matrix"],
        cfg.response_steps,
        cfg.response_magnitude,
        cfg.seed,
        bf16,
    )
    response["calibration"] = {
        "matrix_px_per_action": calib["matrix"].tolist(),
        "r2": calib["r2"],
        "pairs": calib["pairs"],
    }
    response["passed"] = response["sign_agreement"] >= 0.75

    results = {
        "rollouts": len(spans),
        "horizon": horizon,
        "context": L,
        "sampler": {"steps": model.cfg.sampler.steps, "method": model.cfg.sampler.method},
        "definitions": {**DEFINITIONS, **OBJECT_DEFINITIONS},
        "summary_steps": k,
        "summary": summary,
        "model": model_m,
        "repeat_last": base_m,
        "object": objects,
        "action_response": response,
        "windows": [[sequences[s].bag, t] for s, t in spans],
    }
    (out / "world_model.json").write_text(json.dumps(results, indent=1))
    _plot_metrics(model_m, base_m, out / "world_model_metrics.png")
    if "model" in objects:
        _plot_object(objects, out / "world_model_object.png")
    context = frames[0, L - 1 : L]
    rows = [("real", frames[0, L - 1 :]), ("model", torch.cat([context, pred[0]]))]
    strip(rows, out / "world_model_strip.png")
    return results


def _plot_metrics(model_m: dict, base_m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    steps = np.arange(1, len(model_m["psnr"]) + 1)
    labels = (f"PSNR of the step's MSE (dB, cap {PSNR_MAX_DB:g})", "SSIM (frames in [0, 1])")
    for ax, key, unit in zip(axes, ("psnr", "ssim"), labels):
        ax.plot(steps, model_m[key], label="world model")
        ax.plot(steps, base_m[key], "--", label="repeat last frame")
        ax.set_xlabel("open-loop step (0.2 s)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Global world model: held-out open-loop rollouts")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_object(block: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("t_iou", "T shape: IoU with the best-fit T"),
        ("position_error_pct_board", "T position error (% of board)"),
        ("angle_error_deg", "T angle error (deg)"),
        ("pusher_error_pct_board", "pusher position error (% of board)"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(16, 3.5))
    steps = np.arange(1, len(block["model"]["t_iou"]) + 1)
    nan = lambda v: np.array([np.nan if x is None else x for x in v], float)  # noqa: E731
    for ax, (key, label) in zip(axes, panels):
        ax.plot(steps, nan(block["model"][key]), label="world model")
        ax.plot(steps, nan(block["repeat_last"][key]), "--", label="repeat last frame")
        if key == "t_iou":
            ax.plot(steps, nan(block["real"][key]), ":", label="real frames")
            ax.set_ylim(0, 1.02)
        ax.axvline(block["summary_step"], color="grey", lw=0.8)
        ax.set_xlabel("open-loop step (0.2 s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Push-T object fidelity, held-out rollouts (reference: {block['reference']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def strip(rows: list[tuple[str, torch.Tensor]], path: Path) -> None:
    """Named rows of frames [T,3,H,W] in [-1, 1] (e.g. real / model) at t = 0, 5, ...,
    like the paper's Fig. 2a."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = list(range(0, len(rows[0][1]), STRIP_EVERY))
    fig, axes = plt.subplots(
        len(rows), len(ts), figsize=(1.1 * len(ts), 0.3 + 1.15 * len(rows)), squeeze=False
    )
    for col, t in enumerate(ts):
        for row, (name, seq) in enumerate(rows):
            ax = axes[row, col]
            ax.imshow(seq[t].clamp(-1, 1).add(1).div(2).permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t={t}", fontsize=8)
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def held_out(ckpt: dict, bags: list[str], task: TaskConfig) -> list:
    """Sequences of `bags`, or (none given) the validation part of the bags it was trained on."""
    from dmo_ros.data.play_data import load_play_data, split_sequences

    if bags:
        return load_play_data(bags, task)
    data = ckpt.get("config", {}).get("data")
    if not data:
        raise UserError("--bags: give held-out bags (the run does not record its own)")
    _, val = split_sequences(load_play_data(data["bags"], task), data["val_fraction"], data["seed"])
    if not val:
        raise UserError("--bags: the run held out no data; give held-out bags")
    return val


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    model, ckpt, file = load_model(args.model, device)
    config = ckpt.get("config", {})
    source = str(file)
    try:
        task = build(TaskConfig, config["task"], source, "task.")
        section = build(WorldModelSection, config[SECTION], source, f"{SECTION}.")
    except KeyError:
        raise UserError(f"{file}: checkpoint lacks its training config") from None
    if task.image_size != model.cfg.image_size:
        raise UserError(
            f"{file}: task image size {task.image_size} != model's {model.cfg.image_size}"
        )
    steps = getattr(args, "sampler_steps", None)
    if steps is not None:  # a sampling choice, not the network's: cost against fidelity
        if steps < 1:
            raise UserError(f"--sampler-steps: {steps} (at least 1 denoising step)")
        model.cfg.sampler.steps = steps
    sequences = held_out(ckpt, list(args.bags), task)
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    out = Path(args.out) if args.out else run_dir / "eval"
    bf16 = use_bf16(section.train.bf16, device)
    if section.train.threads > 0:
        torch.set_num_threads(section.train.threads)
    results = evaluate(model, sequences, section.eval, out, bf16, task)
    s, r = results["summary"], results["action_response"]
    k = min(SUMMARY_STEPS, results["horizon"])
    print(
        f"world model ({results['rollouts']} rollouts x {results['horizon']} steps): "
        f"PSNR 1-{k} {s[f'psnr_1_{k}']:.2f} dB vs repeat-last "
        f"{s[f'baseline_psnr_1_{k}']:.2f} dB; action response "
        f"{r['sign_agreement']:.0%} sign agreement ({'pass' if r['passed'] else 'FAIL'}) -> {out}"
    )
    if "summary" in results["object"]:
        o = results["object"]
        m, b = o["summary"]["model"], o["summary"]["repeat_last"]
        fmt = lambda v, unit: "-" if v is None else f"{v:.2f}{unit}"  # noqa: E731
        print(
            f"Push-T at step {o['summary_step']}: T IoU {fmt(m['t_iou'], '')}, T position "
            f"error {fmt(m['position_error_pct_board'], ' %')} of the board (repeat-last "
            f"{fmt(b['position_error_pct_board'], ' %')}), angle {fmt(m['angle_error_deg'], '°')} "
            f"({fmt(b['angle_error_deg'], '°')}), pusher {fmt(m['pusher_error_pct_board'], ' %')} "
            f"({fmt(b['pusher_error_pct_board'], ' %')})"
        )
    return 0
