"""One batch, two views: the same prompt/answer strings tokenized for the student and for the teacher.

Each model gets its own prompt rendering (style and shots); the answer string is shared, so character offsets of
answer tokens are comparable across the two views. There is one dataloader, never two zipped ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from benchmark.engine.prompting import PromptFormat, RenderedPrompt, build_prompt
from methods.batch import DistillBatch, TokenView
from tasks.base import Example, Task


@dataclass(frozen=True)
class EncodedView:
    """One example in one tokenizer: prompt ids, answer ids (+EOS) and the answer tokens' character spans."""

    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    answer_offsets: tuple[tuple[int, int], ...]  # inside the bare answer string; (-1, -1) for EOS / bare prefix
    answer_tokens: tuple[str, ...]

    @property
    def answer_text_mask(self) -> tuple[bool, ...]:
        return tuple(start >= 0 for start, _ in self.answer_offsets)


class ViewEncoder:
    """Encodes examples of one task for one model (its tokenizer and prompt format)."""

    def __init__(
        self,
        task: Task,
        tokenizer: Any,
        fmt: PromptFormat,
        shot_pool: Sequence[Example],
        max_answer_tokens: int,
    ) -> None:
        self.task, self.tokenizer, self.fmt = task, tokenizer, fmt
        self.max_answer_tokens = max_answer_tokens
        # One extra shot so a training example never serves as its own shot.
        pool_shots = task.select_shots(shot_pool, min(fmt.shots + 1, len(shot_pool)), fmt.shot_seed) if fmt.shots else []
        self._shot_candidates = pool_shots

    def shots_for(self, example: Example) -> list[Example]:
        return [s for s in self._shot_candidates if s.id != example.id][: self.fmt.shots]

    def render(self, example: Example) -> RenderedPrompt:
        """The prompt within the token budget, with how many shots survived and whether the context was cut."""
        return build_prompt(self.task, example, self.shots_for(example), self.fmt, self.tokenizer)

    def prompt_text(self, example: Example) -> str:
        return self.render(example).text

    def encode(self, example: Example, answer: str | None = None, complete: bool = True) -> EncodedView:
        """Encode ``example`` with ``answer`` as target (default: the example's reference answer), ended by EOS
        unless the answer is cut by ``max_answer_tokens`` or not ``complete`` (a sample that hit its length limit)."""
        answer = example.answer if answer is None else answer
        rendered = self.render(example)
        prompt_ids = self.tokenizer(rendered.text, add_special_tokens=True)["input_ids"]
        full_answer = rendered.answer_prefix + answer
        encoded = self.tokenizer(full_answer, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])[: self.max_answer_tokens]
        shift = len(rendered.answer_prefix)
        offsets = [_bare_span(start - shift, end - shift, len(answer)) for start, end in encoded["offset_mapping"][: len(ids)]]
        eos = self.tokenizer.eos_token_id
        if eos is not None and complete and len(encoded["input_ids"]) <= self.max_answer_tokens:
            ids.append(eos)
            offsets.append((-1, -1))
        return EncodedView(
            prompt_ids=tuple(prompt_ids),
            answer_ids=tuple(ids),
            answer_offsets=tuple(offsets),
            answer_tokens=tuple(self.tokenizer.convert_ids_to_tokens(ids)),
        )


def _bare_span(start: int, end: int, length: int) -> tuple[int, int]:
    """Clip a span to the bare answer (without its prefix); a span left empty carries no answer text."""
    start, end = max(start, 0), min(end, length)
    return (start, end) if end > start else (-1, -1)


def stack_views(views: Sequence[EncodedView], pad_id: int) -> TokenView:
    """Right-pad encoded examples into one :class:`TokenView`."""
    lengths = [len(v.prompt_ids) + len(v.answer_ids) for v in views]
    batch, width = len(views), max(lengths)
    answer_width = max(len(v.answer_ids) for v in views)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    labels = torch.full((batch, width), -100, dtype=torch.long)
    answer_rows = torch.zeros((batch, answer_width), dtype=torch.long)
    answer_ids = torch.full((batch, answer_width), pad_id, dtype=torch.long)
    answer_mask = torch.zeros((batch, answer_width), dtype=torch.bool)
    answer_offsets = torch.full((batch, answer_width, 2), -1, dtype=torch.long)
    for b, view in enumerate(views):
        n_prompt, n_answer = len(view.prompt_ids), len(view.answer_ids)
        input_ids[b, : lengths[b]] = torch.tensor(view.prompt_ids + view.answer_ids)
        attention_mask[b, : lengths[b]] = 1
        labels[b, n_prompt : lengths[b]] = torch.tensor(view.answer_ids)
        # Row p of the logits predicts token p+1 (methods-spec §0).
        answer_rows[b, :n_answer] = torch.arange(n_prompt - 1, n_prompt - 1 + n_answer)
        answer_ids[b, :n_answer] = torch.tensor(view.answer_ids)
        answer_mask[b, :n_answer] = torch.tensor(view.answer_text_mask)
        answer_offsets[b, :n_answer] = torch.tensor(view.answer_offsets)
    return TokenView(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        answer_rows=answer_rows,
        answer_ids=answer_ids,
        answer_mask=answer_mask,
        answer_offsets=answer_offsets,
        answer_tokens=[list(v.answer_tokens) for v in views],
    )


class PairCollator:
    """Turns a list of examples (with optional replacement answers, e.g. teacher text) into a DistillBatch."""

    def __init__(self, student: ViewEncoder, teacher: ViewEncoder | None) -> None:
        self.student, self.teacher = student, teacher
        self._cache: dict[tuple[str, str, str], EncodedView] = {}

    def _encode(self, side: str, encoder: ViewEncoder, example: Example, answer: str) -> EncodedView:
        key = (side, example.id, answer)
        if key not in self._cache:
            self._cache[key] = encoder.encode(example, answer)
        return self._cache[key]

    def _views(self, side: str, encoder: ViewEncoder, examples: Sequence[Example], answers: Sequence[str],
               complete: Sequence[bool] | None) -> list[EncodedView]:
        if complete is None:
            return [self._encode(side, encoder, e, a) for e, a in zip(examples, answers)]
        return [encoder.encode(e, a, done) for e, a, done in zip(examples, answers, complete)]

    def __call__(self, examples: Sequence[Example], answers: Sequence[str] | None = None,
                 complete: Sequence[bool] | None = None) -> DistillBatch:
        """The batch of ``examples`` with ``answers`` as targets. Answers given with ``complete`` flags are the
        student's own samples (on-policy): encoded afresh, never cached (each is seen once), and ended by EOS only
        where the student ended them."""
        answers = [e.answer for e in examples] if answers is None else list(answers)
        student = stack_views(self._views("s", self.student, examples, answers, complete),
                              _pad_id(self.student.tokenizer))
        if self.teacher is not None:
            teacher = stack_views(self._views("t", self.teacher, examples, answers, complete),
                                  _pad_id(self.teacher.tokenizer))
        else:
            teacher = student  # no teacher view needed (e.g. SFT); methods that need one declare it
        return DistillBatch(ids=[e.id for e in examples], answers=answers, student=student, teacher=teacher)


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return 0 if pad is None else int(pad)
