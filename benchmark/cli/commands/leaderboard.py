"""``run_bench.py leaderboard``: re-render the leaderboard files from a result store (reads only)."""
from __future__ import annotations

import argparse
from typing import Sequence

from benchmark.config import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", default="runs", help="result store to read (default: runs/)")
    parser.add_argument("--out", default=None, help="where to write (default: the result store)")


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from benchmark.cli.preflight import directory
    from leaderboards import render_leaderboards

    runs = directory(args.runs, "--runs", must_exist=True)
    out = directory(args.out if args.out is not None else args.runs, "--out", writable=True)
    try:
        written = render_leaderboards(runs, out)
    except ValueError as error:
        raise UsageError(str(error)) from None
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
