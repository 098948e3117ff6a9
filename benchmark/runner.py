"""The grid runner: cells task × pair × method × seed, skip what is done, record what fails, go on.

Per task and pair there are two reference cells, ``teacher`` and ``untrained`` (the student before training),
stored as seed 0 (greedy decoding makes them seed-independent). Every other cell trains a fresh student with
one method and evaluates it. A cell holding ``DONE`` with the same config hash is skipped; a cell that fails
(exception, non-finite loss, out of memory) gets ``FAILED.json`` and the grid goes on.
"""
from __future__ import annotations

import os
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from benchmark.budgets import Budget
from benchmark.collate import PairCollator, ViewEncoder
from benchmark.evaluation import EvalResult, evaluate
from benchmark.executors import RUN_STARTED_ENV
from benchmark.harness import Checkpoint, LiveTeacher, TrainConfig, train
from benchmark.models import ModelSpec, load_model, load_tokenizer
from benchmark.pairs import PAIRS, Pair, pair_status
from benchmark.prompting import PromptFormat
from benchmark.results import (
    CellKey, CellLock, config_hash, environment_info, failure_reason, finish_cell, is_done, PeakMemory, read_json,
    record_failure, start_cell, write_atomic, write_json,
)
from benchmark.teacher_cache import cache_digest, ensure_topk_cache, teacher_answers, tokenizer_hash
from methods.base import Method
from methods.baselines import SFT
from methods.registry import METHODS
from tasks.base import Example, Task
from tasks.registry import TASKS, data_fingerprint

REFERENCE_METHODS = ("teacher", "untrained")
FAILED_STATUSES = ("failed", "missing")  # outcomes that make the run exit with status 1
SUBSET_SEED = 1234  # fixed: every method and seed sees the same train/eval subsets


@dataclass
class RunSettings:
    tasks: list[str]
    pairs: list[str]
    methods: list[str]
    seeds: list[int]
    budget_name: str
    budget: Budget
    output: Path
    data_dir: Path
    cache_dir: Path
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    exit_on_error: bool = False
    force: bool = False
    save_students: bool = False
    include_references: bool = True


@dataclass
class CellOutcome:
    key: CellKey
    status: str  # "done", "cached", "failed", "locked"; "missing" when no worker finished the cell
    reason: str = ""
    wall_time_s: float = 0.0


def subset(examples: list[Example], limit: int | None) -> list[Example]:
    """The first ``limit`` examples of a fixed-seed shuffle (all of them, in file order, when unlimited)."""
    if limit is None or limit >= len(examples):
        return examples
    order = list(range(len(examples)))
    random.Random(SUBSET_SEED).shuffle(order)
    return [examples[i] for i in sorted(order[:limit])]


