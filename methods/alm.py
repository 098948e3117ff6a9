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
from methods.base import MethodConfig
from methods.batch import DistillBatch, TeacherOutputs
from methods.registry import METHODS
from methods.spans import ByteAlignedMethod, SideGroups, TokenizerPair, token_log_probs
from methods.token_text import VocabInfo

BOUNDARY_STARTS = (b" ", b"\t", b"\n")  # + special tokens: tokenkit's space_mask_mode space+tab+newline+special [code]


@dataclass(frozen=True)
class ALMConfig(MethodConfig):
    """ALM's hyper-parameters: tokenkit's defaults unless marked otherwise."""

    binarization_temp: float = 100.0  # τ_b [code: S l.139–176]
    epsilon: float = 1e-6  # keeps a, b < 0 [code: L l.224–274]
    append_space: bool = True  # boundary debiasing [code: every shipped config]; False = the notebook's alm-naive
    specials: bool = True  # the EOS pair is a chunk [code: special tokens matched as placeholder chunks]
    weight: float = 1.0  # [code: loss_weights]
    ce_weight: float = 0.0  # [code: the shipped configs train on the ALM loss alone]

    def __post_init__(self) -> None:
        if self.binarization_temp <= 0:
            raise ValueError(f"binarization_temp must be > 0, got {self.binarization_temp}")
        if self.epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 − e^x)`` for ``x < 0``, accurate at both ends (Mächler's switch at −ln 2)."""
    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def binary_ce(teacher_ll: Tensor, student_ll: Tensor, temperature: float, epsilon: float) -> Tensor:
    """§6.3 per chunk from the two chunk log-likelihoods (both ``<= 0``)."""
    a = teacher_ll / temperature - epsilon
    b = student_ll / temperature - epsilon
    return -(a.exp() * b + (-torch.expm1(a)) * log1mexp(b))


def boundary_ids(info: VocabInfo) -> Tensor:
    """Ids of the tokens after which a chunk may end: bytes starting with a space, tab or newline, or special."""
    canon = info.canonicalizer()
    specials = info.special_ids | set(info.roles.values())
    ids = [i for token, i in info.vocab.items() if i in specials or canon.bytes_of(token)[:1] in BOUNDARY_STARTS]
    return torch.tensor(sorted(ids), dtype=torch.long)



@METHODS.register("alm")
class ALM(ByteAlignedMethod):
    """Approximate likelihood matching: binarised cross-entropy of chunk likelihoods (spec §6, §6.6)."""

    config_class = ALMConfig
    teacher_needs = "full_logits"
    config: ALMConfig

    def prepare_pair(self, pair: TokenizerPair) -> None:
        super().prepare_pair(pair)
        self._boundaries = boundary_ids(pair.student), boundary_ids(pair.teacher)

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        teacher_logits = self.teacher_logits(teacher)
        cfg = self.config
        grouped = self.pair.group(batch)
        counted = grouped.mask if cfg.specials else grouped.mask & ~grouped.special
        student_ll, student_ok = self.chunk_log_likelihoods(
            batch.student.gather_answer_rows(student_logits), batch.student.answer_ids, grouped.student,
            grouped.special, self._boundaries[0])
        teacher_ll, teacher_ok = self.chunk_log_likelihoods(
            teacher_logits, batch.teacher.answer_ids, grouped.teacher, grouped.special, self._boundaries[1])
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
        self, rows: Tensor, ids: Tensor, side: SideGroups, special: Tensor, boundary: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``[B, G]`` chunk log-likelihoods of one side (clipped at 0), and where they are defined."""
        rows = rows.float()
        log_likelihood = side.group_sum(token_log_probs(rows, ids))
        if not self.config.append_space:
            return log_likelihood.clamp_max(0.0), torch.ones_like(special)
        following = side.last + 1
        has_next = following < side.tokens.unsqueeze(1)
        next_rows = gather_rows(rows, following.clamp_max(rows.size(1) - 1))
        boundary_mass = torch.logsumexp(next_rows[..., boundary.to(rows.device)], -1) - torch.logsumexp(next_rows, -1)
        # A special-token chunk (the EOS pair) ends the answer: nothing follows it to debias.
        log_likelihood = log_likelihood + torch.where(special, 0.0, boundary_mass)
        return log_likelihood.clamp_max(0.0), has_next | special
