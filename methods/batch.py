"""The tensors a distillation loss sees: one batch, two tokenized views of the same strings, and teacher outputs.

The collator (``benchmark.engine.collate``) builds these; methods only read them. Conventions shared by every method:

* Sequences are right-padded. ``labels`` is -100 on prompt and padding and equals the token id on answer tokens
  (including a final EOS when the model has one), so the student's cross-entropy is the usual shifted CE.
* "Answer rows" are the logits rows that *predict* answer tokens: row ``answer_rows[b, a]`` of the logits
  predicts answer token ``a`` of example ``b`` (the causal shift of methods-spec §0). Rows are left-justified:
  ``answer_mask[b, a]`` is False past the example's answer length.
* ``answer_mask`` marks answer tokens that carry text. A trailing EOS is trained by CE but excluded from
  distillation on both sides (it has no characters to align; the official code likewise skips the student EOS).
* ``answer_offsets[b, a] = (start, end)`` are character offsets of answer token ``a`` inside the answer string
  (identical for both views, because both tokenize the same answer string); (-1, -1) where masked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import Tensor


@dataclass
class TokenView:
    """One tokenizer's view of a batch."""

    input_ids: Tensor  # [B, L] long, right-padded
    attention_mask: Tensor  # [B, L] long
    labels: Tensor  # [B, L] long, -100 on prompt/padding
    answer_rows: Tensor  # [B, A] long, logits row predicting answer token a (0 where masked)
    answer_ids: Tensor  # [B, A] long, the answer token ids (pad id where masked)
    answer_mask: Tensor  # [B, A] bool, answer tokens that carry text (EOS excluded)
    answer_offsets: Tensor  # [B, A, 2] long, char offsets inside the answer string, -1 where masked
    answer_tokens: list[list[str]] = field(default_factory=list)  # token strings per example, for string-based aligners
    # [B, R, H] the model's last hidden state at the rows ``answer_rows`` indexes (set by the harness for a method
    # with ``student_hidden_states``; read it through ``gather_answer_rows``)
    hidden: Tensor | None = None

    def gather_answer_rows(self, logits: Tensor) -> Tensor:
        """``[B, L, V]`` logits -> ``[B, A, V]`` rows predicting the answer tokens (masked rows hold row 0)."""
        index = self.answer_rows.unsqueeze(-1).expand(-1, -1, logits.size(-1))
        return logits.gather(1, index)

    def answer_token_mask(self) -> Tensor:
        """``[B, A]`` bool: every answer token cross-entropy trains on (``answer_mask`` plus a final EOS)."""
        lengths = (self.labels != -100).sum(1, keepdim=True)
        return torch.arange(self.answer_ids.size(1), device=lengths.device) < lengths

    def to(self, device: torch.device | str) -> "TokenView":
        moved = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.__dict__.items()}
        return TokenView(**moved)


@dataclass
class DistillBatch:
    """The same prompt/answer strings tokenized by the student and by the teacher."""

    ids: list[str]  # example ids
    answers: list[str]  # the answer strings both views were built from
    student: TokenView
    teacher: TokenView

    def to(self, device: torch.device | str) -> "DistillBatch":
        return DistillBatch(self.ids, self.answers, self.student.to(device), self.teacher.to(device))


