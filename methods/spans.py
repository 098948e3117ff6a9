"""Byte spans of two tokenisations of one answer, and the groups they share (methods-spec §8.3, §6.1, §14.1).

One alignment for the alignment-based family (``gold``, ``alm``, ``eta-kl``) and the overlap measure (§19):

1. **Spans.** Each answer token is read as the bytes it writes (:mod:`methods.token_text`: byte-level pieces through
   GPT-2's byte table, SentencePiece ``▁`` as a space and ``<0xNN>`` as byte NN); special tokens write nothing and
   keep their role. The pieces are laid end to end and checked against the answer's UTF-8 bytes: a token's span is
   where its bytes land, never the tokenizer's offsets (wrong for some tokenizers, §8.10). Tokens past the first
   byte that differs from the answer (a normaliser rewrote the text, or the two disagree) get no span; so do the
   tokens cut off by the answer-length limit, which simply never arrive.
2. **The seam.** The collator encodes ``answer_prefix + answer`` (a space after a plain ``Answer:``), and a
   SentencePiece tokenizer prepends a space of its own to text that does not begin with one. Both are whitespace
   the answer does not have, so the seam is the extra leading whitespace of the pieces over the answer. A token
   that writes only seam bytes gets the empty span ``(0, 0)``: it pairs with a seam token of the other side (Qwen2's
   ``Ġ`` before a digit with Llama-2's ``▁``) as a group of no answer bytes, or else joins the first group; a token
   straddling the seam (``Ġ3``) covers answer bytes from 0. Two sides with different seams (one plain prompt, one
   chat) thus still share their first group, as tokenkit equalises leading spaces (§6.1).
3. **Groups.** Walking both span lists by end byte (§8.3), a group closes where both sides have a token boundary:
   the minimal spans whose boundaries are token boundaries on both sides (GOLD's groups, ALM's chunks). Unlike the
   greedy exact-token alignment of KDFlow/DSKDv2 (§16.2), which compares growing strings and never recovers after
   the first character the two tokenizers write differently, this walk re-synchronises at the next shared
   boundary. Special tokens with the same role at the same byte position on both sides (the final EOS of an
   answer that was not cut) form a group of their own; tokens left over when one side runs out form none.

:class:`GroupedBatch` turns the groups of a :class:`~methods.batch.DistillBatch` into tensors for the losses.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from methods.alignment import Alignment, compact
from methods.base import Method
from methods.batch import DistillBatch, TeacherOutputs, TokenView
from methods.resources import PairResources
from methods.token_text import TokenCanonicalizer, VocabInfo

Piece = bytes | str  # the bytes a text token writes, or the role of a special token ("eos_token", ...)
_WHITESPACE = b" \t\n\r"


@dataclass(frozen=True)
class TokenReader:
    """Reads one tokenizer's token strings as :data:`Piece` values."""

    canonicalizer: TokenCanonicalizer
    special_roles: Mapping[str, str]  # special token string -> role

    @classmethod
    def from_vocab(cls, info: VocabInfo) -> "TokenReader":
        return cls(info.canonicalizer(), info.special_roles())

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "TokenReader":
        return cls.from_vocab(VocabInfo.from_tokenizer(tokenizer))

    def read(self, tokens: Sequence[str]) -> list[Piece]:
        return [self.special_roles.get(token) or self.canonicalizer.bytes_of(token) for token in tokens]


