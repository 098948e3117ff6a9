"""``run_bench.py cache-teacher``: build the teacher-output cache of a grid ahead of its cells, e.g. as its own job.

The same flags as ``run`` select the tasks, pairs, methods and settings; for each task × pair and each method whose
teacher signal the cache can hold (``benchmark.run.teacher.CACHED_SIGNALS``: top-k logits, generated answers) the entry
its cells will look up is built here, through the same function the cells use, so a 7-8B teacher runs once (with
``--shard-teacher``, spread over every visible GPU) and every student cell then trains without loading it. Methods
that need the teacher's full logits or hidden states run it live while training; they are listed with that reason.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from benchmark.cli.commands import run as run_command
from benchmark.config import SECTION_TYPES, RunOptions, UsageError

DATACLASSES = (RunOptions, *SECTION_TYPES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    run_command.add_arguments(parser)


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from benchmark.models.loading import load_tokenizer
    from benchmark.run.grid import Grid
    from benchmark.run.recipe import teacher_side
    from benchmark.run.teacher import CACHED_SIGNALS, TopkCache
    from benchmark.store import CellKey
    from tasks.base import DataError

    run = run_command.resolve_args(args)
    if run.options.executor != "local":
        raise UsageError(f"--executor {run.options.executor}: cache-teacher runs here, in one process; submit it as "
                         "a job of its own to run it elsewhere")
    grid = Grid(run, data_sha256=run_command._verified_data(run))
    pairs, skipped = grid.reachable_pairs()
    for name, reason in skipped.items():
        print(f"skipped pair {name}: {reason}")
    status = 0
    try:
        for task in run.tasks:
            for pair in pairs:
                ctx = grid.context(task, pair)
                student_tokenizer = load_tokenizer(ctx.pair.student, cache_dir=run.cache_dir)
                for name in run.methods:
                    method = grid.method(CellKey(task, pair, name, run.seeds[0]))
                    assert method is not None
                    where, needs = f"{task}/{pair} {name}", method.teacher_request().needs
                    if needs == "none":
                        print(f"{where}: needs no teacher signal")
                    elif needs not in CACHED_SIGNALS:
                        print(f"{where}: needs {needs}, which the cache does not hold "
                              f"({' and '.join(CACHED_SIGNALS.values())} only): it runs the teacher live in training")
                    elif method.same_tokenizer_only and not ctx.pair.same_tokenizer:
                        print(f"{where}: needs a pair sharing one tokenizer; {pair} does not")
                    elif failure := grid.teacher_failure(task, pair):
                        print(f"{where}: teacher preparation failed: {failure}")
                        status = 1
                    else:
                        side = teacher_side(ctx, method, grid.teachers, student_tokenizer)
                        entry = (f"{side.teacher.dir} ({side.teacher.size_bytes() / 2**20:.1f} MiB)"
                                 if isinstance(side.teacher, TopkCache) else f"{len(side.answers)} answers")
                        print(f"{where}: {CACHED_SIGNALS[needs]} cached for {len(side.examples)} examples: {entry}")
    except DataError as error:
        raise UsageError(str(error)) from None
    return status
