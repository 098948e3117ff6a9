"""What every cell of one task and pair shares, computed once: prompt formats, the teacher as used, the data
fingerprint, the example subsets, and each cell's config (whose hash decides whether a finished cell is reused)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmark.config import Settings, hashed_fields
from benchmark.core.digest import digest
from benchmark.engine.collate import ViewEncoder
from benchmark.engine.precision import precision
from benchmark.engine.prompting import PromptFormat
from benchmark.models.loading import ModelSpec
from benchmark.models.pair_cache import (
    OVERLAP_ANSWERS,
    cached_text_overlap,
    cached_vocabulary_overlap,
)
from benchmark.models.pairs import Pair
from benchmark.store import TEACHER, CellKey
from methods.base import Method
from methods.token_text import VocabInfo
from tasks.base import Example, Task, subset
from tasks.registry import data_fingerprint


def teacher_shot_count(task: Task, settings: Settings) -> int:
    """Shots in the teacher's prompt: none for an as-is teacher, else the setting or the task's default."""
    if settings.teacher.teacher_prep == "as-is":
        return 0
    shots = settings.prompt.teacher_shots
    return task.default_shots if shots is None else shots


def teacher_key(kind: str, teacher: ModelSpec, task: str, data: str, prompt: PromptFormat, max_answer_tokens: int,
                **extra: Any) -> dict[str, Any]:
    """The key of every cached teacher source: which teacher read which data through which prompt, and what ``kind``
    of output (``topk``, ``text``, ``sft-teacher``) with its own parameters (``extra``)."""
    return {"kind": kind, "teacher": teacher.fingerprint(), "task": task, "data": data, "prompt": prompt.key(),
            "max_answer_tokens": max_answer_tokens, **extra}


def sft_teacher_key(pair: Pair, task: str, data: str, fmt: PromptFormat, settings: Settings) -> dict[str, Any]:
    """The key of the pair's teacher fine-tuned on ``task`` (``teacher_prep sft``): what its training read."""
    return teacher_key("sft-teacher", pair.teacher, task, data, fmt, settings.data.max_answer_tokens,
                       train=hashed_fields(settings.train), limit_train=settings.data.limit_train)


def sft_teacher_dir(key: dict[str, Any], cache_dir: Path) -> Path:
    """``<cache_dir>/teachers/<short digest of key>/``: the fine-tuned teacher's ``model/``, its record and ``DONE``."""
    return Path(cache_dir) / "teachers" / digest(key, short=True)


def resolve_teacher_spec(pair: Pair, task: str, data: str, fmt: PromptFormat, settings: Settings,
                         cache_dir: Path) -> ModelSpec:
    """The teacher as used for ``task``: the pair's teacher, or (``teacher_prep sft``) its copy fine-tuned on the
    task, a local model under ``<cache_dir>/teachers/<key>/`` that the grid prepares before the cells reading it
    (:mod:`benchmark.run.teacher_prep`)."""
    if settings.teacher.teacher_prep != "sft":
        return pair.teacher
    directory = sft_teacher_dir(sft_teacher_key(pair, task, data, fmt, settings), cache_dir)
    return ModelSpec(f"{pair.teacher.name} (SFT on {task})", "local", str(directory / "model"),
                     prompt_style=pair.teacher.prompt_style)