@dataclass(frozen=True)
class AnswerSpans:
    """One tokenisation of one answer laid on the answer's bytes."""

    pieces: tuple[Piece, ...]
    spans: tuple[tuple[int, int] | None, ...]  # [start, end) in the answer's bytes; None: no answer bytes of its own
    positions: tuple[int, ...]  # byte position of each token in the answer (where a special token sits)
    answer_length: int  # UTF-8 bytes of the answer
    verified: int  # answer bytes the pieces spell correctly, from the first
    text_tokens: int  # non-special tokens that write answer bytes (the seam excluded), verified or not

    @classmethod
    def lay(cls, pieces: Sequence[Piece], answer: bytes) -> "AnswerSpans":
        text = b"".join(piece for piece in pieces if isinstance(piece, bytes))
        seam = _leading_whitespace(text) - _leading_whitespace(answer)
        verified = _common_prefix(text[seam:], answer) if seam >= 0 else 0
        spans: list[tuple[int, int] | None] = []
        positions: list[int] = []
        end = -seam  # answer coordinates: the seam is negative
        text_tokens = 0
        for piece in pieces:
            positions.append(max(end, 0))
            if isinstance(piece, str):
                spans.append(None)
                continue
            start, end = end, end + len(piece)
            text_tokens += end > 0 and len(piece) > 0
            spans.append((max(start, 0), max(end, 0)) if end <= verified else None)
        return cls(tuple(pieces), tuple(spans), tuple(positions), len(answer), verified, text_tokens)


@dataclass(frozen=True)
class Group:
    """Token positions of both sides covering the same answer bytes ``[start, end)``. ``start == end`` for two seam
    tokens (no answer bytes) and for two special tokens (then with their ``role``)."""

    student: tuple[int, ...]
    teacher: tuple[int, ...]
    start: int
    end: int
    role: str | None = None

    @property
    def one_to_one(self) -> bool:
        return len(self.student) == len(self.teacher) == 1

    @property
    def text_pair(self) -> bool:
        """One token per side, covering answer bytes (what O_T counts, §19)."""
        return self.one_to_one and self.end > self.start


def group_tokens(student: AnswerSpans, teacher: AnswerSpans) -> list[Group]:
    """The groups of two tokenisations of the same answer, in answer order (module docstring, step 3)."""
    s = [i for i, span in enumerate(student.spans) if span is not None]
    t = [k for k, span in enumerate(teacher.spans) if span is not None]
    groups: list[Group] = []
    i = k = s0 = t0 = boundary = 0
    while i < len(s) and k < len(t):
        s_end, t_end = student.spans[s[i]][1], teacher.spans[t[k]][1]  # type: ignore[index]
        if s_end < t_end:
            i += 1
        elif s_end > t_end:
            k += 1
        else:
            groups.append(Group(tuple(s[s0 : i + 1]), tuple(t[t0 : k + 1]), boundary, s_end))
            boundary, i, k = s_end, i + 1, k + 1
            s0, t0 = i, k
    return sorted(groups + _special_groups(student, teacher), key=lambda g: (g.end, g.role is not None))


def _special_groups(student: AnswerSpans, teacher: AnswerSpans) -> list[Group]:
    """Pairs of special tokens with one role at one verified byte position, matched in order of occurrence."""
    def specials(side: AnswerSpans) -> dict[tuple[int, str], list[int]]:
        found: dict[tuple[int, str], list[int]] = {}
        for index, (piece, position) in enumerate(zip(side.pieces, side.positions)):
            if isinstance(piece, str) and position <= side.verified:
                found.setdefault((position, piece), []).append(index)
        return found

    teacher_specials = specials(teacher)
    return [
        Group((i,), (k,), position, position, role)
        for (position, role), student_indices in specials(student).items()
        for i, k in zip(student_indices, teacher_specials.get((position, role), []))
    ]


def _leading_whitespace(data: bytes) -> int:
    return len(data) - len(data.lstrip(_WHITESPACE))


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


# --------------------------------------------------------------------------------------------------------------
# A batch of groups as tensors
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SideGroups:
    """One side's tokens per group, ``[B, G]`` (0 where ``GroupedBatch.mask`` is False)."""

    member: Tensor  # [B, A] long: the group of each answer token, -1 for none
    first: Tensor  # [B, G] long: first token position of the group
    last: Tensor  # [B, G] long: last token position
    tokens: Tensor  # [B] long: answer tokens with a logits row (text, seam and final EOS)

    def group_sum(self, values: Tensor) -> Tensor:
        """``values [B, A]`` summed over each group's tokens -> ``[B, G]``; tokens outside groups are never read."""
        index = self.member.clamp_min(0)
        kept = torch.where(self.member >= 0, values, torch.zeros_like(values))
        sums = torch.zeros(self.first.shape, dtype=values.dtype, device=values.device)
        if sums.size(1) == 0:  # no group in the batch: there is nothing to add to (and index 0 would not exist)
            return sums
        return sums.scatter_add(1, index, kept)


