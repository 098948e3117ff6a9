"""``run_bench.py [run]``: the grid of methods × pairs × tasks × seeds, then the leaderboard.

Flags come from two places, both generated from dataclass fields: :class:`benchmark.config.RunOptions` (what to
run and where) and every section of :class:`benchmark.config.Settings` (what determines a cell's numbers; a flag
given here overrides the budget preset).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import time
from typing import Any, Sequence

from benchmark.config import SECTION_TYPES, ConfigError, RunOptions, UsageError
from benchmark.core.files import describe_os_error
from benchmark.run.slurm import FIELDS as SLURM_FIELDS
from benchmark.run.slurm import SlurmOptions

DATACLASSES = (RunOptions, SlurmOptions, *SECTION_TYPES)  # the parser generates one flag per field
_SETTING_FIELDS = {f.name: f"{section.name}.{f.name}" for section in SECTION_TYPES for f in dataclasses.fields(section)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # A setting flag that is not given must not override the budget preset, nor a slurm flag the --slurm-config
    # file: leave it out of the namespace. (``set_defaults`` would not do: argparse parses string defaults as values.)
    for action in parser._actions:
        if action.dest in _SETTING_FIELDS or action.dest in SLURM_FIELDS:
            action.default = argparse.SUPPRESS


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from benchmark.cli.preflight import load_task_data
    from benchmark.engine import distributed
    from benchmark.run.grid import FAILED_STATUSES, Grid, summarize
    from tasks.base import DataError

    run = resolve_args(args)
    options = run.options
    started = time.perf_counter()
    # The data, before any model loads: its files checked against their releases (fetched first where allowed),
    # then every record of the selected tasks parsed once; the grid reuses the parsed tasks. The main process of a
    # launch checks first (it may fetch files, and it writes a marker in the cache).
    with distributed.main_first():
        data_sha256 = _verified_data(run, fetch=not options.dry_run)
    run = dataclasses.replace(run, task_adapters=load_task_data(run.tasks, run.data_dir, run.settings))
    # Bad input before any work: the workers a gpus executor would start, then each pair's check.
    environments = _worker_environments(options.workers) if options.executor == "gpus" and not options.dry_run else []
    if not options.dry_run and distributed.is_main():
        _check_pairs(run)
    grid = Grid(run, data_sha256=data_sha256)
    try:
        if options.executor == "slurm":
            outcomes = _run_array(grid, _slurm_options(vars(args)), argv)
            if outcomes is None:  # submitted, not waited for
                return 0
        elif options.executor == "gpus" and not options.dry_run:
            outcomes = _run_with_workers(grid, environments, argv)
        else:
            outcomes = grid.run(dry_run=options.dry_run)
    except DataError as error:
        raise UsageError(str(error)) from None
    if options.dry_run or not distributed.is_main():  # the main process of a launch reports for all
        return 0
    print(summarize(outcomes))
    failed = any(o.status in FAILED_STATUSES for o in outcomes)
    if not outcomes:  # every requested pair was skipped: nothing ran, which is not a success
        print("nothing ran: every requested pair was skipped (the reasons are above)")
        failed = True
    if options.leaderboard:
        try:
            _print_leaderboard(grid.store.root)
        except OSError as error:  # e.g. the disk filled up: the cells are stored, the tables can be rendered later
            print(f"leaderboard not written: {describe_os_error(error)}; render it later with `run_bench.py "
                  f"leaderboard --runs {grid.store.root}`")
            failed = True
        except ValueError as error:  # e.g. no cell finished (workers or array tasks that died)
            print(f"no leaderboard: {error}")
    print(f"results: {grid.store.root}/<task>/<pair>/<method>/seed<k>/  wall time {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


def resolve_args(args: argparse.Namespace) -> Any:
    """The parsed flags as a validated :class:`benchmark.config.RunConfig`, checked against this launch."""
    from benchmark.cli.resolve import flag_error, resolve_run
    from benchmark.engine import distributed
    from benchmark.engine.harness import data_parallel_shape

    values = vars(args)
    try:
        options = RunOptions(**{f.name: values[f.name] for f in dataclasses.fields(RunOptions)})
    except ConfigError as error:
        raise flag_error(error) from None
    if options.log_with == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--log-with tensorboard: the tensorboard package is not installed; install the extra: "
                         "pip install 'ctkd-bench[tensorboard]'")
    if options.workers not in (None, 1) and options.executor != "gpus":
        raise UsageError(f"--workers {options.workers}: more than one worker needs --executor gpus")
    if options.workers is not None and options.workers > (cores := os.cpu_count() or 1):
        raise UsageError(f"--workers {options.workers}: expected at most {cores}, the CPU cores here (each worker is a "
                         "process holding its own models)")
    run = resolve_run(options, {path: values[name] for name, path in _SETTING_FIELDS.items() if name in values})
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        raise UsageError("configs/accelerate/fsdp.yaml: FSDP is not supported by the harness yet (its checkpoints "
                         "and evaluation need the sharded weights gathered); use configs/accelerate/ddp.yaml")
    processes = distributed.processes()
    if processes > 1:
        if options.executor != "local":
            raise UsageError(f"--executor {options.executor}: under accelerate launch ({processes} processes) the "
                             "cells run here, with --executor local; the slurm executor launches accelerate itself "
                             "(--slurm-accelerate-config)")
        if options.shard_teacher:
            raise UsageError(f"--shard-teacher: each of the {processes} processes of this launch has its own GPU; "
                             "build the teacher cache first with `run_bench.py cache-teacher --shard-teacher`")
        try:
            data_parallel_shape(run.settings.train, processes)
        except ValueError as error:
            raise UsageError(f"--batch-size/--grad-accum: {error}") from None
    return run


def _slurm_options(values: dict[str, Any]) -> SlurmOptions:
    """The slurm options: defaults < ``--slurm-config`` < the flags given."""
    from benchmark.cli.resolve import flag_error, parse_field
    from benchmark.run.slurm import slurm_options

    def parse(name: str, text: str) -> Any:
        key = name.removeprefix("slurm_")
        return parse_field(SlurmOptions, name, text, f"--slurm-config {key}: {text!r}", "the slurm options")[1]

    try:
        return slurm_options({name: values[name] for name in SLURM_FIELDS if name in values}, parse)
    except ConfigError as error:
        raise flag_error(error) from None
    except ValueError as error:
        raise UsageError(str(error)) from None


def _run_array(grid: Any, slurm: SlurmOptions, argv: Sequence[str]) -> list[Any] | None:
    """``--executor slurm``: the unfinished cells as one job array (printed with ``--dry-run``)."""
    from benchmark.run.slurm import run_array

    try:
        return run_array(grid, slurm, argv, grid.run_config.options.dry_run)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _print_leaderboard(root: Any) -> None:
    from leaderboards import render_leaderboards

    written = render_leaderboards(root)
    print(written["leaderboard.md"].read_text())
    for name, path in written.items():
        print(f"{name}: {path}")


def _verified_data(run: Any, fetch: bool = True) -> dict[str, str]:
    """The sha256 of every data file the run's tasks read, checked against their releases before any model loads;
    missing files are fetched first (unless ``fetch`` is false, ``--offline`` or ``CTKD_OFFLINE=1``) where their
    origin answers, else named with the command that fetches them. Tasks without a registered release (third-party
    adapters) are not checked."""
    from benchmark.data.fetch import ensure_task_data, fetch_allowed
    from tasks.base import DataError
    from tasks.data_sources import TASK_DATA

    try:
        return ensure_task_data(run.data_dir, [t for t in run.tasks if t in TASK_DATA], run.cache_dir,
                                online=fetch and fetch_allowed() and not run.options.offline)
    except DataError as error:
        raise UsageError(str(error)) from None


def _check_pairs(run: Any) -> None:
    """``pair check`` of every pair that can run here, on the run's tasks and methods, before the grid's first cell:
    a check that rules out a method of the run stops it (one line)."""
    from benchmark.models.pairs import PAIRS, pair_status
    from benchmark.run.pair_check import READERS, check_pair, ruled_out
    from methods.registry import METHODS

    methods = {name: METHODS.get(name)(run.method_configs[name]) for name in run.methods}
    vocab_map = any(READERS["vocabulary map"](method) for method in methods.values())
    for name in run.pairs:
        pair = PAIRS.get(name)
        if pair_status(pair, run.cache_dir):  # the grid skips it and says why
            continue
        checks = check_pair(pair, [run.task_adapters[task] for task in run.tasks], run.settings, run.cache_dir,
                            methods, vocab_map=vocab_map)
        print(f"pair check {name}:")
        for check in checks:
            print(check.line())
        failures = ruled_out(checks, run.methods)
        if failures:
            check, names = failures[0]
            raise UsageError(f"pair {name}: {check.name} failed ({check.figure}), which rules out "
                             f"{', '.join(names)}; see `run_bench.py pair check {name}`")


def _worker_environments(workers: int | None) -> list[dict[str, str]]:
    """The environment of each worker ``--executor gpus`` would start (a one-line error where it cannot)."""
    import torch

    from benchmark.run.executors import worker_environments

    try:
        return worker_environments(workers, torch.cuda.device_count(), os.cpu_count() or 1)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _run_with_workers(grid: Any, environments: list[dict[str, str]], argv: Sequence[str]) -> list[Any]:
    """``--executor gpus``: the grid spread over worker processes; the outcomes as the result store records them."""
    from benchmark.run.executors import run_workers

    print(f"executor gpus: {len(environments)} workers")
    for index, code in enumerate(run_workers(argv, environments)):
        if code not in (0, 1):  # 1 is "a cell failed", which the store reports per cell
            print(f"worker {index} exited with code {code}")
    return grid.stored_outcomes()
