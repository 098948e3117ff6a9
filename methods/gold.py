"""GOLD — TRL's cross-tokenizer logit distillation, off-policy (``trl.experimental.gold`` @ f2cd577; spec §8).

Both tokenisations of the answer are cut into the groups of :mod:`methods.spans` (TRL's byte-offset alignment,
§8.3). Each side turns a group of ``r`` tokens into one vector over its own vocabulary (§8.4), with each scalar
floored at ε = 1e-8 as in TRL:

* ``bayesian`` (our default, §8.10): rows predict their own token (§0), and
  ``q̂ = q(g_r) · Π_{h<r} q(g_h)[x(g_h)]``, i.e. ``q̂[v] = P(x(g_1) … x(g_{r−1}), then v | context)``: the chain rule;
* ``observed`` (TRL's default at f2cd577): each token's row is the one at its own position (predicting the next
  token, "one token late"), and ``q̂ = q(g_1) · Π_{h≥2} q(g_h)[x(g_h)]``, each scalar being the probability a row
  gives to its own input token (§8.4, §8.9.4). Kept to reproduce TRL.

The merged vectors are sub-stochastic and compared as they are: by ULD (§8.5; L1 between the two vectors sorted
descending, the shorter zero-padded), averaged over a sample's groups, then over the samples. ``hybrid`` (§8.6)
splits each vector: on the matched vocabulary M (tokens both sides hold: raw strings as TRL, or canonical bytes)
the generalised JSD_β of the two sub-vectors, on the rest ULD; weights ``|M| / V_t`` and ``1 − |M| / V_t``
(``V_t`` the teacher's logit width) unless both are given. ``L = ce_weight · CE + weight · GOLD``.

Where this differs from TRL, and why:

* spans come from the canonical bytes of any tokenizer (:mod:`methods.spans`), checked against the answer; TRL
  reads HF offsets and accepts ByteLevel tokenizers only (§8.1, §8.10);
* each sorted vector keeps its ``k`` largest entries plus one tail bin (as our ``uld``, §14.2): a lower bound of the
  full-sort ULD, equal to it when ``k`` covers a vocabulary (``k`` = 200,000 reproduces TRL's full sort);
* the final EOS never joins a text group (it writes no bytes); TRL's ``skip_eos`` drops each side's last labelled
  token instead, whatever it is. With ``skip_eos=False`` the two EOS tokens form a group of their own;
* a sample without any group is left out of the batch mean (TRL counts it as 0);
* ``gold-onpolicy`` (TRL's ``lmbda`` = 0.5, spec §8.7): the same loss, with half of the micro-batches (a fixed-seed
  draw each) replaced by the student's own samples (temperature 0.9, top-p 0.95, no top-k), which the harness
  re-encodes for both tokenizers and the live teacher scores (:mod:`benchmark.engine.on_policy`). TRL re-encodes the
  completion for the teacher only and keeps the student's sampled ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from methods.alignment import gather_rows, sample_mean
from benchmark.core.checks import ConfigError
from methods.base import MethodConfig, Sampling, TeacherRequest, param
from methods.batch import DistillBatch, TeacherOutputs
from methods.divergences import generalized_jsd
from methods.ot import append_tail, pad_last, rank_l1
from methods.overlap import MATCHINGS, shared_vocabulary
from methods.registry import METHODS
from methods.spans import ByteAlignedMethod, SideGroups, TokenizerPair, token_log_probs

MERGES: tuple[str, ...] = ("bayesian", "observed")
FLOOR = 1e-8  # probabilities are floored here before their logs enter a product [code: GT l.553–621, l.623–749]


@dataclass(frozen=True)
class GOLDConfig(MethodConfig):
    """GOLD's hyper-parameters: TRL's defaults unless marked otherwise."""

    # [suite, spec §8.10]; "observed" is TRL's uld_token_merge_strategy default [code]
    merge: str = param("bayesian", choices=MERGES)
    # [suite, spec §14.2] top-k + tail bin per merged vector; TRL sorts the full vocabulary [code]
    k: int = param(100, "positive")
    temperature: float = param(1.0, "positive")  # uld_student_temperature = uld_teacher_temperature [code]
    weight: float = 1.0  # uld_distillation_weight [code]
    ce_weight: float = 0.0  # uld_crossentropy_weight [code]
    skip_eos: bool = True  # uld_skip_student_eos / uld_skip_teacher_eos [code]: the EOS pair is not distilled
    hybrid: bool = False  # uld_use_hybrid_loss [code]
    # hybrid vocabulary matching [suite, spec §8.10]; "raw" strings as TRL [code]
    match: str = param("canonical", choices=MATCHINGS)
    beta: float = param(0.5, "unit")  # JSD β of the hybrid matched term [code]
    matched_weight: float | None = None  # uld_hybrid_matched_weight [code]; None with unmatched_weight None: |M|/V_t
    unmatched_weight: float | None = None  # uld_hybrid_unmatched_weight [code]

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.matched_weight is None) != (self.unmatched_weight is None):
            raise ConfigError("matched_weight", self.matched_weight, f"a number exactly when unmatched_weight is "
                              f"one (got {self.unmatched_weight!r}); neither: adaptive |M|/V_t weights")


@dataclass(frozen=True)
class MergedSpans:
    """One side's groups as merged vectors ``q̂ = exp(log_mass) · softmax(base)``: their ``k`` largest entries."""

    top: Tensor  # [B, G, k] fp32 log of the merged vector's k largest entries, descending
    log_mass: Tensor  # [B, G] log of the product of the group's other scalars (the vector's total mass)
    valid: Tensor  # [B, G] bool: every row the merge reads exists
    base: Tensor | None = None  # [B, G, V] fp32 logits (at the temperature) of each group's base row (hybrid only)