@dataclass(frozen=True)
class GroupedBatch:
    """The groups of every example of a batch, left-justified: group ``g`` of example ``b`` is valid where
    ``mask[b, g]``."""

    groups: list[list[Group]]
    student: SideGroups
    teacher: SideGroups
    mask: Tensor  # [B, G] bool
    special: Tensor  # [B, G] bool: a group of two special tokens (no bytes)
    exact: Tensor  # [B, G] bool: one token on each side writing the same bytes (or holding the same role)
    nbytes: Tensor  # [B, G] long: answer bytes covered
    answer_bytes: Tensor  # [B] long: UTF-8 length of each answer
    student_text_tokens: Tensor  # [B] long: student tokens that write answer bytes

    @classmethod
    def build(cls, batch: DistillBatch, student_reader: TokenReader, teacher_reader: TokenReader) -> "GroupedBatch":
        answers = [answer.encode("utf-8") for answer in batch.answers]
        student = [AnswerSpans.lay(p, a) for p, a in zip(_pieces(batch.student, student_reader, "student"), answers)]
        teacher = [AnswerSpans.lay(p, a) for p, a in zip(_pieces(batch.teacher, teacher_reader, "teacher"), answers)]
        groups = [group_tokens(s, t) for s, t in zip(student, teacher)]
        width = max((len(g) for g in groups), default=0)

        def table(values: list[list[Any]], fill: Any, dtype: torch.dtype) -> Tensor:
            return torch.tensor([row + [fill] * (width - len(row)) for row in values], dtype=dtype).reshape(len(values), width)

        device = batch.student.answer_ids.device
        exact = [[g.role is not None or (g.one_to_one and s.pieces[g.student[0]] == t.pieces[g.teacher[0]])
                  for g in row] for row, s, t in zip(groups, student, teacher)]
        return cls(
            groups=groups,
            student=_side(groups, "student", batch.student, table),
            teacher=_side(groups, "teacher", batch.teacher, table),
            mask=table([[True] * len(row) for row in groups], False, torch.bool).to(device),
            special=table([[g.role is not None for g in row] for row in groups], False, torch.bool).to(device),
            exact=table(exact, False, torch.bool).to(device),
            nbytes=table([[g.end - g.start for g in row] for row in groups], 0, torch.long).to(device),
            answer_bytes=torch.tensor([len(a) for a in answers], device=device),
            student_text_tokens=torch.tensor([s.text_tokens for s in student], device=device),
        )

    def byte_share(self, counted: Tensor) -> Tensor:
        """Share of the batch's answer bytes inside the ``counted`` groups ``[B, G]``."""
        covered = torch.where(counted, self.nbytes, torch.zeros_like(self.nbytes)).sum()
        return (covered / self.answer_bytes.sum().clamp_min(1)).float()

    def one_to_one_share(self) -> Tensor:
        """Share of the student's answer tokens that form a 1:1 text group (O_T of §19)."""
        pairs = sum(g.text_pair for row in self.groups for g in row)
        return torch.tensor(pairs / max(int(self.student_text_tokens.sum()), 1), device=self.mask.device)

    def exact_alignment(self) -> Alignment:
        """The ``exact`` groups as token pairs (one token per side), for the position-wise losses."""
        index, valid = compact(self.exact)
        student_index = torch.where(valid, self.student.first.gather(1, index), 0)
        teacher_index = torch.where(valid, self.teacher.first.gather(1, index), 0)
        coverage = valid.sum() / self.student.tokens.sum().clamp_min(1)
        return Alignment(student_index, teacher_index, valid, coverage.float())


