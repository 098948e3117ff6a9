"""``run_bench.py pair check NAME``: whether a pair's two tokenizers can be aligned, one line per check with its
figure (:mod:`benchmark.run.pair_check`), from the tokenizers and the models' configs only. Exit code 1 when a
check fails."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Sequence

from benchmark.config import DEFAULT_TASKS, PAIR_HELP, PAIRS_FILE_HELP, UsageError
from benchmark.core.paths import default_cache_dir

if TYPE_CHECKING:
    from benchmark.models.loading import ModelSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("check",), help="check: measure what the methods need from the pair")
    parser.add_argument("name", help="a registered pair, or one defined by --pair / --pairs-file")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help="tasks whose answers the per-task "
                                                                                "checks read, or 'all'")
    parser.add_argument("--pair", action="append", default=[], metavar="NAME=TEACHER,STUDENT", help=PAIR_HELP)
    parser.add_argument("--pairs-file", default=None, help=PAIRS_FILE_HELP)
    parser.add_argument("--include", action="append", default=[], metavar="FILE.py",
                        help="register methods from a Python file first (their needs count too)")
    parser.add_argument("--budget", default=None, help="settings preset whose prompts the per-task checks encode "
                                                       "answers after (default: as a run)")
    parser.add_argument("--cache-dir", default=None, help="model cache; the checks' results are cached in its pairs/")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: $CTKD_DATA_DIR, ../shared/data, "
                                                         "or the per-user data folder)")


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from benchmark.cli.preflight import directory, load_task_data, methods_with_includes
    from benchmark.cli.resolve import define_user_pairs, resolve_names
    from benchmark.config import ConfigError, budget_settings, default_budget_name
    from benchmark.core.paths import resolve_data_dir
    from benchmark.models.pairs import PAIRS, pair_status
    from benchmark.run.pair_check import check_pair
    from tasks.registry import load_tasks

    define_user_pairs(args.pair, args.pairs_file)
    name = resolve_names(PAIRS, [args.name], "pair check")[0]
    pair = PAIRS.get(name)
    cache = directory(args.cache_dir if args.cache_dir is not None else str(default_cache_dir()), "--cache-dir",
                      writable=True)
    budget = args.budget or default_budget_name()
    try:
        settings = budget_settings(budget)
    except ConfigError as error:
        raise UsageError(f"--budget {budget!r}: accepted: {error.accepted.removeprefix('one of ')}") from None
    tasks = resolve_names(load_tasks(), args.tasks, "--tasks")
    adapters = load_task_data(tasks, resolve_data_dir(args.data_dir), settings)
    registry = methods_with_includes(args.include)
    methods = {method: registry.get(method)() for method in registry.names()}
    reason = pair_status(pair, cache)
    if reason:
        raise UsageError(f"pair {name}: {reason}")
    print(f"pair {name}: teacher {_side(pair.teacher)} -> student {_side(pair.student)}")
    checks = check_pair(pair, [adapters[task] for task in tasks], settings, cache, methods)
    for check in checks:
        print(check.line())
    failed = sum(check.status == "FAIL" for check in checks)
    print(f"{len(checks)} checks, {failed} failed" if failed else f"{len(checks)} checks passed")
    return 1 if failed else 0


def _side(spec: ModelSpec) -> str:
    revision = f"@{spec.revision}" if spec.revision else ""
    return f"{spec.ref}{revision} ({spec.source}, prompt {spec.prompt_style})"
