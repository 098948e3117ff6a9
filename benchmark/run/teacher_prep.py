"""Preparing a fine-tuned teacher (``teacher_prep sft``): a step of the grid with its own record, run once per task
and pair before the first cell that reads the teacher; every method and seed then reuses it.

Its directory is the one :func:`benchmark.run.context.resolve_teacher_spec` names, ``<cache_dir>/teachers/<digest of
its key>/``, laid out like a cell:

    config.json      {"hash": <sha256 of the key>, "config": <the key>}, written when a preparation starts
    train_log.jsonl  the teacher's training log; ``checkpoint/`` until DONE (a crash resumes from it)
    model/           the fine-tuned model and tokenizer
    run.json         provenance as a cell's: the machine, wall and CPU seconds, the training's stats
    DONE             written last; a teacher with DONE is reused (one built before this record existed too)
    FAILED.json      why the last preparation failed: the cells reading this teacher fail with that reason and the
                     rest of the grid goes on; the next run tries again (resuming from the checkpoint)

One process prepares: under a multi-process launch the main process (the others wait, then read its DONE or its
failure), across ``--executor gpus`` workers the one holding the directory's build lock (the others wait for it,
then reuse its DONE, or its failure when it happened during this run).
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from benchmark.core.build_lock import build_lock
from benchmark.core.files import read_json, write_atomic, write_json
from benchmark.engine import distributed
from benchmark.engine.collate import PairCollator
from benchmark.engine.harness import TrainStats, train
from benchmark.engine.precision import precision
from benchmark.models.loading import load_model
from benchmark.run.context import TaskPairContext, sft_teacher_dir, sft_teacher_key
from benchmark.run.provenance import environment_info
from benchmark.store import TEACHER, CellKey, config_hash, failure_reason
from methods.base import Method
from methods.baselines import SFT


class TeacherPrepError(RuntimeError):
    """The teacher a cell reads could not be prepared; the message holds the reason."""


def reads_teacher(key: CellKey, method: Method | None) -> bool:
    """Whether the cell reads the teacher as used (its outputs, answers or weights), so needs it prepared."""
    return key.method == TEACHER or (method is not None and method.teacher_request().needs != "none")


class TeacherPrep:
    """The fine-tuned teacher of one task and pair: its directory, its record, and the training that builds it."""

    def __init__(self, ctx: TaskPairContext) -> None:
        self.ctx = ctx
        self.key = sft_teacher_key(ctx.pair, ctx.task.name, ctx.data_fingerprint, ctx.teacher_format, ctx.settings)
        self.dir = sft_teacher_dir(self.key, ctx.cache_dir)
        self.done, self.failed = self.dir / "DONE", self.dir / "FAILED.json"

    def failure(self, since: float) -> str | None:
        """The reason recorded by a preparation that failed at or after ``since``, else None."""
        if not self.failed.exists():
            return None
        record = read_json(self.failed, TeacherPrepError)
        return record["error"] if record.get("failed_at", 0.0) >= since else None

    def build(self) -> str | None:
        """Fine-tune the teacher and write its record, DONE last; returns None, or the failure's reason (recorded)."""
        started, cpu = time.perf_counter(), time.process_time()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.failed.unlink(missing_ok=True)
        write_json(self.dir / "config.json", {"hash": config_hash(self.key), "config": self.key})
        try:
            stats = fine_tune(self.ctx, self.dir)
        except Exception as error:  # recorded; the cells reading this teacher fail with it, the grid goes on
            reason = failure_reason(error)
            write_json(self.failed, {"error": reason, "failed_at": time.time(),
                                     "traceback": "".join(traceback.format_exception(error))})
            return reason
        write_json(self.dir / "run.json", {
            **environment_info(), "train": asdict(stats), "n_train": len(self.ctx.train_set()),
            "wall_time_s": time.perf_counter() - started, "cpu_time_s": time.process_time() - cpu,
            "train_log": "train_log.jsonl", "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        write_atomic(self.done, "")
        shutil.rmtree(self.dir / "checkpoint", ignore_errors=True)  # only now, as a cell: DONE marks the model whole
        return None


def fine_tune(ctx: TaskPairContext, directory: Path) -> TrainStats:
    """Train the pair's teacher with SFT on the task's training subset (seed 0) into ``directory/model``."""
    model, tokenizer = load_model(ctx.pair.teacher, cache_dir=ctx.cache_dir, device=precision().device)
    stats = train(model, SFT(), ctx.train_set(), PairCollator(ctx.encoder(tokenizer, ctx.teacher_format), None),
                  ctx.settings.train, 0, directory / "checkpoint", directory / "train_log.jsonl",
                  data_parallel=False)  # one process fine-tunes; the others wait for it
    model.save_pretrained(directory / "model")
    tokenizer.save_pretrained(directory / "model")
    return stats


def prepare_teacher(ctx: TaskPairContext, since: float, log: Callable[[str], None] = print) -> str | None:
    """Make the context's fine-tuned teacher ready (nothing to do unless ``teacher_prep`` is ``sft``); returns None,
    or why it cannot be: its preparation failed now, or during this run (started at ``since``) in another process."""
    if ctx.settings.teacher.teacher_prep != "sft":
        return None
    prep = TeacherPrep(ctx)
    with distributed.main_first():  # never raises inside: the others of a launch would wait for the main forever
        reason = _ready(prep, since, log)
    return reason


def _ready(prep: TeacherPrep, since: float, log: Callable[[str], None]) -> str | None:
    name = f"{prep.ctx.pair.teacher.name} fine-tuned on {prep.ctx.task.name}"
    try:
        if prep.done.exists():
            log(f"  teacher {name}: reused ({prep.dir})")
            return None
        if not distributed.is_main():  # the main process of this launch prepared it just now, or failed to
            return prep.failure(0.0) or "the main process did not prepare the teacher"
        with build_lock(prep.dir):  # one worker prepares; the others wait, then find its DONE or its failure
            if prep.done.exists():
                log(f"  teacher {name}: prepared by another worker ({prep.dir})")
                return None
            if reason := prep.failure(since):
                return reason
            log(f"  preparing teacher {name} (record in {prep.dir})")
            started = time.perf_counter()
            reason = prep.build()
            log(f"  teacher {name}: " + (f"FAILED: {reason}" if reason else
                                         f"prepared in {time.perf_counter() - started:.0f} s"))
            return reason
    except Exception as error:  # an unreadable record or a lock that cannot be made: this teacher fails, not the run
        return failure_reason(error)