@dataclass(frozen=True)
class TaskPairContext:
    """One task and one pair under one run's settings."""

    task: Task
    pair: Pair
    settings: Settings
    cache_dir: Path
    student_format: PromptFormat
    teacher_format: PromptFormat
    teacher_spec: ModelSpec  # the teacher as used: the pair's, or its task-fine-tuned copy (teacher_prep "sft")
    data_fingerprint: str
    max_new_tokens: int
    _subsets: dict[str, list[Example]] = field(default_factory=dict, compare=False, repr=False)
    _overlap: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    _protocol: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, task: Task, pair: Pair, settings: Settings, cache_dir: Path) -> "TaskPairContext":
        prompt = settings.prompt
        student_format = PromptFormat(pair.student.prompt_style, prompt.student_shots,
                                      max_prompt_tokens=prompt.max_prompt_tokens)
        teacher_format = PromptFormat(pair.teacher.prompt_style, teacher_shot_count(task, settings),
                                      max_prompt_tokens=prompt.max_prompt_tokens)
        fingerprint = data_fingerprint(task)
        return cls(
            task=task, pair=pair, settings=settings, cache_dir=cache_dir,
            student_format=student_format, teacher_format=teacher_format,
            teacher_spec=resolve_teacher_spec(pair, task.name, fingerprint, teacher_format, settings, cache_dir),
            data_fingerprint=fingerprint, max_new_tokens=settings.eval.max_new_tokens or task.max_new_tokens,
        )

    def encoder(self, tokenizer: Any, fmt: PromptFormat) -> ViewEncoder:
        """Encodes this task's examples for one model: its tokenizer and prompt format (shots from the train split)."""
        return ViewEncoder(self.task, tokenizer, fmt, self.train_pool(), self.settings.data.max_answer_tokens)

    # -- examples ------------------------------------------------------------------------------------------------
    def train_pool(self) -> list[Example]:
        """The whole train split: the training subset and the prompts' shots come from it."""
        return self.task.load("train")

    def train_set(self) -> list[Example]:
        return self._subset("train", self.settings.data.limit_train)

    def test_set(self) -> list[Example]:
        return self._subset("test", self.settings.data.limit_eval)

    def _subset(self, split: str, limit: int | None) -> list[Example]:
        if split not in self._subsets:
            self._subsets[split] = subset(self.task.load(split), limit)  # type: ignore[arg-type]
        return self._subsets[split]

    # -- the pair's overlap (methods-spec §19) --------------------------------------------------------------------
    def overlap(self, load_tokenizers: Callable[[], tuple[Any, Any]]) -> dict[str, Any]:
        """What ``run.json`` records as ``overlap``: the pair's vocabulary overlap, and its text overlap on this
        task's training answers (up to :data:`OVERLAP_ANSWERS`, a fixed-seed subset) encoded as the collator encodes
        them; each cached per pair (:mod:`benchmark.models.pair_cache`) and computed once per context from the
        ``(student, teacher)`` tokenizers ``load_tokenizers`` returns (called only then)."""
        if not self._overlap:
            student_tokenizer, teacher_tokenizer = load_tokenizers()
            directory = Path(self.cache_dir) / "pairs"
            vocabulary = cached_vocabulary_overlap(VocabInfo.from_tokenizer(student_tokenizer),
                                                   VocabInfo.from_tokenizer(teacher_tokenizer), directory)
            answers, prefixes = self.overlap_answers(student_tokenizer, teacher_tokenizer)
            text = cached_text_overlap(student_tokenizer, teacher_tokenizer, answers, prefixes, self.task.name,
                                       self.data_fingerprint, directory)
            self._overlap.update(vocabulary=dataclasses.asdict(vocabulary), text=dataclasses.asdict(text))
        return dict(self._overlap)

    def prompt_protocol(self, load_tokenizers: Callable[[], tuple[Any, Any]]) -> dict[str, Any]:
        """What ``run.json`` records as ``prompt_protocol``: each side's prompt style, shots and chat template hash
        (None where its tokenizer has none), from the ``(student, teacher)`` tokenizers (loaded once per context)."""
        if not self._protocol:
            student_tokenizer, teacher_tokenizer = load_tokenizers()
            for role, fmt, tokenizer in (("student", self.student_format, student_tokenizer),
                                         ("teacher", self.teacher_format, teacher_tokenizer)):
                template = getattr(tokenizer, "chat_template", None)
                self._protocol[role] = {"style": fmt.style, "shots": fmt.shots,
                                        "chat_template": digest(template, short=True) if template else None}
        return dict(self._protocol)

    def overlap_answers(self, student_tokenizer: Any, teacher_tokenizer: Any) -> tuple[list[str], tuple[str, str]]:
        """The training answers the text overlap reads, and the ``(student, teacher)`` answer prefixes their prompt
        formats put before an answer."""
        answers = subset(self.train_pool(), OVERLAP_ANSWERS)
        student_prefix, teacher_prefix = (
            self.encoder(tokenizer, fmt).render(answers[0]).answer_prefix
            for tokenizer, fmt in ((student_tokenizer, self.student_format), (teacher_tokenizer, self.teacher_format)))
        return [e.answer for e in answers], (student_prefix, teacher_prefix)

    # -- the cell's config ---------------------------------------------------------------------------------------
    def cell_config(self, key: CellKey, method: Method | None) -> dict[str, Any]:
        """Everything that determines a cell's numbers, from the settings tree and the resolved context, and
        nothing else: a setting enters the hash only where the cell reads it.

        Reference cells (teacher, untrained student) depend only on the evaluation side. A trained cell adds the
        method and the training settings; the teacher (its model, prompt and preparation) only when the method reads
        a teacher, and ``teacher.topk`` only when it reads the top-k cache.
        """
        s = self.settings
        is_teacher = key.method == TEACHER
        config: dict[str, Any] = {
            "cell": {"task": key.task, "pair": key.pair, "method": key.method, "seed": key.seed},
            "role": "teacher" if is_teacher else "student",
            "headline_metric": self.task.metric,
            "higher_is_better": self.task.scorer.higher_is_better,
            "data": self.data_fingerprint,
            "model": (self.teacher_spec if is_teacher else self.pair.student).fingerprint(),
            "eval": {**hashed_fields(s.eval), "max_new_tokens": self.max_new_tokens,
                     "limit_eval": s.data.limit_eval},
            "eval_prompt": (self.teacher_format if is_teacher else self.student_format).key(),
            "precision": precision().name,  # a CPU result is never reused as a GPU one
        }
        if method is None:
            return config
        defaults = type(method.config)().to_dict()
        needs = method.teacher_request().needs
        config |= {
            "method": {"config": method.config.to_dict(), "teacher_needs": needs,
                       "changed": {k: v for k, v in method.config.to_dict().items() if defaults.get(k) != v}},
            "train": hashed_fields(s.train),
            "train_data": hashed_fields(s.data),
        }
        if needs != "none":
            teacher = hashed_fields(s.teacher)
            if needs != "topk_logits":
                del teacher["topk"]
            config["teacher"] = {**teacher, "model": self.teacher_spec.fingerprint(), "prompt": self.teacher_format.key()}
        return config