@dataclass
class TeacherOutputs:
    """What the teacher contributes, at the teacher's answer rows (``[B, A_t, ...]``, left-justified).

    Either ``logits`` (full vocabulary, from a live teacher) or the cached top-k form (``topk_logits``,
    ``topk_ids``, ``logsumexp``, ``tempered_logsumexp``, and where a method declares them ``token_logits`` and
    ``subset_logsumexp``) is present; :meth:`topk`, :meth:`token_logprobs` and :meth:`subset_log_mass` serve
    methods from both the same way. Methods read the teacher through :meth:`topk` and :func:`full_teacher_logits`, which return detached
    tensors, so no loss sends gradient into the teacher (even one whose outputs require grad).

    Temperature. ``softmax(z / tau)`` ranks the vocabulary like ``z`` for every ``tau > 0`` (``z / tau`` is an
    increasing function of ``z``), so the top-k ids and raw logits cached once serve every temperature; only the
    full-vocabulary normaliser ``logsumexp(z / tau)`` depends on ``tau``. A cache therefore stores one
    ``[B, A_t]`` normaliser per temperature it was built for (:func:`log_normalisers`), at the temperatures the
    method declares (``TeacherRequest.temperatures``).
    """

    mask: Tensor  # [B, A_t] bool, same as batch.teacher.answer_mask
    logits: Tensor | None = None  # [B, A_t, V_t] float
    topk_logits: Tensor | None = None  # [B, A_t, K] float, raw logits sorted descending
    topk_ids: Tensor | None = None  # [B, A_t, K] long
    logsumexp: Tensor | None = None  # [B, A_t] float, full-vocabulary log-normaliser at temperature 1
    tempered_logsumexp: dict[float, Tensor] = field(default_factory=dict)  # tau -> [B, A_t] logsumexp(z / tau)
    vocab_size: int | None = None
    hidden_states: Tensor | None = None  # [B, L_t, H] last hidden layer, when a method asks for it
    # Cached per-row values for the methods that read more than the top-k (TeacherRequest.token_logprobs,
    # TeacherRequest.subsets): the raw logit of the teacher view's own answer token, and logsumexp(z[S] / tau) of
    # named vocabulary subsets S (methods.vocab_subsets) at each cached temperature.
    token_logits: Tensor | None = None  # [B, A_t] float
    subset_logsumexp: dict[tuple[str, float], Tensor] = field(default_factory=dict)  # (name, tau) -> [B, A_t]

    def topk(self, k: int, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
        """Top-``k`` log-probabilities of ``softmax(z / temperature)`` over the FULL vocabulary (descending), their
        ids, and the log of the mass outside them (``log(1 - sum)``, float32: not accurate where that mass is below
        ~1e-6), all detached.

        Uses ``torch.topk`` on full logits (never a full sort) or slices the cache. ``k`` is clipped to the
        vocabulary size; a ``k`` larger than the cached ``K`` (after clipping), or a temperature whose normaliser
        the cache does not hold, is an error rather than a silent approximation.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if self.logits is not None:
            logits = self.logits.detach().float() / temperature
            values, ids = torch.topk(logits, min(k, logits.size(-1)), dim=-1)
            lse = torch.logsumexp(logits, dim=-1)
        else:
            if self.topk_logits is None or self.topk_ids is None:
                raise ValueError("teacher outputs hold neither full logits nor a top-k cache")
            cached = self.topk_logits.size(-1)
            k = min(k, self.vocab_size) if self.vocab_size else k
            if k > cached:
                raise ValueError(f"top-k of {k} requested but the teacher cache holds only k={cached}")
            values = self.topk_logits[..., :k].detach().float() / temperature
            ids, lse = self.topk_ids[..., :k], self._cached_log_normaliser(temperature)
        logprobs = values - lse.unsqueeze(-1)
        return logprobs, ids, torch.log1p(-logprobs.exp().sum(-1).clamp(max=1 - 1e-7))

    def token_logprobs(self, ids: Tensor, temperature: float = 1.0) -> Tensor:
        """``log softmax(z / temperature)[ids]`` at every answer row, ``[B, A_t]`` float32, detached. ``ids`` are the
        teacher view's own answer ids (``batch.teacher.answer_ids``): a cache stores the logit of exactly those
        tokens, so the cached value is exact, at every temperature whose normaliser it holds."""
        if self.logits is not None:
            logits = self.logits.detach().float() / temperature
            return logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        if self.token_logits is None:
            raise ValueError("the teacher cache holds no answer-token logits; the method's teacher request "
                             "must set token_logprobs=True (or read a live teacher)")
        return self.token_logits.detach().float() / temperature - self._cached_log_normaliser(temperature)

    def subset_log_mass(self, name: str, ids: Tensor, temperature: float = 1.0) -> Tensor:
        """``log Σ_{v ∈ S} softmax(z / temperature)_v`` at every answer row, ``[B, A_t]`` float32, detached, for the
        vocabulary subset ``S`` = ``ids``, which a cache stores under ``name`` (:mod:`methods.vocab_subsets`)."""
        if self.logits is not None:
            logits = self.logits.detach().float() / temperature
            return torch.logsumexp(logits[..., ids.to(logits.device)], dim=-1) - torch.logsumexp(logits, dim=-1)
        key = (name, float(temperature))
        if key not in self.subset_logsumexp:
            raise ValueError(f"the teacher cache holds no log-mass of vocabulary subset {name!r} at temperature "
                             f"{temperature} (it holds {sorted(self.subset_logsumexp)}); the method's teacher request "
                             "must name it in subsets")
        return self.subset_logsumexp[key].detach().float() - self._cached_log_normaliser(temperature)

    def _cached_log_normaliser(self, temperature: float) -> Tensor:
        if temperature == 1.0 and self.logsumexp is not None:
            return self.logsumexp.detach().float()
        if float(temperature) in self.tempered_logsumexp:
            return self.tempered_logsumexp[float(temperature)].detach().float()
        held = sorted({*self.tempered_logsumexp, *([1.0] if self.logsumexp is not None else [])})
        raise ValueError(
            f"the teacher cache holds no log-normaliser at temperature {temperature} (it holds {held}); "
            "rebuild it with the temperatures of the method's teacher request"
        )


def log_normalisers(logits: Tensor, temperatures: Iterable[float]) -> dict[float, Tensor]:
    """``{tau: logsumexp(logits / tau)}`` over the last dimension, in float32: what a top-k cache stores per row
    for each temperature a method reads (``TeacherOutputs.tempered_logsumexp``)."""
    logits = logits.detach().float()
    return {float(tau): torch.logsumexp(logits / tau, dim=-1) for tau in temperatures}


def full_teacher_logits(teacher: TeacherOutputs | None, needed_by: str) -> Tensor:
    """The teacher's full-vocabulary logits, detached; a one-line error when only a top-k cache (or nothing) is here."""
    if teacher is None or teacher.logits is None:
        held = "no teacher outputs" if teacher is None else "only a top-k cache"
        raise ValueError(f"{needed_by} needs the teacher's full logits (a live teacher), got {held}")
    return teacher.logits.detach()
