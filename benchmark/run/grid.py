"""The grid of a run: enumerate its cells, skip what is done, take each cell's lock, record failures, go on.

Per task and pair the grid has two reference cells, ``teacher`` and ``untrained`` (seed 0), then one cell per
method and seed. What a cell does is :class:`benchmark.run.recipe.CellRecipe`'s business; the grid only decides
whether it runs. A cell holding ``DONE`` with the same config hash is skipped; a cell that fails (exception,
non-finite loss, out of memory) gets ``FAILED.json`` and the grid goes on. With ``teacher_prep sft`` the task's
fine-tuned teacher is prepared once, before the first cell of the task and pair that reads it
(:mod:`benchmark.run.teacher_prep`, a record of its own); when that fails, those cells fail with its reason.

Under ``accelerate launch`` every process runs the same grid: the main process claims each cell (checks it, takes
its lock, writes its config) and the others follow it into the cells it claimed (:mod:`benchmark.engine.distributed`). A
failing cell then ends the launch after the main process recorded it: the other processes may be waiting in a
collective that will never come.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Mapping

from benchmark.config import RunConfig, UsageError
from benchmark.core.files import disk_error_hint
from benchmark.engine import distributed
from benchmark.models.pairs import PAIRS, pair_status
from benchmark.run.context import TaskPairContext
from benchmark.run.executors import RUN_STARTED_ENV
from benchmark.run.recipe import CellOptions, CellRecipe
from benchmark.run.teacher import Teachers
from benchmark.run.teacher_prep import TeacherPrepError, prepare_teacher, reads_teacher
from benchmark.store import (
    REFERENCE_METHODS,
    Cell,
    CellKey,
    CellLock,
    Store,
    config_hash,
)
from methods.base import Method
from methods.registry import METHODS
from tasks.base import Task
from tasks.registry import TASKS

FAILED_STATUSES = ("failed", "missing")  # outcomes that make the run exit with status 1


@dataclass
class CellOutcome:
    key: CellKey
    status: str  # "done", "cached", "failed", "locked"; "missing" when no worker finished the cell
    reason: str = ""
    wall_time_s: float = 0.0


class Grid:
    def __init__(self, run: RunConfig, log: Callable[[str], None] = print,
                 data_sha256: Mapping[str, str] | None = None) -> None:
        """``data_sha256``: the verified data files (path under the data directory -> sha256), for run.json."""
        self.run_config = run
        self.log = log if distributed.is_main() else _silent  # one process of a launch speaks for all
        self.store = Store(run.options.output)
        # One teacher cache serves every top-k method of the run: it stores each temperature and row value they read.
        methods = [METHODS.get(name)(run.method_configs[name]) for name in run.methods]
        self.teachers = Teachers.for_methods(run.cache_dir, methods, log, sharded=run.options.shard_teacher)
        self.cell_options = CellOptions(budget=run.budget, save_students=run.options.save_students,
                                        log_with=run.options.log_with, data_sha256=dict(data_sha256 or {}))
        # One start time for all workers of a run: ``--force`` re-runs what was done before it, not what they did.
        self.started = float(os.environ.get(RUN_STARTED_ENV) or time.time())
        self._tasks: dict[str, Task] = dict(run.task_adapters)  # parsed while the run was checked
        self._contexts: dict[tuple[str, str], TaskPairContext] = {}
        self._teacher_preps: dict[tuple[str, str], str | None] = {}  # (task, pair) -> why its teacher failed, or None

    # -- enumeration ---------------------------------------------------------------------------------------------
    def reachable_pairs(self) -> tuple[list[str], dict[str, str]]:
        """Requested pairs that can run here, and the reason for each that cannot."""
        runnable, skipped = [], {}
        for name in self.run_config.pairs:
            reason = pair_status(PAIRS.get(name), self.run_config.cache_dir)
            if reason:
                skipped[name] = reason
            else:
                runnable.append(name)
        return runnable, skipped

    def cells(self, pairs: list[str]) -> list[CellKey]:
        """The grid's cells over ``pairs``, or those of them that ``--cells`` names."""
        keys = []
        for task in self.run_config.tasks:
            for pair in pairs:
                keys += [CellKey(task, pair, reference, 0) for reference in REFERENCE_METHODS]
                keys += [CellKey(task, pair, method, seed)
                         for method in self.run_config.methods for seed in self.run_config.seeds]
        only = self.run_config.options.cells
        unknown = sorted(set(only) - {str(key) for key in keys})
        if unknown:
            raise UsageError(f"--cells {unknown[0]!r}: not a cell of this grid; its cells: "
                             f"{', '.join(map(str, keys)) or '(none)'}")
        return [key for key in keys if str(key) in only] if only else keys

    def context(self, task: str, pair: str) -> TaskPairContext:
        """What the cells of ``task`` and ``pair`` share, computed once."""
        if task not in self._tasks:
            self._tasks[task] = TASKS.get(task)(self.run_config.data_dir)
        if (task, pair) not in self._contexts:
            self._contexts[task, pair] = TaskPairContext.build(
                self._tasks[task], PAIRS.get(pair), self.run_config.settings, self.run_config.cache_dir)
        return self._contexts[task, pair]

    def method(self, key: CellKey) -> Method | None:
        """A fresh instance of the cell's method with the run's config (None for reference cells)."""
        if key.is_reference:
            return None
        return METHODS.get(key.method)(self.run_config.method_configs[key.method])

    # -- running -------------------------------------------------------------------------------------------------
    def prepare(self, dry_run: bool = False) -> tuple[list[CellKey], dict[str, str]]:
        """The cells of this run, and the pairs that cannot run here (recorded in the store unless ``dry_run``, and
        reported)."""
        pairs, skipped = self.reachable_pairs()
        if distributed.is_main():  # the others of a launch neither write nor read the store
            if not dry_run and (damage := self.store.record_skipped(self.run_config.pairs, skipped)):
                self.log(f"damaged, kept aside as .corrupt and rewritten: {damage}")
            self._note_older_cells()
        for name, reason in skipped.items():
            self.log(f"skipped pair {name}: {reason}")
        return self.cells(pairs), skipped

    def pending(self, keys: list[CellKey]) -> list[CellKey]:
        """The cells of ``keys`` that a run would not reuse (unfinished, another config, or ``--force``)."""
        return [key for key in keys if not self._reusable(self.store.cell(key), self._digest(key))]

    def run(self, dry_run: bool = False) -> list[CellOutcome]:
        """Run every cell not done yet (``dry_run``: print each cell's state, write nothing)."""
        keys, skipped = self.prepare(dry_run)
        if dry_run:
            for key in keys:
                self.log(self._state(key))
            self.log(f"{len(keys)} cells, {len(skipped)} skipped pairs")
            return []
        outcomes = []
        for number, key in enumerate(keys, 1):
            self.log(f"[{number}/{len(keys)}] {key}")
            outcome = self.run_cell(key)
            if outcome.status == "failed":
                self.log(f"  FAILED: {outcome.reason}")
            elif outcome.status != "done":
                self.log(f"  {outcome.status}")
            outcomes.append(outcome)
        return outcomes

    def teacher_failure(self, task: str, pair: str) -> str | None:
        """Prepare the teacher of ``task`` and ``pair`` once per run (``teacher_prep sft``: fine-tuned, with its own
        record, :mod:`benchmark.run.teacher_prep`); None when it is ready, else why it is not."""
        if (task, pair) not in self._teacher_preps:
            self._teacher_preps[task, pair] = prepare_teacher(self.context(task, pair), self.started, self.log)
        return self._teacher_preps[task, pair]

    def run_cell(self, key: CellKey) -> CellOutcome:
        ctx, method = self.context(key.task, key.pair), self.method(key)
        config = ctx.cell_config(key, method)
        digest, cell = config_hash(config), self.store.cell(key)
        lock = cell.lock()
        started = time.perf_counter()
        try:  # from here on, a disk that is full or read-only fails this cell only
            claim = distributed.from_main(lambda: self._claim(cell, digest, lock))
            if claim != "run":
                return CellOutcome(key, claim, "another process is running this cell" if claim == "locked" else "")
            if distributed.is_main():
                if damage := cell.damage():
                    cell.set_aside()
                    self.log(f"  damaged, kept aside as *.corrupt and run again: {damage}")
                if self.run_config.options.force:
                    cell.discard_training_state()
                cell.start(config)
            if reads_teacher(key, method) and (failure := self.teacher_failure(key.task, key.pair)):
                raise TeacherPrepError(f"teacher preparation failed: {failure}")
            wall = CellRecipe(ctx, cell, method, self.teachers, self.cell_options, digest).run()
            return CellOutcome(key, "done", wall_time_s=wall)
        except KeyboardInterrupt:
            raise
        except Exception as error:  # a failing cell is recorded and the grid goes on
            reason = cell.record_failure(error) if distributed.is_main() else str(error)
            if self.run_config.options.exit_on_error or distributed.processes() > 1:
                raise
            # A full or read-only disk's reason says all, and a failed teacher's is in its record; a bug needs its
            # traceback.
            if disk_error_hint(error) is None and not isinstance(error, TeacherPrepError):
                self.log(traceback.format_exc(limit=3).rstrip())
            return CellOutcome(key, "failed", reason, time.perf_counter() - started)
        finally:
            lock.release()

    def _claim(self, cell: Cell, digest: str, lock: CellLock) -> str:
        """``run`` when this process took the cell's lock and the cell needs running; else ``cached`` (finished
        with this config) or ``locked`` (another process holds it)."""
        if self._reusable(cell, digest):
            return "cached"
        if not lock.acquire():
            return "locked"
        if self._reusable(cell, digest):  # another process finished it between the check and the lock
            lock.release()
            return "cached"
        return "run"

    def stored_outcomes(self) -> list[CellOutcome]:
        """Every cell's outcome as the result store holds it, e.g. after worker processes ran the grid."""
        pairs, _ = self.reachable_pairs()
        outcomes = []
        for key in self.cells(pairs):
            cell = self.store.cell(key)
            if self._is_done(key):
                outcomes.append(CellOutcome(key, "done"))
            elif cell.has_failed():
                outcomes.append(CellOutcome(key, "failed", cell.failure_reason()))
            else:
                outcomes.append(CellOutcome(key, "missing", "no worker finished this cell"))
        return outcomes

    # -- helpers -------------------------------------------------------------------------------------------------
    def _state(self, key: CellKey) -> str:
        """The cell's state as a dry run prints it: done, todo, or damaged with the reason."""
        if self._is_done(key):
            return f"done  {key}"
        damage = self.store.cell(key).damage()
        return f"damaged {key}: {damage}" if damage else f"todo  {key}"

    def _is_done(self, key: CellKey) -> bool:
        return self.store.cell(key).is_done(self._digest(key))

    def _digest(self, key: CellKey) -> str:
        return config_hash(self.context(key.task, key.pair).cell_config(key, self.method(key)))

    def _reusable(self, cell: Cell, digest: str) -> bool:
        """Finished with this config, and not to be forced: ``--force`` re-runs cells finished before this run
        began, not those a concurrent worker finished since."""
        if not cell.is_done(digest):
            return False
        return not self.run_config.options.force or (cell.done_time() or 0.0) >= self.started

    def _note_older_cells(self) -> None:
        older = self.store.older_format_cells()
        if older:
            self.log(f"{len(older)} finished cells in {self.store.root} were written by an older store format; "
                     "`leaderboard` still reads them, but this run cannot match their configs and re-runs them "
                     "(pass --output to keep them apart)")


def _silent(message: str) -> None:
    """The log of a process that is not the main one of its launch."""


def summarize(outcomes: list[CellOutcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    lines = [", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no cells"]
    lines += [f"  {o.status} {o.key}: {o.reason}" for o in outcomes if o.status in FAILED_STATUSES]
    return "\n".join(lines)
