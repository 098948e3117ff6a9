"""One cell, top to bottom: prepare the teacher signal, train, evaluate, record.

A cell is a task × pair × method × seed. The two reference cells of each task and pair (``teacher``, and
``untrained``: the student before training) only evaluate. Every other cell trains a fresh student with one method
and evaluates it. Everything a cell shares with the other cells of its task and pair comes in a
:class:`~benchmark.run.context.TaskPairContext`; the teacher side comes from :class:`~benchmark.run.teacher.Teachers`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from benchmark.engine import distributed
from benchmark.engine.collate import PairCollator
from benchmark.engine.evaluation import EvalResult, evaluate
from benchmark.engine.harness import TeacherSource, TrainStats, train
from benchmark.engine.memory import PeakMemory
from benchmark.engine.prompting import PromptFormat
from benchmark.export.student import write_model_card
from benchmark.models.loading import load_model, load_tokenizer
from benchmark.models.pair_cache import CachedPairResources
from benchmark.run.context import TaskPairContext
from benchmark.run.provenance import environment_info
from benchmark.run.teacher import Teachers
from benchmark.store import TEACHER, UNTRAINED, Cell, Store
from methods.base import Method
from tasks.base import Example


@dataclass(frozen=True)
class TeacherSide:
    """What a method trains on besides the student: both tokenized views, the examples with their targets, and the
    teacher signal (None, a cache or a live teacher)."""

    teacher_tokenizer: Any
    collator: PairCollator
    examples: list[Example]
    answers: list[str]
    teacher: TeacherSource | None


@dataclass(frozen=True)
class TrainingSetup:
    """What training a cell's student takes: the student and its tokenizer, and its teacher side."""

    student: Any
    student_tokenizer: Any
    side: TeacherSide


def teacher_side(ctx: TaskPairContext, method: Method, teachers: Teachers, student_tokenizer: Any) -> TeacherSide:
    """The teacher side of a cell training ``method``: the teacher's answers (SeqKD) and top-k cache are built here
    on first use, so ``run_bench.py cache-teacher`` builds them through this same function."""
    teacher_tokenizer = teachers.tokenizer(ctx)
    collator = PairCollator(ctx.encoder(student_tokenizer, ctx.student_format),
                            ctx.encoder(teacher_tokenizer, ctx.teacher_format))
    examples = ctx.train_set()
    answers = [e.answer for e in examples]
    # SeqKD: the teacher's answers, empty generations dropped (ULD ``process.py``)
    if method.teacher_request().needs == "text":
        generated = teachers.answers(ctx, examples)
        kept = [i for i, answer in enumerate(generated) if answer.strip()]
        examples, answers = [examples[i] for i in kept], [generated[i] for i in kept]
    signal = teachers.signal(method, ctx, collator, examples, answers)
    return TeacherSide(teacher_tokenizer, collator, examples, answers, signal)


@dataclass(frozen=True)
class CellOptions:
    """How a run treats its cells beyond their config (never part of a cell's hash)."""

    budget: str  # the budget preset the settings started from, recorded in run.json
    save_students: bool = False
    log_with: str = "none"  # "tensorboard": the harness also logs through accelerate's tracker into the cell
    data_sha256: dict[str, str] = field(default_factory=dict)  # verified data files: path -> sha256, for run.json


