"""``run_bench.py data fetch [--tasks ...]``: download the task data that is missing, verified against its release."""
from __future__ import annotations

import argparse
from typing import Sequence

from benchmark.config import UsageError
from benchmark.core.paths import default_cache_dir, resolve_data_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("fetch",), help="fetch: download what is missing into the data directory")
    parser.add_argument("--tasks", nargs="+", default=["all"], help="tasks whose data to fetch (default: all)")
    parser.add_argument("--data-dir", default=None, help="where the data goes (default: $CTKD_DATA_DIR, "
                                                         "../shared/data, or the per-user data folder)")
    parser.add_argument("--cache-dir", default=None, help="where the record of verified files is kept")


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from benchmark.cli.resolve import resolve_names
    from benchmark.data.fetch import fetch_task_data
    from tasks.base import DataError
    from tasks.data_sources import TASK_DATA
    from tasks.registry import load_tasks

    tasks = [t for t in resolve_names(load_tasks(), args.tasks, "--tasks") if t in TASK_DATA]
    data_dir = resolve_data_dir(args.data_dir)
    try:
        fetched = fetch_task_data(data_dir, tasks, cache_dir=args.cache_dir or default_cache_dir())
    except DataError as error:
        raise UsageError(str(error)) from None
    print(f"{len(fetched)} files fetched into {data_dir}" if fetched else f"nothing to fetch: the data of "
          f"{', '.join(tasks)} is in {data_dir}")
    return 0
