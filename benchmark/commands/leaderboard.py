"""``run_bench.py leaderboard``: re-render the leaderboard files from a result store (reads only)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from benchmark.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="result store to read (default: runs/)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the result store)")


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from leaderboards import render_leaderboards

    if not args.runs.is_dir():
        raise UsageError(f"--runs {str(args.runs)!r} is not a directory")
    try:
        written = render_leaderboards(args.runs, args.out)
    except ValueError as error:
        raise UsageError(str(error)) from None
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
