"""`dmo-ros bench`: run the measurement scripts in bench/ (a source checkout)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from dmo_ros.errors import UserError

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def available() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_"))


def run(args: argparse.Namespace) -> int:
    if not BENCH_DIR.is_dir():
        raise UserError(f"{BENCH_DIR}: no bench/ folder (benchmarks need a source checkout)")
    names = args.which or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise UserError(f"unknown bench '{unknown[0]}' (have: {', '.join(available())})")
    failed = 0
    for name in names:
        print(f"== bench/{name}.py", flush=True)
        failed += subprocess.call([sys.executable, str(BENCH_DIR / f"{name}.py")]) != 0
    return 1 if failed else 0
