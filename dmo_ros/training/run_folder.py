"""What every `dmo-ros train <what>` means by `--config`, `--out`, `--bags`, `--resume` and
`--preset`: one reading for the world model, the reward and the RSSM.

* `--config` is read after its `presets:` entry and the `--set` overrides;
* `--out` without `--resume` must not hold a trained run; with `--resume` the bags and the
  preset recorded in `<out>/config.yaml` are the defaults;
* no `--preset`: paper with CUDA, cpu without (`resolve_preset`), printed with the reason;
* `<out>/config.yaml` holds the resolved sections, the preset and the data ("bags", ...).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dmo_ros.config import apply_overrides, apply_preset, config_path, load_yaml
from dmo_ros.errors import UserError
from dmo_ros.training.device import resolve_preset


def load_sections(
    config: str | Path, preset: str | None, sets, sections: tuple[str, ...]
) -> tuple[dict[str, Any], str]:
    """The config file's data after the preset and overrides, and its path as a source name;
    each of `sections` must be present."""
    path = config_path(config)
    source = str(path)
    data = apply_overrides(apply_preset(load_yaml(path), preset, source), list(sets))
    for key in sections:
        if key not in data:
            raise UserError(f"{source}: missing key '{key}'")
    return data, source


@dataclass
class RunFolder:
    out: Path
    bags: list[str]
    preset: str
    why: str  # how the preset was chosen
    previous: dict[str, Any]  # the folder's config.yaml from an earlier run, {} if none
    main: bool  # rank 0 of a torchrun (or the only process): prints and writes

    def announce(self, name: str) -> None:
        if self.main:
            print(f"{name}: preset {self.preset} ({self.why})", flush=True)

    def write_config(self, data: dict[str, Any]) -> None:
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    def done(self, name: str, steps: int, last: dict[str, float]) -> None:
        if self.main:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items())
            print(f"{name}: {steps} steps -> {self.out / 'checkpoints' / 'last.pt'} ({shown})")


def open_run(args: argparse.Namespace) -> RunFolder:
    """Check the flags against the run folder and choose the preset."""
    out = Path(args.out)
    bags = list(args.bags)
    previous = load_yaml(out / "config.yaml") if (out / "config.yaml").is_file() else {}
    if not bags and args.resume:
        bags = previous.get("data", {}).get("bags", [])
    if not bags:
        raise UserError("--bags: give at least one play-data bag (or a folder of bags)")
    if not args.resume and (out / "checkpoints" / "last.pt").exists():
        raise UserError(f"{out}: already holds a trained run (pass --resume, or another --out)")
    if args.resume and not args.preset and previous.get("preset"):
        preset, why = previous["preset"], f"as recorded in {out / 'config.yaml'}"
    else:
        preset, why = resolve_preset(args.preset, args.device)
    main = int(os.environ.get("RANK", "0")) == 0
    return RunFolder(out, bags, preset, why, previous, main)