def _pieces(view: TokenView, reader: TokenReader, side: str) -> list[list[Piece]]:
    counts = view.answer_token_mask().sum(1).tolist()
    if len(view.answer_tokens) != len(counts):
        raise ValueError(f"the {side} view holds answer_tokens for {len(view.answer_tokens)} of {len(counts)} examples")
    pieces = []
    for b, (tokens, n) in enumerate(zip(view.answer_tokens, counts)):
        if len(tokens) != n:
            raise ValueError(f"{side} example {b}: {len(tokens)} answer token strings but {n} labelled answer tokens")
        pieces.append(reader.read(tokens))
    return pieces


def _side(groups: list[list[Group]], side: str, view: TokenView, table: Any) -> SideGroups:
    member = torch.full(view.answer_ids.shape, -1, dtype=torch.long)
    for b, row in enumerate(groups):
        for g, group in enumerate(row):
            member[b, list(getattr(group, side))] = g
    device = view.answer_ids.device
    return SideGroups(
        member=member.to(device),
        first=table([[getattr(g, side)[0] for g in row] for row in groups], 0, torch.long).to(device),
        last=table([[getattr(g, side)[-1] for g in row] for row in groups], 0, torch.long).to(device),
        tokens=view.answer_token_mask().sum(1),
    )


# --------------------------------------------------------------------------------------------------------------
# Reading the two models' rows per token
# --------------------------------------------------------------------------------------------------------------


def token_log_probs(rows: Tensor, ids: Tensor, shift: int = 0) -> Tensor:
    """``log softmax(rows[b, a + shift])[ids[b, a]]`` for every answer token, ``[B, A]`` in fp32.

    ``rows`` ``[B, A, V]`` are a side's answer rows (row ``a`` predicts token ``a``); ``shift = 1`` reads, as TRL's
    "observed" rows do, the row at token ``a``'s own position. Positions past the last row read the last row (the
    caller masks them).
    """
    width = rows.size(1)
    index = (torch.arange(width, device=rows.device) + shift).clamp_max(width - 1).expand_as(ids)
    batch_index = torch.arange(rows.size(0), device=rows.device).unsqueeze(1).expand_as(ids)
    picked = rows[batch_index, index, ids].float()
    return picked - torch.logsumexp(rows.float(), dim=-1).gather(1, index)


@dataclass(frozen=True)
class TokenizerPair:
    """Both tokenizers as the byte-aligned methods read them (built once per pair in ``prepare``)."""

    student: VocabInfo
    teacher: VocabInfo

    @cached_property
    def readers(self) -> tuple[TokenReader, TokenReader]:
        return TokenReader.from_vocab(self.student), TokenReader.from_vocab(self.teacher)

    def group(self, batch: DistillBatch) -> GroupedBatch:
        return GroupedBatch.build(batch, *self.readers)


class ByteAlignedMethod(Method):
    """A method whose loss reads the byte-span groups of this module: ``prepare`` reads both tokenizers, and
    :meth:`prepare_pair` (used directly by tests with hand-made vocabularies) builds the per-pair state."""

    _pair: TokenizerPair | None = None

    def prepare(self, resources: PairResources) -> None:
        self.prepare_pair(TokenizerPair(resources.student_vocab(), resources.teacher_vocab()))

    def prepare_pair(self, pair: TokenizerPair) -> None:
        self._pair = pair

    @property
    def pair(self) -> TokenizerPair:
        if self._pair is None:
            raise RuntimeError(f"{self.name}.prepare(resources) must run before the loss")
        return self._pair

    def require_teacher(self, teacher: TeacherOutputs | None) -> TeacherOutputs:
        """The teacher outputs (cached or live; methods read them through their detaching accessors)."""
        if teacher is None:
            raise ValueError(f"{self.name} needs teacher outputs (teacher_needs={self.teacher_request().needs!r})")
        return teacher

    def teacher_logits(self, teacher: TeacherOutputs | None) -> Tensor:
        """The teacher's full answer-row logits, detached: the teacher is a constant of the loss, whatever the
        caller hands over."""
        if teacher is None or teacher.logits is None:
            raise ValueError(f"{self.name} needs the teacher's full logits (teacher_needs='full_logits')")
        return teacher.logits.detach()