class CellRecipe:
    """Runs one cell and writes its results into its store directory."""

    def __init__(self, ctx: TaskPairContext, cell: Cell, method: Method | None, teachers: Teachers,
                 options: CellOptions, config_hash: str) -> None:
        self.ctx, self.cell, self.method, self.teachers = ctx, cell, method, teachers
        self.options, self.config_hash = options, config_hash
        self.key = cell.key

    def run(self) -> float:
        """Run the cell to its ``DONE`` marker; returns its wall time in seconds."""
        started, cpu_started, memory = time.perf_counter(), time.process_time(), PeakMemory()
        # Under a multi-process launch the main process loads (and builds every cache) first: the others find it all.
        if self.key.method == TEACHER:
            with distributed.main_first():
                teacher = self.teachers.model(self.ctx)
            result, facts = self.evaluate(*teacher, self.ctx.teacher_format), {}
        elif self.key.method == UNTRAINED:
            with distributed.main_first():
                student = self.fresh_student()
            result, facts = self.evaluate(*student, self.ctx.student_format), {}
        else:
            with distributed.main_first():
                setup = self.setup_training()  # 1. the student and the teacher signal
            stats = self.train(setup)  # 2. training
            result = self.evaluate(setup.student, setup.student_tokenizer, self.ctx.student_format)  # 3. evaluation
            facts = {"train": asdict(stats), "n_train": len(setup.side.examples), "tokens_per_s": stats.tokens_per_s}
        wall = time.perf_counter() - started
        # CPU seconds of this process, every thread: the cost that compares across machines of one CPU model.
        facts["cpu_time_s"] = time.process_time() - cpu_started
        if distributed.is_main():  # 4. only the main process writes
            # The example browser's questions and contexts, once per task (before DONE: a finished cell is whole).
            Store(self.cell.root).record_inputs(self.ctx.task.name, [
                {"id": e.id, "question": e.question, "context": e.context} for e in self.ctx.test_set()])
            self.cell.finish(result.metrics, result.predictions, self._run_info(result, facts, wall, memory))
            self.cell.remove_checkpoint()  # only now: a crash before DONE resumes from the final checkpoint
            if self.options.save_students and self.method is not None:
                # The card is read from the finished cell's files (`run_bench.py export-student` rewrites it any time).
                write_model_card(self.cell.dir, self.cell.student_dir)
        return wall

    # -- the steps -----------------------------------------------------------------------------------------------
    def fresh_student(self) -> tuple[Any, Any]:
        """The student model and tokenizer before training (its initial weights seeded by the cell's seed)."""
        torch.manual_seed(self.key.seed)
        return load_model(self.ctx.pair.student, cache_dir=self.ctx.cache_dir)

    def setup_training(self) -> TrainingSetup:
        """A fresh student, both views of the training examples, their targets and the teacher signal the method
        declares it needs (the top-k cache is built here on first use)."""
        ctx, method = self.ctx, self.method
        assert method is not None, "reference cells do not train"
        student, student_tokenizer = self.fresh_student()
        if method.same_tokenizer_only and not ctx.pair.same_tokenizer:
            raise ValueError(f"method {method.name!r} needs a pair sharing one tokenizer; {ctx.pair.name!r} does not")
        side = teacher_side(ctx, method, self.teachers, student_tokenizer)
        method.prepare(CachedPairResources(student_tokenizer, side.teacher_tokenizer, ctx.cache_dir))
        return TrainingSetup(student, student_tokenizer, side)

    def train(self, setup: TrainingSetup) -> TrainStats:
        """Train the setup's student in place (resuming from the cell's checkpoint); saved into the cell with
        ``--save-students``."""
        assert self.method is not None
        side = setup.side
        stats = train(setup.student, self.method, side.examples, side.collator, self.ctx.settings.train,
                      self.key.seed, self.cell.checkpoint_dir, self.cell.train_log, side.teacher, side.answers,
                      log_with=self.options.log_with)
        if self.options.save_students and distributed.is_main():
            setup.student.save_pretrained(self.cell.student_dir)
            setup.student_tokenizer.save_pretrained(self.cell.student_dir)
        return stats

    def evaluate(self, model: Any, tokenizer: Any, fmt: PromptFormat) -> EvalResult:
        """Greedy generation on the evaluation subset, scored with the task's metric."""
        return evaluate(model, self.ctx.encoder(tokenizer, fmt), self.ctx.test_set(), self.ctx.max_new_tokens,
                        self.ctx.settings.eval.eval_batch_size, desc=f"eval {self.key.method}")

    # -- what run.json records -----------------------------------------------------------------------------------
    def _tokenizers(self) -> tuple[Any, Any]:
        return load_tokenizer(self.ctx.pair.student, cache_dir=self.ctx.cache_dir), self.teachers.tokenizer(self.ctx)

    def _run_info(self, result: EvalResult, facts: dict[str, Any], wall: float, memory: PeakMemory) -> dict[str, Any]:
        return {
            **environment_info(), **facts,
            "config_hash": self.config_hash, "budget": self.options.budget,
            "data_sha256": {path: sha for path, sha in self.options.data_sha256.items()
                            if path.startswith(f"{self.ctx.task.data_subdir}/")},
            "settings": self.ctx.settings.to_dict(), "seed": self.key.seed,
            "student_prompt": self.ctx.student_format.key(), "teacher_prompt": self.ctx.teacher_format.key(),
            "wall_time_s": wall, **memory.read(), "eval": result.stats, "processes": distributed.processes(),
            "overlap": self.ctx.overlap(self._tokenizers),
            "prompt_protocol": self.ctx.prompt_protocol(self._tokenizers),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

