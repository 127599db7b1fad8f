"""Checkpoints: tensors and plain data only, written atomically, checked when read.

A checkpoint is a dict with at least `format`, `kind` (what model), `task` (the task
name) and `model_config` (plain data that rebuilds the model). It loads with
`torch.load(weights_only=True)`, so reading one never runs pickled code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from dmo_ros.errors import UserError

FORMAT = "dmo_ros.checkpoint/1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` via a temp file in the same folder and `os.replace`.

    A crash mid-write leaves the previous file intact: readers never see half a checkpoint.
    """
    for key in ("kind", "task", "model_config"):
        if key not in payload:
            raise ValueError(f"checkpoint payload lacks '{key}'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (-> checkpoints/last.pt) or its checkpoints/ folder."""
    path = Path(path)
    for candidate in (path, path / "checkpoints" / "last.pt", path / "last.pt"):
        if candidate.is_file():
            return candidate
    if path.exists():
        raise UserError(f"{path}: no checkpoint here (expected checkpoints/last.pt)")
    raise UserError(f"{path}: no such model folder or checkpoint")


def load_checkpoint(
    path: str | Path, kind: str | None = None, task: str | None = None
) -> dict[str, Any]:
    """Read a checkpoint safely; refuse (one-line UserError) a wrong kind or task."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, not a torch file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable dmo_ros checkpoint ({reason[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not a dmo_ros checkpoint (no '{FORMAT}' format tag)")
    if kind is not None and payload.get("kind") != kind:
        raise UserError(f"{path}: checkpoint holds a '{payload.get('kind')}', expected a '{kind}'")
    if task is not None and payload.get("task") != task:
        raise UserError(
            f"{path}: checkpoint was trained for task '{payload.get('task')}', not '{task}'"
        )
    return payload


def config_mismatch(saved: Any, current: Any, where: str = "") -> str | None:
    """The first key where two plain-data configs differ, as 'key: saved vs current', or None."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            if key not in saved or key not in current:
                return f"{where}{key}: present in only one of them"
            diff = config_mismatch(saved[key], current[key], f"{where}{key}.")
            if diff:
                return diff
        return None
    if isinstance(saved, list | tuple) and isinstance(current, list | tuple):
        saved, current = list(saved), list(current)
    if saved != current:
        return f"{where.rstrip('.')}: {saved!r} vs {current!r}"
    return None