@METHODS.register("gold")
class GOLD(ByteAlignedMethod):
    """TRL's GOLD, off-policy: merged span probabilities compared by ULD, optionally hybrid (spec §8, §8.10).

    Teacher signal: the ``bayesian`` merge of the non-hybrid loss reads, per teacher answer row, the log-probability
    of the teacher's own token and the row's top-``k`` log-probabilities, which a top-k cache serves exactly; the
    ``observed`` merge (a row's probability of the token before it) and the hybrid loss (matched vocabulary entries)
    need the teacher's full logits.
    """

    config_class = GOLDConfig
    config: GOLDConfig

    def teacher_request(self) -> TeacherRequest:
        if not self.reads_topk:
            return TeacherRequest(needs="full_logits")
        return TeacherRequest(needs="topk_logits", topk=self.config.k, temperatures=(self.config.temperature,),
                              token_logprobs=True)

    @property
    def reads_topk(self) -> bool:
        """True when the teacher side needs only token log-probabilities and top-k rows (see the class docstring)."""
        return self.config.merge == "bayesian" and not self.config.hybrid

    def prepare_pair(self, pair: TokenizerPair) -> None:
        super().prepare_pair(pair)
        self._matched: tuple[Tensor, Tensor] | None = None
        if self.config.hybrid:
            pairs = shared_vocabulary(pair.student, pair.teacher, self.config.match)
            self._matched = torch.tensor(pairs.student, dtype=torch.long), torch.tensor(pairs.teacher, dtype=torch.long)

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        cfg = self.config
        grouped = self.pair.group(batch)
        counted = grouped.mask & ~grouped.special if cfg.skip_eos else grouped.mask
        student = self.merge(batch.student.gather_answer_rows(student_logits), batch.student.answer_ids, grouped.student)
        if self.reads_topk:
            teacher_side = self.merge_outputs(self.require_teacher(teacher), batch.teacher.answer_ids, grouped.teacher)
        else:
            teacher_side = self.merge(self.teacher_logits(teacher), batch.teacher.answer_ids, grouped.teacher)
        counted = counted & student.valid & teacher_side.valid
        terms: dict[str, Tensor] = {}
        if cfg.hybrid:
            matched, unmatched = self._hybrid_parts(student, teacher_side)
            matched_weight, unmatched_weight = self._hybrid_weights(self.teacher_logits(teacher).size(-1))
            distance = matched_weight * matched + unmatched_weight * unmatched
            terms = {"gold_matched": sample_mean(matched, counted).detach(),
                     "gold_unmatched": sample_mean(unmatched, counted).detach()}
        else:
            distance = _rank_l1_with_tails(*((side.top.exp(), side.log_mass.exp()) for side in (teacher_side, student)))
        gold = sample_mean(distance, counted)
        return {
            "loss": cfg.ce_weight * ce + cfg.weight * gold,
            "ce": ce.detach(),
            "gold": gold.detach(),
            **terms,
            "byte_coverage": grouped.byte_share(counted),
            "one_to_one_share": grouped.one_to_one_share(),
        }

    def merge(self, rows: Tensor, ids: Tensor, side: SideGroups) -> MergedSpans:
        """Merge each group of one side from its full answer rows ``[B, A, V]``, as the config says."""
        rows = rows.float() / self.config.temperature
        shift = 1 if self.config.merge == "observed" else 0
        log_mass, base_rows, valid = self._spans(token_log_probs(rows, ids, shift), side, shift)
        base = gather_rows(rows, base_rows)
        return MergedSpans(self._top(base, base, log_mass), log_mass, valid, base)

    def merge_outputs(self, teacher: TeacherOutputs, ids: Tensor, side: SideGroups) -> MergedSpans:
        """The ``bayesian`` merge of the teacher's groups through :class:`TeacherOutputs`' token log-probabilities
        and top-k (a cache and a live teacher give the same values)."""
        temperature = self.config.temperature
        log_mass, base_rows, valid = self._spans(teacher.token_logprobs(ids, temperature), side, 0)
        top = gather_rows(teacher.topk(self.config.k, temperature)[0], base_rows)
        return MergedSpans(top + log_mass.unsqueeze(-1), log_mass, valid)

    def _spans(self, token_logprobs: Tensor, side: SideGroups, shift: int) -> tuple[Tensor, Tensor, Tensor]:
        """From one side's ``[B, A]`` token log-probabilities: each group's log mass (the floored scalars of its
        tokens other than the base), the row of its base distribution, and whether every row read exists."""
        scalars = token_logprobs.clamp_min(math.log(FLOOR))
        base_token = side.last if self.config.merge == "bayesian" else side.first
        log_mass = side.group_sum(scalars) - scalars.gather(1, base_token)
        base_rows = (base_token + shift).clamp_max(token_logprobs.size(1) - 1)
        return log_mass, base_rows, side.last + shift < side.tokens.unsqueeze(1)

    def _top(self, logits: Tensor, base: Tensor, log_mass: Tensor) -> Tensor:
        """Log of the ``k`` largest entries of the merged vector ``exp(log_mass) · softmax(base)`` among ``logits``
        (``base``, or ``base`` with excluded columns at -inf)."""
        values = torch.topk(logits, min(self.config.k, logits.size(-1)), dim=-1).values
        return values - torch.logsumexp(base, -1, keepdim=True) + log_mass.unsqueeze(-1)

    def _hybrid_parts(self, student: MergedSpans, teacher: MergedSpans) -> tuple[Tensor, Tensor]:
        """``[B, G]`` JSD_β on the matched vocabulary and sorted L1 on the rest (spec §8.6)."""
        assert self._matched is not None
        logs, unmatched = [], []
        for side, ids in ((teacher, self._matched[1]), (student, self._matched[0])):
            assert side.base is not None
            ids = ids.to(side.base.device)
            matched_logits = side.base[..., ids]
            log_norm = torch.logsumexp(side.base, -1)
            matched_log = matched_logits - log_norm.unsqueeze(-1) + side.log_mass.unsqueeze(-1)
            logs.append(matched_log.clamp_min(math.log(FLOOR)))
            matched_share = torch.logsumexp(matched_logits, -1) - log_norm
            rest = side.log_mass.exp() * (-torch.expm1(matched_share)).clamp_min(0.0)
            top = self._top(side.base.index_fill(-1, ids, float("-inf")), side.base, side.log_mass)
            unmatched.append((top.exp(), rest))
        return generalized_jsd(logs[0], logs[1], self.config.beta), _rank_l1_with_tails(*unmatched)

    def _hybrid_weights(self, teacher_width: int) -> tuple[float, float]:
        cfg = self.config
        if cfg.matched_weight is not None and cfg.unmatched_weight is not None:
            return cfg.matched_weight, cfg.unmatched_weight
        assert self._matched is not None
        matched = len(self._matched[1]) / teacher_width
        return matched, 1.0 - matched


