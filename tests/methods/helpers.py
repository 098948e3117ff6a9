"""Small synthetic batches for method tests: two tokenizations of the same answers, logits, teacher outputs.

Answers are given as token strings per side (``[["He", "llo"], ...]``); the answer string is their concatenation,
so character offsets follow from the token lengths. Token ids are drawn from a seeded generator unless a side's
``token_ids`` (token string -> id) is given; the losses that read the actual tokens' probabilities need the latter.

Layout of one example (the conventions of :mod:`methods.batch`): ``prompt_len`` prompt tokens, the answer tokens,
optionally an EOS (token string :data:`EOS_TOKEN`), right padding. Answer token ``a`` is predicted by logits row
``prompt_len + a - 1``. ``answer_mask`` is True on text tokens only (never on the EOS or padding). ``extra_rows``
widens the answer and sequence dimensions with padding, to check that what lies behind the masks is never read.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from methods.base import Method
from methods.batch import DistillBatch, TeacherOutputs, TokenView
from methods.spans import ByteAlignedMethod, TokenizerPair
from methods.token_text import VocabInfo

EOS_ID = 0
PAD_ID = 1
EOS_TOKEN = "<eos>"  # the EOS token's string in ``answer_tokens``


def token_view(
    answers: Sequence[Sequence[str]],
    *,
    vocab_size: int,
    eos: bool,
    prompt_lengths: Sequence[int] | None = None,
    extra_rows: int = 0,
    seed: int = 0,
    token_ids: Mapping[str, int] | None = None,
) -> TokenView:
    """One side's :class:`TokenView` of ``answers`` (token strings per example)."""
    generator = torch.Generator().manual_seed(seed)
    prompt_lengths = list(prompt_lengths or [2 + b for b in range(len(answers))])
    answer_lengths = [len(tokens) + int(eos) for tokens in answers]
    width = max(p + n for p, n in zip(prompt_lengths, answer_lengths)) + extra_rows
    answer_width = max(answer_lengths) + extra_rows
    batch = len(answers)

    input_ids = torch.full((batch, width), PAD_ID)
    attention_mask = torch.zeros(batch, width, dtype=torch.long)
    labels = torch.full((batch, width), -100)
    answer_rows = torch.zeros(batch, answer_width, dtype=torch.long)
    answer_ids = torch.full((batch, answer_width), PAD_ID)
    answer_mask = torch.zeros(batch, answer_width, dtype=torch.bool)
    answer_offsets = torch.full((batch, answer_width, 2), -1)
    for b, (tokens, prompt) in enumerate(zip(answers, prompt_lengths)):
        ids = torch.randint(2, vocab_size, (prompt + len(tokens),), generator=generator).tolist()
        if token_ids is not None:
            ids[prompt:] = [token_ids[token] for token in tokens]
        ids += [EOS_ID] * int(eos)
        n = answer_lengths[b]
        input_ids[b, : len(ids)] = torch.tensor(ids)
        attention_mask[b, : len(ids)] = 1
        labels[b, prompt : prompt + n] = input_ids[b, prompt : prompt + n]
        answer_rows[b, :n] = torch.arange(prompt - 1, prompt - 1 + n)
        answer_ids[b, :n] = input_ids[b, prompt : prompt + n]
        answer_mask[b, : len(tokens)] = True
        ends = torch.tensor([len(t) for t in tokens]).cumsum(0)
        answer_offsets[b, : len(tokens)] = torch.stack([ends - torch.tensor([len(t) for t in tokens]), ends], -1)
    return TokenView(
        input_ids, attention_mask, labels, answer_rows, answer_ids, answer_mask, answer_offsets,
        [list(tokens) + [EOS_TOKEN] * int(eos) for tokens in answers],
    )


def make_batch(
    student_tokens: Sequence[Sequence[str]],
    teacher_tokens: Sequence[Sequence[str]],
    *,
    student_vocab: int = 16,
    teacher_vocab: int = 24,
    student_eos: bool = True,
    teacher_eos: bool = False,
    extra_rows: int = 0,
    student_ids: Mapping[str, int] | None = None,
    teacher_ids: Mapping[str, int] | None = None,
) -> DistillBatch:
    """A :class:`DistillBatch` of the two tokenizations (which must spell the same answers)."""
    answers = ["".join(tokens) for tokens in student_tokens]
    if answers != ["".join(tokens) for tokens in teacher_tokens]:
        raise ValueError("student and teacher tokens must spell the same answers")
    student = token_view(student_tokens, vocab_size=student_vocab, eos=student_eos, extra_rows=extra_rows, seed=1,
                         token_ids=student_ids)
    teacher = token_view(
        teacher_tokens, vocab_size=teacher_vocab, eos=teacher_eos, extra_rows=extra_rows, seed=2,
        prompt_lengths=[4 + b for b in range(len(answers))], token_ids=teacher_ids,
    )
    return DistillBatch([f"ex{b}" for b in range(len(answers))], answers, student, teacher)


