"""ALM — approximate likelihood matching (Minixhofer, Vulić, Ponti; NeurIPS 2025; tokenkit @ bcacdef; spec §6).

The answer is cut into chunks: the groups of :mod:`methods.spans`, the minimal spans whose boundaries are token
boundaries on both sides (tokenkit's ``unconstrained`` chunks, §6.1). Each model's chunk log-likelihood is the sum of
its tokens' log-probabilities under the rows that predict them (§6.2). ``append_space`` (every shipped tokenkit
config) adds, on both sides, the log-probability that the token after the chunk starts at a boundary,
``log Σ_{v∈B} p(v | …, last token)`` with B the tokens whose bytes start with a space, tab or newline, and the
special tokens; this removes the bias of comparing a chunk that one tokenizer could still extend. Then, clipped at 0,

    a = ℓ_T / τ_b − ε,  b = ℓ_S / τ_b − ε,  loss(c) = −[e^a · b + (1 − e^a) · log(1 − e^b)]     (§6.3)

the binary cross-entropy between Bernoulli(p_T(c)^{1/τ_b}) and Bernoulli(p_S(c)^{1/τ_b}), with ``log(1 − e^b)``
by :func:`log1mexp` so that nothing forms ``1 − p``. The loss is the mean over the batch's counting chunks (§6.4,
``chunk_count``); ``L = ce_weight · CE + weight · ALM``.

Chunks dropped (§6.1, §6.4): chunks whose two sides write different bytes never form (the walk only closes shared
boundaries, and bytes the tokens do not spell as the answer has them are left out); with ``append_space``, a text
chunk without a next row (the last chunk of an answer cut by the length limit) is dropped; the final EOS pair is a
chunk of its own (tokenkit pairs special tokens as placeholder chunks) unless ``specials`` is off. Logged:
``byte_coverage``, the share of the batch's answer bytes inside counting text chunks.

Teacher signal: two scalars per teacher answer row, the log-probability of the teacher's own token and the
boundary mass, so the method trains from a top-k cache that stores them (the request's ``token_logprobs`` and
``subsets``; exact, the EOS row included) or from a live teacher alike.

Where this differs from tokenkit: chunks from our byte spans of the answer only (tokenkit aligns the whole sequence
and masks the prompt); every answer token has a predicting row here, so no chunk is lost to tokenkit's missing row
of token 0; the ``unbiased`` chunk kind needs corpus statistics and is not offered (§6.6).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from methods.alignment import gather_rows, token_mean
from methods.base import MethodConfig, TeacherRequest, param
from methods.batch import DistillBatch, TeacherOutputs
from methods.registry import METHODS
from methods.spans import ByteAlignedMethod, SideGroups, TokenizerPair, token_log_probs
from methods.vocab_subsets import boundary_ids


@dataclass(frozen=True)
class ALMConfig(MethodConfig):
    """ALM's hyper-parameters: tokenkit's defaults unless marked otherwise."""

    binarization_temp: float = param(100.0, "positive")  # τ_b [code: S l.139–176]
    epsilon: float = param(1e-6, "positive")  # keeps a, b < 0 [code: L l.224–274]
    append_space: bool = True  # boundary debiasing [code: every shipped config]; False = the notebook's alm-naive
    specials: bool = True  # the EOS pair is a chunk [code: special tokens matched as placeholder chunks]
    weight: float = 1.0  # [code: loss_weights]
    ce_weight: float = 0.0  # [code: the shipped configs train on the ALM loss alone]


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 − e^x)`` for ``x < 0``, accurate at both ends (Mächler's switch at −ln 2)."""
    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def binary_ce(teacher_ll: Tensor, student_ll: Tensor, temperature: float, epsilon: float) -> Tensor:
    """§6.3 per chunk from the two chunk log-likelihoods (both ``<= 0``)."""
    a = teacher_ll / temperature - epsilon
    b = student_ll / temperature - epsilon
    return -(a.exp() * b + (-torch.expm1(a)) * log1mexp(b))


@METHODS.register("alm")
class ALM(ByteAlignedMethod):
    """Approximate likelihood matching: binarised cross-entropy of chunk likelihoods (spec §6, §6.6).

    The teacher side reads two scalars per answer row, the log-probability of the teacher's own token and (with
    ``append_space``) the boundary mass, so a top-k cache that stores them serves it exactly.
    """

    config_class = ALMConfig
    config: ALMConfig

    def teacher_request(self) -> TeacherRequest:
        return TeacherRequest(needs="topk_logits", token_logprobs=True,
                              subsets=("boundary",) if self.config.append_space else ())

    def prepare_pair(self, pair: TokenizerPair) -> None:
        super().prepare_pair(pair)
        self._boundaries = boundary_ids(pair.student), boundary_ids(pair.teacher)

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        teacher = self.require_teacher(teacher)
        cfg = self.config
        grouped = self.pair.group(batch)
        counted = grouped.mask if cfg.specials else grouped.mask & ~grouped.special
        student_rows = batch.student.gather_answer_rows(student_logits).float()
        student_boundary = teacher_boundary = None
        if cfg.append_space:
            boundary = self._boundaries[0].to(student_rows.device)
            student_boundary = torch.logsumexp(student_rows[..., boundary], -1) - torch.logsumexp(student_rows, -1)
            teacher_boundary = teacher.subset_log_mass("boundary", self._boundaries[1])
        student_ll, student_ok = self.chunk_log_likelihoods(
            token_log_probs(student_rows, batch.student.answer_ids), student_boundary, grouped.student, grouped.special)
        teacher_ll, teacher_ok = self.chunk_log_likelihoods(
            teacher.token_logprobs(batch.teacher.answer_ids), teacher_boundary, grouped.teacher, grouped.special)
        counted = counted & student_ok & teacher_ok
        # Chunks that do not count get a harmless likelihood, so that nothing behind the mask can turn into NaN.
        safe = torch.tensor(-1.0, device=counted.device)
        per_chunk = binary_ce(torch.where(counted, teacher_ll, safe), torch.where(counted, student_ll, safe),
                              cfg.binarization_temp, cfg.epsilon)
        alm = token_mean(per_chunk, counted)
        return {
            "loss": cfg.ce_weight * ce + cfg.weight * alm,
            "ce": ce.detach(),
            "alm": alm.detach(),
            "byte_coverage": grouped.byte_share(counted & ~grouped.special),
        }

    def chunk_log_likelihoods(
        self, token_logprobs: Tensor, boundary: Tensor | None, side: SideGroups, special: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``[B, G]`` chunk log-likelihoods of one side (clipped at 0), and where they are defined, from the
        ``[B, A]`` log-probabilities of the side's answer tokens and (``append_space``) the ``[B, A]`` boundary
        log-mass of each answer row."""
        log_likelihood = side.group_sum(token_logprobs)
        if boundary is None:
            return log_likelihood.clamp_max(0.0), torch.ones_like(special)
        following = side.last + 1
        has_next = following < side.tokens.unsqueeze(1)
        boundary_mass = gather_rows(boundary, following.clamp_max(boundary.size(1) - 1))
        # A special-token chunk (the EOS pair) ends the answer: nothing follows it to debias.
        log_likelihood = log_likelihood + torch.where(special, 0.0, boundary_mass)
        return log_likelihood.clamp_max(0.0), has_next | special
