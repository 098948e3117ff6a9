"""``run_bench.py export-lm-eval DIR``: write the tasks as lm-evaluation-harness tasks (see ``benchmark.export.lm_eval``).

What an exported task reproduces comes from a budget (default: the run's default) with single values overridden by
the flags of the same names as ``run``'s, or from a finished cell (``--like-cell``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from benchmark.config import BUDGETS, UsageError, budget_settings, default_budget_name

OVERRIDES = {  # flag destination -> the setting it overrides
    "limit_eval": "data.limit_eval",
    "max_prompt_tokens": "prompt.max_prompt_tokens",
    "student_shots": "prompt.student_shots",
    "max_new_tokens": "eval.max_new_tokens",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="folder to write the lm-eval tasks into (lm_eval's --include_path)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to export, space- or comma-separated, or `all` "
                                                                 "(default: all)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="dataset folder (default: $CTKD_DATA_DIR, ../shared/data, or the per-user data folder)")
    parser.add_argument("--budget", choices=list(BUDGETS), default=None,
                        help="take the student's prompt format, examples and length from this budget "
                             "(default: smoke on CPU, paper on GPU, as run)")
    parser.add_argument("--like-cell", type=Path, default=None, metavar="CELL_DIR",
                        help="take task, prompt format, examples and length from this cell's config.json")
    parser.add_argument("--limit-eval", type=int, default=None, help="evaluation examples (the run's fixed-seed subset)")
    parser.add_argument("--max-prompt-tokens", type=int, default=None, help="prompt token budget")
    parser.add_argument("--student-shots", type=int, default=None, help="shots in the prompt")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="generation length (default: the task's)")


def main(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    from benchmark.cli.preflight import directory
    from benchmark.cli.resolve import apply_settings, resolve_names
    from benchmark.export.lm_eval import (
        TAG,
        CellConfigError,
        LmEvalSettings,
        export_lm_eval,
    )
    from tasks.base import DataError
    from tasks.registry import load_tasks

    directory(str(args.out_dir), "OUT_DIR", writable=True)  # an existing file or unwritable place: one line, exit 2
    overrides = {path: getattr(args, dest) for dest, path in OVERRIDES.items() if getattr(args, dest) is not None}
    if args.like_cell is not None:
        if args.tasks or args.budget or overrides:
            raise UsageError("--like-cell takes the task, the prompt and the examples from the cell; drop "
                             "--tasks, --budget and the value flags")
        try:
            task_name, settings = LmEvalSettings.from_cell(args.like_cell)
        except CellConfigError as error:
            raise UsageError(f"--like-cell {error}") from None
        names = [task_name]
    else:
        run_settings = apply_settings(budget_settings(args.budget or default_budget_name()), overrides, "flag")
        settings = LmEvalSettings.from_settings(run_settings)
        names = resolve_names(load_tasks(), args.tasks or ["all"], "--tasks")
    try:
        written = export_lm_eval(args.out_dir, names, args.data_dir, settings)
    except DataError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {len(written)} lm-eval task(s) to {args.out_dir}: {', '.join(p.stem for p in written)}")
    print(f"run: lm_eval --model hf --model_args pretrained=<model dir> --tasks {TAG} --include_path {args.out_dir}")
    return 0
