"""eta-kl — exact token alignment + KL on the shared vocabulary (KDFlow ``SimpleCrossTokenizerKD`` @ 3a7a21a; §16).

Aligned positions (§16.4): the 1:1 groups of :mod:`methods.spans` whose two tokens write the same bytes, plus the
final EOS pair. At each, the teacher's and the student's logits are restricted to the shared vocabulary O
(:func:`methods.overlap.shared_vocabulary`: canonical bytes, specials by role, which includes the EOS pair that
KDFlow appends), renormalised over O, and compared by ``KL(softmax(z_t[O]/τ) ‖ softmax(z_s[O]/τ))``.
``norm = aligned`` (ours, §16.4) averages over the aligned positions; ``all_targets`` is KDFlow's Σ/N̄: the sum over
aligned positions divided by the student's answer tokens, so the term shrinks with the aligned share.
``L = (1 − r) · CE + r · KD``, r = ``kd_ratio``. Logged: ``aligned_share`` = aligned positions / student answer
tokens (KDFlow's ``align_ratio``).

Teacher signal (``signal``): ``live`` (default) reads the teacher's full logits and computes the KL exactly.
``topk`` trains from the top-k cache (spec §16.4): the cache stores ``logsumexp(z_t[O] / τ)`` per row, so the
teacher's probabilities over O of its top-``k`` tokens are exact, and the rest of O is one tail atom on both sides:
``Σ_{v ∈ top-k ∩ O} p_v log(p_v / q_v) + P log(P / Q)`` with P, Q the two distributions' mass on O outside those
tokens. By the log-sum inequality this is a **lower bound** of the KL, equal to it when the top-k covers O.

Where this differs from KDFlow: KDFlow pairs tokens greedily by growing marker-stripped strings (§16.2), which
never re-synchronises after the first character the two tokenizers write differently (a newline ``Ċ`` vs
``<0x0A>``, any non-ASCII character between byte-level BPE and SentencePiece), and which ignores whitespace
(``Ġthe`` pairs with ``the``); here positions come from byte spans (exact bytes, whitespace included), and O from
canonical bytes instead of the Ġ→▁ string swap (§16.1), so ``Ċ`` and ``<0x0A>`` are one shared token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.alignment import Alignment, gather_rows, token_mean
from methods.base import MethodConfig, TeacherRequest, param
from methods.batch import DistillBatch, TeacherOutputs
from methods.divergences import forward_kl
from methods.overlap import shared_vocabulary
from methods.registry import METHODS
from methods.spans import ByteAlignedMethod, TokenizerPair

NORMS: tuple[str, ...] = ("aligned", "all_targets")
SIGNALS: tuple[str, ...] = ("live", "topk")
CLAMP = 1 - 1e-7  # a known mass above this is read as 1 - 1e-7, so the tail atom's log stays finite


@dataclass(frozen=True)
class EtaKLConfig(MethodConfig):
    """eta-kl's hyper-parameters: KDFlow's defaults unless marked otherwise."""

    kd_ratio: float = param(0.5, "unit")  # r [code: distillation_args.py kd_ratio]
    temperature: float = param(1.0, "positive")  # τ [code: kd_temperature]
    norm: str = param("aligned", choices=NORMS)  # [suite, spec §16.4]; "all_targets" = KDFlow's Σ / N̄ [code]
    # [suite, spec §16.4] "live": exact KL; "topk": the top-k cache, a lower bound (docstring)
    signal: str = param("live", choices=SIGNALS)
    # [suite] teacher entries per row read with signal "topk" (at most the cache's top-k)
    k: int = param(100, "positive")


@METHODS.register("eta-kl")
class EtaKL(ByteAlignedMethod):
    """KL on the shared vocabulary at exactly aligned answer tokens (spec §16, §16.4)."""

    config_class = EtaKLConfig
    config: EtaKLConfig

    def teacher_request(self) -> TeacherRequest:
        if self.config.signal == "live":
            return TeacherRequest(needs="full_logits")
        return TeacherRequest(needs="topk_logits", topk=self.config.k, temperatures=(self.config.temperature,),
                              subsets=("shared",))

    def prepare_pair(self, pair: TokenizerPair) -> None:
        super().prepare_pair(pair)
        shared = shared_vocabulary(pair.student, pair.teacher, "canonical")
        self._shared = torch.tensor(shared.student, dtype=torch.long), torch.tensor(shared.teacher, dtype=torch.long)
        # teacher id -> its position in O (-1: not shared), for the top-k ids of signal "topk"
        self._teacher_slot = torch.full((pair.teacher.size,), -1, dtype=torch.long)
        self._teacher_slot[self._shared[1]] = torch.arange(len(shared))

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        cfg = self.config
        alignment = self.pair.group(batch).exact_alignment()
        student_ids = self._shared[0].to(student_logits.device)
        student_rows = gather_rows(student_logits, alignment.student_rows(batch.student))[..., student_ids]
        if cfg.signal == "topk":
            kd = token_mean(self._kl_lower_bound(alignment, student_rows, self.require_teacher(teacher)), alignment.mask)
        else:
            teacher_rows = alignment.teacher(self.teacher_logits(teacher))[..., self._shared[1].to(student_rows.device)]
            kd = forward_kl(teacher_rows, student_rows, alignment.mask, cfg.temperature)
        if cfg.norm == "all_targets":
            kd = kd * alignment.mask.sum() / batch.student.answer_token_mask().sum().clamp_min(1)
        return {
            "loss": (1 - cfg.kd_ratio) * ce + cfg.kd_ratio * kd,
            "ce": ce.detach(),
            "kd": kd.detach(),
            "aligned_share": alignment.coverage,
        }

    def _kl_lower_bound(self, alignment: Alignment, student_rows: Tensor, teacher: TeacherOutputs) -> Tensor:
        """``[B, P]`` the KL on O from the teacher's top-k and its log-mass on O, the rest of O as one atom (module
        docstring)."""
        tau = self.config.temperature
        logprobs, ids = (alignment.teacher(x) for x in teacher.topk(self.config.k, tau)[:2])
        on_shared = alignment.teacher(teacher.subset_log_mass("shared", self._shared[1], tau))
        table = self._teacher_slot.to(ids.device)
        slot = torch.where(ids < table.numel(), table[ids.clamp_max(table.numel() - 1)], -1)
        known = slot >= 0
        teacher_logp = logprobs - on_shared.unsqueeze(-1)  # renormalised over O
        student_logp = (student_rows.float() / tau).log_softmax(-1).gather(-1, slot.clamp_min(0))
        # Sums of masked probabilities, never a log-sum-exp over masked entries: no NaN can reach a gradient.
        head = torch.where(known, teacher_logp.exp() * (teacher_logp - student_logp), 0.0).sum(-1)
        rest = [torch.log1p(-torch.where(known, x.exp(), 0.0).sum(-1).clamp(max=CLAMP))
                for x in (teacher_logp, student_logp)]
        return head + rest[0].exp() * (rest[0] - rest[1])
