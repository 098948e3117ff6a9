"""Which student answer token is compared with which teacher answer token, and reductions over those pairs.

One entry point, :func:`align`, used by every method that compares the two sides token by token:

* ``positional`` (ULD and MultiLevelOT code, spec §0): the j-th student answer token with text is paired with the
  j-th teacher answer token with text, for ``j < min(n_s, n_t)``. No character information is used, so pairs drift
  apart after the first word the two tokenizers split differently (spec §12.1).
* ``offsets`` (spec §14.1): a student and a teacher token are paired when they cover exactly the same characters of
  the answer string, i.e. the 1:1 aligned tokens. A span that occurs more than once on a side (e.g. byte pieces of
  one character sharing its offsets) is ambiguous and left unpaired.

Both only pair tokens with ``answer_mask`` True, so a trailing EOS (masked by the collator) is never paired.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from methods.batch import DistillBatch, TokenView

AlignmentMode = Literal["positional", "offsets"]
ALIGNMENT_MODES: tuple[str, ...] = ("positional", "offsets")


@dataclass(frozen=True)
class Alignment:
    """Left-justified pairs ``(student_index[b, p], teacher_index[b, p])`` of answer-token positions.

    Indices point into the ``A`` dimension of each side's answer tensors (``answer_rows``, ``answer_mask``, the
    teacher outputs); they are 0 where ``mask`` is False. ``coverage`` is the share of the batch's student answer
    tokens (with text) that have a partner.
    """

    student_index: Tensor  # [B, P] long
    teacher_index: Tensor  # [B, P] long
    mask: Tensor  # [B, P] bool
    coverage: Tensor  # [] float

    def student(self, x: Tensor) -> Tensor:
        """Student-side ``[B, A_s, *X]`` -> aligned ``[B, P, *X]``."""
        return gather_rows(x, self.student_index)

    def teacher(self, x: Tensor) -> Tensor:
        """Teacher-side ``[B, A_t, *X]`` -> aligned ``[B, P, *X]``."""
        return gather_rows(x, self.teacher_index)

    def student_rows(self, view: TokenView) -> Tensor:
        """``[B, P]`` indices of the student logits rows that predict the paired tokens (for one gather of logits)."""
        return self.student(view.answer_rows)

    def student_positions(self, width: int) -> Tensor:
        """``[B, width]`` bool: the student answer positions that have a partner."""
        return _positions(self.student_index, self.mask, width)

    def teacher_positions(self, width: int) -> Tensor:
        """``[B, width]`` bool: the teacher answer positions that have a partner."""
        return _positions(self.teacher_index, self.mask, width)


def _positions(index: Tensor, mask: Tensor, width: int) -> Tensor:
    # scatter_add, not scatter: unpaired entries also point at position 0 and must not overwrite a real pair there.
    counts = torch.zeros(index.size(0), width, dtype=torch.long, device=index.device)
    return counts.scatter_add_(1, index, mask.long()) > 0


def align(batch: DistillBatch, mode: AlignmentMode | str) -> Alignment:
    """Pair the student's and the teacher's answer tokens of ``batch`` by ``mode`` (see the module docstring)."""
    if mode == "positional":
        return _positional(batch.student.answer_mask, batch.teacher.answer_mask)
    if mode == "offsets":
        return _by_offsets(batch.student, batch.teacher)
    raise ValueError(f"unknown alignment {mode!r}; expected one of {', '.join(ALIGNMENT_MODES)}")


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, p], ...]``: ``[B, A, *X]`` and ``[B, P]`` -> ``[B, P, *X]``."""
    expanded = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand(*index.shape, *x.shape[2:])
    return x.gather(1, expanded)


def compact(mask: Tensor, size: int | None = None) -> tuple[Tensor, Tensor]:
    """Left-justify the True positions of ``mask`` ``[B, A]``, keeping their order.

    Returns ``index [B, N]`` (positions, 0 past each row's count) and ``valid [B, N]``; ``N`` is the largest count,
    or ``size`` when given (truncating or padding).
    """
    counts = mask.sum(1)
    if size is None:
        size = int(counts.max()) if counts.numel() else 0
    # A stable sort of the flags (0 = keep) moves the kept positions to the front in their original order.
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
    order = torch.nn.functional.pad(order, (0, max(0, size - order.size(1))))[:, :size]
    valid = torch.arange(size, device=mask.device) < counts.unsqueeze(1)
    return torch.where(valid, order, 0), valid


def _positional(student_mask: Tensor, teacher_mask: Tensor) -> Alignment:
    student_index, student_valid = compact(student_mask)
    teacher_index, teacher_valid = compact(teacher_mask)
    width = min(student_index.size(1), teacher_index.size(1))
    mask = student_valid[:, :width] & teacher_valid[:, :width]
    width = int(mask.sum(1).max()) if mask.numel() else 0  # the longest min(n_s, n_t) of the batch
    mask = mask[:, :width]
    student_index, teacher_index = (torch.where(mask, index[:, :width], 0) for index in (student_index, teacher_index))
    return _alignment(student_index, teacher_index, mask, student_mask)


def _by_offsets(student: TokenView, teacher: TokenView) -> Alignment:
    s_off, t_off = student.answer_offsets, teacher.answer_offsets
    same_span = (s_off[:, :, None, :] == t_off[:, None, :, :]).all(-1)  # [B, A_s, A_t]
    same_span &= student.answer_mask.unsqueeze(2) & teacher.answer_mask.unsqueeze(1)
    # Unique on both sides: exactly one partner for the student token and for the teacher token.
    one_to_one = same_span & (same_span.sum(2, keepdim=True) == 1) & (same_span.sum(1, keepdim=True) == 1)
    paired = one_to_one.any(2)
    partner = one_to_one.to(torch.uint8).argmax(2)  # [B, A_s] teacher position of each paired student token
    student_index, mask = compact(paired)
    teacher_index = torch.where(mask, partner.gather(1, student_index), 0)
    return _alignment(student_index, teacher_index, mask, student.answer_mask)


def _alignment(student_index: Tensor, teacher_index: Tensor, mask: Tensor, student_mask: Tensor) -> Alignment:
    coverage = mask.sum() / student_mask.sum().clamp_min(1)
    return Alignment(student_index, teacher_index, mask, coverage.float())


def sample_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over each sample's masked rows, then over the samples that have any (the ULD code's reduction).

    ``values`` ``[B, P]``; unmasked entries are never read (they may hold garbage). 0 when nothing is masked in.
    """
    kept = torch.where(mask, values, 0.0)
    counts = mask.sum(1)
    per_sample = kept.sum(1) / counts.clamp_min(1)
    has_rows = counts > 0
    return torch.where(has_rows, per_sample, 0.0).sum() / has_rows.sum().clamp_min(1)


def token_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over all masked rows of the batch (token-weighted, like the harness's cross-entropy)."""
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1)