@dataclass(frozen=True)
class GOLDOnPolicyConfig(GOLDConfig):
    """``gold`` plus TRL's on-policy fraction and sampling settings (GKDConfig / GOLDConfig defaults)."""

    lmbda: float = param(0.5, "unit")  # share of micro-batches on the student's own samples [code: lmbda]
    sampling_temperature: float = param(0.9, "positive")  # [code: temperature]
    top_p: float = param(0.95, "probability")  # [code]
    top_k: int = param(0, "non_negative")  # [code] 0: off
    max_new_tokens: int = param(128, "positive")  # [code: max_completion_length]; also capped at
    #                                               data.max_answer_tokens [suite]

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.sampling_temperature, self.top_p, self.top_k, self.max_new_tokens)


@METHODS.register("gold-onpolicy")
class GOLDOnPolicy(GOLD):
    """GOLD with TRL's on-policy fraction: micro-batches of the student's own samples, scored live (spec §8.7).

    A share ``lmbda`` (0.5) of the micro-batches, each by a fixed-seed draw, hold the student's samples instead of
    the dataset's answers; the loss is :class:`GOLD`'s, unchanged."""

    config_class = GOLDOnPolicyConfig
    config: GOLDOnPolicyConfig

    def teacher_request(self) -> TeacherRequest:
        # Samples exist only during training, so no cache can hold the teacher's view of them: always live.
        return TeacherRequest(needs="full_logits", on_policy_fraction=self.config.lmbda, sampling=self.config.sampling)


def _rank_l1_with_tails(teacher: tuple[Tensor, Tensor], student: tuple[Tensor, Tensor]) -> Tensor:
    """Sorted L1 between two (top entries, total mass) vectors: zero-padded to one width, tail bins appended."""
    size = max(teacher[0].size(-1), student[0].size(-1))
    return rank_l1(*(append_tail(pad_last(top, size), mass) for top, mass in (teacher, student)))