class GridRunner:
    def __init__(self, settings: RunSettings, log: Callable[[str], None] = print) -> None:
        self.s, self.log = settings, log
        self.started = float(os.environ.get(RUN_STARTED_ENV) or time.time())
        self._tasks: dict[str, Task] = {}
        self._teacher: tuple[str, Any, Any] | None = None  # (pair name, model, tokenizer), reused across cells

    # -- the grid ---------------------------------------------------------------------------------------------
    def reachable_pairs(self) -> tuple[list[str], dict[str, str]]:
        """Requested pairs that can run here, and the reason for each that cannot."""
        runnable, skipped = [], {}
        for name in self.s.pairs:
            reason = pair_status(PAIRS.get(name), self.s.cache_dir)
            if reason:
                skipped[name] = reason
            else:
                runnable.append(name)
        return runnable, skipped

    def cells(self, pairs: list[str]) -> list[CellKey]:
        keys = []
        for task in self.s.tasks:
            for pair in pairs:
                if self.s.include_references:
                    keys += [CellKey(task, pair, ref, 0) for ref in REFERENCE_METHODS]
                keys += [CellKey(task, pair, method, seed) for method in self.s.methods for seed in self.s.seeds]
        return keys

    def run(self, dry_run: bool = False) -> list[CellOutcome]:
        pairs, skipped = self.reachable_pairs()
        self._record_skipped(skipped)
        for name, reason in skipped.items():
            self.log(f"skipped pair {name}: {reason}")
        keys = self.cells(pairs)
        if dry_run:
            for key in keys:
                state = "done" if is_done(key.path(self.s.output), config_hash(self.cell_config(key))) else "todo"
                self.log(f"{state:5s} {key}")
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

    def stored_outcomes(self) -> list[CellOutcome]:
        """Every cell's outcome as the result store holds it, e.g. after worker processes ran the grid."""
        pairs, _ = self.reachable_pairs()
        outcomes = []
        for key in self.cells(pairs):
            cell_dir = key.path(self.s.output)
            if is_done(cell_dir, config_hash(self.cell_config(key))):
                outcomes.append(CellOutcome(key, "done"))
            elif (cell_dir / "FAILED.json").exists():
                outcomes.append(CellOutcome(key, "failed", failure_reason(cell_dir)))
            else:
                outcomes.append(CellOutcome(key, "missing", "no worker finished this cell"))
        return outcomes

    def _record_skipped(self, skipped: dict[str, str]) -> None:
        path = self.s.output / "skipped_pairs.json"
        known = {row["pair"]: row["reason"] for row in read_json(path)} if path.exists() else {}
        known = {k: v for k, v in known.items() if k not in self.s.pairs} | skipped
        self.s.output.mkdir(parents=True, exist_ok=True)
        write_json(path, [{"pair": k, "reason": v} for k, v in sorted(known.items())])

    # -- one cell ---------------------------------------------------------------------------------------------
    def task(self, name: str) -> Task:
        if name not in self._tasks:
            self._tasks[name] = TASKS.get(name)(self.s.data_dir)
        return self._tasks[name]

    def formats(self, task: Task, pair: Pair) -> tuple[PromptFormat, PromptFormat]:
        b = self.s.budget
        teacher_shots = 0 if b.teacher_prep == "as-is" else (task.default_shots if b.teacher_shots is None else b.teacher_shots)
        student = PromptFormat(pair.student.prompt_style, b.student_shots, max_prompt_tokens=b.max_prompt_tokens)
        teacher = PromptFormat(pair.teacher.prompt_style, teacher_shots, max_prompt_tokens=b.max_prompt_tokens)
        return student, teacher

    def method(self, name: str) -> Method:
        cls = METHODS.get(name)
        return cls(cls.config_class.from_dict(self.s.method_overrides.get(name, {})))

    def train_config(self) -> TrainConfig:
        b = self.s.budget
        return TrainConfig(
            epochs=b.epochs, learning_rate=b.learning_rate, batch_size=b.batch_size, grad_accum=b.grad_accum,
            schedule=b.schedule, checkpoint_every=b.checkpoint_every,  # type: ignore[arg-type]
            teacher_bf16=torch.cuda.is_available(),
        )

    def cell_config(self, key: CellKey) -> dict[str, Any]:
        """Everything that determines a cell's numbers; its hash decides whether a finished cell is reused."""
        task, pair = self.task(key.task), PAIRS.get(key.pair)
        student_fmt, teacher_fmt = self.formats(task, pair)
        b = self.s.budget
        config: dict[str, Any] = {
            "task": key.task, "pair": key.pair, "method": key.method, "seed": key.seed,
            "role": "teacher" if key.method == "teacher" else "student",
            "headline_metric": task.metric, "data": data_fingerprint(task),
            "limit_eval": b.limit_eval, "max_new_tokens": b.max_new_tokens or task.max_new_tokens,
            "eval_prompt": (teacher_fmt if key.method == "teacher" else student_fmt).key(),
            "model": (self.teacher_spec(task, pair) if key.method == "teacher" else pair.student).fingerprint(),
        }
        if key.method in REFERENCE_METHODS:
            return config
        method = self.method(key.method)
        config.update({
            "method_config": method.config.to_dict(), "teacher_needs": method.teacher_needs,
            "train": self.train_config().__dict__, "limit_train": b.limit_train,
            "max_answer_tokens": b.max_answer_tokens, "teacher_prompt": teacher_fmt.key(),
            "teacher_model": self.teacher_spec(task, pair).fingerprint(), "teacher_prep": b.teacher_prep, "topk": b.topk,
        })
        return config

    def run_cell(self, key: CellKey) -> CellOutcome:
        cell_dir = key.path(self.s.output)
        config = self.cell_config(key)
        digest = config_hash(config)
        if self._reusable(cell_dir, digest):
            return CellOutcome(key, "cached")
        lock = CellLock(cell_dir)
        if not lock.acquire():
            return CellOutcome(key, "locked", "another process is running this cell")
        if self._reusable(cell_dir, digest):  # another process finished it between the check and the lock
            lock.release()
            return CellOutcome(key, "cached")
        started, memory = time.perf_counter(), PeakMemory()
        try:
            self._discard_foreign_checkpoint(cell_dir, digest)
            start_cell(cell_dir, config)
            result, extra = self._execute(key, cell_dir)
            wall = time.perf_counter() - started
            run_info = {
                **environment_info(), **extra, "config_hash": digest, "budget": self.s.budget_name,
                "budget_values": self.s.budget.to_dict(), "seed": key.seed, "wall_time_s": wall,
                **memory.read(), "eval": result.stats,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            finish_cell(cell_dir, result.metrics, result.predictions, run_info)
            Checkpoint(cell_dir).remove()
            return CellOutcome(key, "done", wall_time_s=wall)
        except KeyboardInterrupt:
            raise
        except Exception as error:  # a failing cell is recorded and the grid goes on
            reason = record_failure(cell_dir, error)
            if self.s.exit_on_error:
                raise
            self.log(traceback.format_exc(limit=3).rstrip())
            return CellOutcome(key, "failed", reason, time.perf_counter() - started)
        finally:
            lock.release()

    def _reusable(self, cell_dir: Path, digest: str) -> bool:
        """Finished with this config, and not to be forced: ``--force`` re-runs cells finished before this run
        began, not those a concurrent worker finished since."""
        if not is_done(cell_dir, digest):
            return False
        return not self.s.force or (cell_dir / "DONE").stat().st_mtime >= self.started

    def _discard_foreign_checkpoint(self, cell_dir: Path, digest: str) -> None:
        """A checkpoint left by a run with another config must not be resumed."""
        config_file = cell_dir / "config.json"
        if config_file.exists() and read_json(config_file).get("hash") != digest or self.s.force:
            Checkpoint(cell_dir).remove()
            (cell_dir / "train_log.jsonl").unlink(missing_ok=True)

    def _execute(self, key: CellKey, cell_dir: Path) -> tuple[EvalResult, dict[str, Any]]:
        task, pair = self.task(key.task), PAIRS.get(key.pair)
        b = self.s.budget
        student_fmt, teacher_fmt = self.formats(task, pair)
        train_pool = task.load("train")
        test = subset(task.load("test"), b.limit_eval)
        max_new = b.max_new_tokens or task.max_new_tokens
        prompts = {"student_prompt": student_fmt.key(), "teacher_prompt": teacher_fmt.key()}
        if key.method == "teacher":
            model, tokenizer = self.teacher(task, pair)
            encoder = ViewEncoder(task, tokenizer, teacher_fmt, train_pool, b.max_answer_tokens)
            return evaluate(model, encoder, test, max_new, b.eval_batch_size, desc="eval teacher"), prompts
        torch.manual_seed(key.seed)
        student, student_tok = load_model(pair.student, cache_dir=self.s.cache_dir)
        student_enc = ViewEncoder(task, student_tok, student_fmt, train_pool, b.max_answer_tokens)
        if key.method == "untrained":
            return evaluate(student, student_enc, test, max_new, b.eval_batch_size, desc="eval untrained"), prompts
        method = self.method(key.method)
        teacher_tok = self._teacher_tokenizer(task, pair)
        if method.same_tokenizer_only and not pair.same_tokenizer:
            raise ValueError(f"method {method.name!r} needs a pair sharing one tokenizer; {pair.name!r} does not")
        teacher_enc = ViewEncoder(task, teacher_tok, teacher_fmt, train_pool, b.max_answer_tokens)
        train_set = subset(train_pool, b.limit_train)
        answers = [e.answer for e in train_set]
        if method.teacher_needs == "text":
            answers = self._teacher_answers(task, pair, teacher_enc, train_set)
            kept = [i for i, a in enumerate(answers) if a.strip()]  # empty generations are dropped (ULD process.py)
            train_set, answers = [train_set[i] for i in kept], [answers[i] for i in kept]
        collator = PairCollator(student_enc, teacher_enc)
        source = self._teacher_source(method, task, pair, collator, train_set, answers)
        method.prepare(student_tok, teacher_tok, str(self.s.cache_dir))
        stats = train(student, method, train_set, collator, self.train_config(), key.seed, cell_dir, source, answers)
        if self.s.save_students:
            student.save_pretrained(cell_dir / "student")
            student_tok.save_pretrained(cell_dir / "student")
        result = evaluate(student, student_enc, test, max_new, b.eval_batch_size, desc=f"eval {key.method}")
        extra = {**prompts, "train": stats.__dict__, "n_train": len(train_set), "tokens_per_s": stats.tokens_per_s}
        return result, extra

    # -- teacher ----------------------------------------------------------------------------------------------
    def teacher_spec(self, task: Task, pair: Pair) -> ModelSpec:
        """The teacher as used for ``task``: the pair's teacher, or its task-fine-tuned copy (``--teacher-prep sft``)."""
        if self.s.budget.teacher_prep != "sft":
            return pair.teacher
        _, teacher_fmt = self.formats(task, pair)
        key = {"teacher": pair.teacher.fingerprint(), "task": task.name, "data": data_fingerprint(task),
               "train": self.train_config().__dict__, "limit_train": self.s.budget.limit_train,
               "prompt": teacher_fmt.key(), "max_answer_tokens": self.s.budget.max_answer_tokens}
        directory = self.s.cache_dir / "teachers" / cache_digest(key)
        return ModelSpec(f"{pair.teacher.name} (SFT on {task.name})", "local", str(directory / "model"),
                         prompt_style=pair.teacher.prompt_style)

    def teacher(self, task: Task, pair: Pair) -> tuple[Any, Any]:
        """The teacher model and tokenizer, loaded once and kept while cells that use it run."""
        spec = self.teacher_spec(task, pair)
        if self._teacher is None or self._teacher[0] != spec.fingerprint():
            self._teacher = None
            if spec.source == "local" and not (Path(spec.ref).parent / "DONE").exists():
                self._fine_tune_teacher(task, pair, Path(spec.ref).parent)
            on_gpu = torch.cuda.is_available()
            model, tokenizer = load_model(spec, cache_dir=self.s.cache_dir, dtype=torch.bfloat16 if on_gpu else torch.float32,
                                          device="cuda" if on_gpu else "cpu")
            self._teacher = (spec.fingerprint(), model.eval().requires_grad_(False), tokenizer)
        return self._teacher[1], self._teacher[2]

    def _fine_tune_teacher(self, task: Task, pair: Pair, directory: Path) -> None:
        """Teacher preparation ``sft``: train the teacher on the task once; every method and seed reuses it."""
        self.log(f"  fine-tuning teacher {pair.teacher.name} on {task.name} (cached in {directory})")
        model, tokenizer = load_model(pair.teacher, cache_dir=self.s.cache_dir,
                                      device="cuda" if torch.cuda.is_available() else "cpu")
        _, teacher_fmt = self.formats(task, pair)
        train_pool = task.load("train")
        encoder = ViewEncoder(task, tokenizer, teacher_fmt, train_pool, self.s.budget.max_answer_tokens)
        train(model, SFT(), subset(train_pool, self.s.budget.limit_train), PairCollator(encoder, None),
              self.train_config(), 0, directory)
        model.save_pretrained(directory / "model")
        tokenizer.save_pretrained(directory / "model")
        Checkpoint(directory).remove()
        write_atomic(directory / "DONE", "")

    def _teacher_tokenizer(self, task: Task, pair: Pair) -> Any:
        """The teacher's tokenizer without loading its weights (a cached teacher may never need them)."""
        if self._teacher is not None and self._teacher[0] == self.teacher_spec(task, pair).fingerprint():
            return self._teacher[2]
        return load_tokenizer(pair.teacher, cache_dir=self.s.cache_dir)

    def _cache_key(self, task: Task, pair: Pair, teacher_enc: ViewEncoder) -> dict[str, Any]:
        return {
            "teacher": self.teacher_spec(task, pair).fingerprint(), "tokenizer": tokenizer_hash(teacher_enc.tokenizer),
            "task": task.name, "data": data_fingerprint(task), "prompt": teacher_enc.fmt.key(),
            "max_answer_tokens": self.s.budget.max_answer_tokens,
        }

    def _teacher_answers(self, task: Task, pair: Pair, teacher_enc: ViewEncoder, examples: list[Example]) -> list[str]:
        key = {**self._cache_key(task, pair, teacher_enc), "kind": "text", "ids": [e.id for e in examples],
               "max_new_tokens": self.s.budget.max_new_tokens or task.max_new_tokens}

        def load() -> tuple[Any, ViewEncoder]:
            model, tokenizer = self.teacher(task, pair)
            return model, ViewEncoder(task, tokenizer, teacher_enc.fmt, task.load("train"), teacher_enc.max_answer_tokens)

        return teacher_answers(self.s.cache_dir / "teacher", key, load, examples, key["max_new_tokens"], self.s.budget.eval_batch_size)

    def _teacher_source(self, method: Method, task: Task, pair: Pair, collator: PairCollator,
                        examples: list[Example], answers: list[str]) -> Any:
        needs = method.teacher_needs
        if needs in ("none", "text"):
            return None
        live = lambda: LiveTeacher(self.teacher(task, pair)[0], hidden_states=needs == "hidden_states",  # noqa: E731
                                   bf16=self.train_config().teacher_bf16)
        if needs != "topk_logits":
            return live()
        if method.topk_needed > self.s.budget.topk:
            raise ValueError(f"method {method.name!r} needs teacher top-{method.topk_needed} but the cache keeps top-{self.s.budget.topk}; raise --topk")
        key = {**self._cache_key(task, pair, collator.teacher), "k": self.s.budget.topk}  # type: ignore[union-attr]
        return ensure_topk_cache(self.s.cache_dir / "teacher", key, live, collator, examples, answers, self.s.budget.eval_batch_size)


def summarize(outcomes: list[CellOutcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    lines = [", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no cells"]
    lines += [f"  {o.status} {o.key}: {o.reason}" for o in outcomes if o.status in FAILED_STATUSES]
    return "\n".join(lines)