def place_rows(
    view: TokenView, answer_logits: Tensor, *, garbage: float = 30.0, seed: int = 0, eos_rows: bool = False
) -> Tensor:
    """Full ``[B, L, V]`` logits holding ``answer_logits[b, a]`` at row ``answer_rows[b, a]`` for the masked-in
    tokens (with ``eos_rows``: every labelled answer token, the EOS included) and random values of scale ``garbage``
    everywhere else (prompt, EOS row, padding)."""
    generator = torch.Generator().manual_seed(seed)
    batch, width = view.input_ids.shape
    logits = garbage * torch.randn(batch, width, answer_logits.size(-1), generator=generator, dtype=answer_logits.dtype)
    placed = view.answer_token_mask() if eos_rows else view.answer_mask
    for b in range(batch):
        n = int(placed[b].sum())
        logits[b, view.answer_rows[b, :n]] = answer_logits[b, :n]
    return logits


def answer_logits(view: TokenView, vocab_size: int, *, scale: float = 2.0, seed: int = 0) -> Tensor:
    """Random ``[B, A, V]`` logits for one side's answer tokens."""
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*view.answer_mask.shape, vocab_size, generator=generator)


def teacher_outputs(
    view: TokenView,
    logits: Tensor,
    *,
    cache_k: int | None = None,
    temperatures: Sequence[float] = (2.0,),
    garbage: float = 30.0,
    seed: int = 0,
    eos_rows: bool = False,
    subsets: Mapping[str, Tensor] | None = None,
) -> TeacherOutputs:
    """Teacher outputs at the answer rows: full ``logits`` (live form) or, with ``cache_k``, the cached top-k form
    with the full-vocabulary log-normalisers ``logsumexp(z / tau)`` for ``temperatures`` (besides tau = 1), the
    logit of each row's own answer token, and ``logsumexp(z[S] / tau)`` of the named ``subsets`` (teacher ids).

    Rows behind ``answer_mask`` (with ``eos_rows``: behind every labelled answer token) are overwritten with random
    values of scale ``garbage``.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = garbage * torch.randn(logits.shape, generator=generator, dtype=logits.dtype)
    kept = view.answer_token_mask() if eos_rows else view.answer_mask
    logits = torch.where(kept.unsqueeze(-1), logits, noise)
    if cache_k is None:
        return TeacherOutputs(mask=view.answer_mask, logits=logits, vocab_size=logits.size(-1))
    values, ids = torch.topk(logits, cache_k, dim=-1)
    taus = (1.0, *map(float, temperatures))
    return TeacherOutputs(
        mask=view.answer_mask, topk_logits=values, topk_ids=ids,
        logsumexp=torch.logsumexp(logits.float(), -1), vocab_size=logits.size(-1),
        tempered_logsumexp={tau: torch.logsumexp(logits.float() / tau, -1) for tau in taus[1:]},
        token_logits=logits.float().gather(-1, view.answer_ids[:, : logits.size(1), None]).squeeze(-1),
        subset_logsumexp={(name, tau): torch.logsumexp(logits.float()[..., subset] / tau, -1)
                          for name, subset in (subsets or {}).items() for tau in taus},
    )


def widen(logits: Tensor, rows: int, *, garbage: float = 30.0, seed: int = 5) -> Tensor:
    """Append ``rows`` random rows to the answer dimension of ``[B, A, V]`` logits (padding behind the mask)."""
    generator = torch.Generator().manual_seed(seed)
    extra = garbage * torch.randn(logits.size(0), rows, logits.size(-1), generator=generator, dtype=logits.dtype)
    return torch.cat([logits, extra], dim=1)


def run_loss(
    method: Method,
    batch: DistillBatch,
    student_answer: Tensor,
    teacher_answer: Tensor,
    *,
    cache_k: int | None = None,
    temperatures: Sequence[float] = (2.0,),
    ce: float = 2.0,
    eos_rows: bool = False,
    subsets: Mapping[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """``method.loss`` on answer-row logits placed into full logits; returns the terms and the student logits
    leaf (``requires_grad``), so a test can back-propagate and inspect ``.grad``. ``eos_rows``: the given rows
    include the row predicting each side's EOS (otherwise that row is random)."""
    student = place_rows(batch.student, student_answer, eos_rows=eos_rows).requires_grad_()
    teacher = teacher_outputs(batch.teacher, teacher_answer, cache_k=cache_k, temperatures=temperatures,
                              eos_rows=eos_rows, subsets=subsets)
    return method.loss(batch, student, teacher, torch.tensor(ce)), student


def eos_vocab(tokens: Sequence[str]) -> VocabInfo:
    """A plain vocabulary (token strings are their text) whose id 0 is the EOS (:data:`EOS_TOKEN`)."""
    return VocabInfo({t: i for i, t in enumerate([EOS_TOKEN, *tokens])}, byte_level=False,
                     special_ids=frozenset({EOS_ID}), roles={"eos_token": EOS_ID})


def prepared(method: ByteAlignedMethod, student: VocabInfo, teacher: VocabInfo) -> ByteAlignedMethod:
    """``method`` prepared for a pair of hand-made vocabularies."""
    method.prepare_pair(TokenizerPair(student, teacher))
    return method


def logits_of(probabilities: Sequence[Sequence[float]]) -> Tensor:
    """``[1, A, V]`` logits whose softmax rows are the given probabilities."""
    return torch.tensor([probabilities]).log()
