"""``run_bench.py plan --tasks qed --mde 2 [--runs DIR] [--family M]``: how many evaluation examples and seeds a
target difference from ``sft`` needs (80 % power, the marks' paired test at Holm's first step α/M with α = 0.05), and
what that costs, from the spread and costs an existing store measured."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from benchmark.config import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", nargs="+", default=["all"], help="tasks to plan for (default: all in the store)")
    parser.add_argument("--mde", type=float, required=True, help="the difference from sft to detect, in points (0-100)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="result store whose spread and costs to use")
    parser.add_argument("--pairs", nargs="+", default=None, help="pairs to plan for (default: all in the store)")
    parser.add_argument("--family", type=int, default=None,
                        help="comparisons with sft the planned leaderboard corrects together (Holm); default: those "
                             "of the store's grid for these tasks and pairs")
    parser.add_argument("--data-dir", default=None, help="dataset folder, to flag plans larger than a test split")


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from benchmark.cli.resolve import resolve_names
    from benchmark.core.paths import resolve_data_dir
    from leaderboards.planning import plan
    from tasks.base import DataError
    from tasks.registry import TASKS, load_tasks

    tasks = resolve_names(load_tasks(), args.tasks, "--tasks")
    data_dir = resolve_data_dir(args.data_dir)
    try:
        sizes = {task: len(TASKS.get(task)(data_dir).load("test")) for task in tasks} if data_dir.is_dir() else None
    except DataError:
        sizes = None  # the sizes only flag plans larger than a split; the plan itself needs the store
    try:
        print(plan(args.runs, tasks, args.mde, pairs=args.pairs, family=args.family, test_sizes=sizes))
    except ValueError as error:
        raise UsageError(str(error)) from None
    return 0
