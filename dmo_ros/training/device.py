"""Where training runs: device choice, the default preset, and bf16 where the hardware has it."""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

import torch

from dmo_ros.errors import UserError


def pick_device(spec: str = "auto") -> torch.device:
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'; anything else is refused."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"--device: unknown device '{spec}' (use auto, cpu or cuda[:N])") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UserError(f"--device: unsupported device type '{device.type}' (use cpu or cuda)")
    return device


def resolve_preset(preset: str | None, device_spec: str = "auto") -> tuple[str, str]:
    """The preset to train and why: as given, else `paper` on CUDA and `cpu` without.

    Every trainer (CLI and trainer node) resolves its preset here, so a run without
    --preset trains the config's real size for the machine, never the test-sized one.
    """
    if preset:
        return preset, "--preset"
    if pick_device(device_spec).type == "cuda":
        return "paper", "default with CUDA; --preset to choose"
    return "cpu", "default without CUDA; --preset to choose"


@cache
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX); emulated bf16 is slow."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX512_BF16", "AMX"):
        # AVX2-only CPUs never have the bf16 dot-product instructions.
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    """Resolve a config's `bf16: auto | true | false` for `device`."""
    if setting == "auto":
        return bf16_available(device)
    if isinstance(setting, bool):
        return setting
    raise UserError(f"bf16 must be auto, true or false, got {setting!r}")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when enabled, otherwise a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
