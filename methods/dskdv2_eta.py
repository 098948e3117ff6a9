"""dskdv2-eta — DSKDv2 with exact token alignment (Zhang et al., arXiv 2504.11426; DSKDv2 @ 5025279 and KDFlow's
2026 ``dskd.py`` @ 3a7a21a; spec §17, §17.5, §17.6).

* Pairs: the exact groups of :mod:`methods.spans` (one token per side writing the same bytes, or the same special
  role; spec §16.4) instead of the greedy marker-stripped string walk (§16.2).
* At a pair (teacher row k, student row j): ŷ = argmax z_t(k) is mapped to the student by canonical bytes (the shared
  vocabulary O of :func:`methods.overlap.shared_vocabulary`, specials by role); a pair whose ŷ has no student token
  is dropped (§17.5, as KDFlow does). ``aligned_share`` = used pairs / student answer tokens.
* t2s: ``t2s(j) = P_t2s(h_t(k)) · W_sᵀ`` (student head detached), P_t2s a bias-free linear map initialised by
  pseudo-inverse on O (§17.1) and trained at ``projector_lr``; t2s CE on ŷ over the used pairs, t2s KD over those
  whose t2s argmax is ŷ (:mod:`methods.dual_space`).
* s2t: ``P_s2t = W_s^Oᵀ · pinv(W_t^Oᵀ)`` from the current student head (detached) each step, no parameter;
  ``s2t(k) = h_s(j) · P_s2t · W_tᵀ``; KL(teacher ‖ s2t) over the used pairs.
* ``kd = t2s CE / n_used + t2s KD / n_agreeing + s2t KD / n_used``; ``L = (1 − r)·CE + r·kd``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.alignment import gather_rows
from methods.base import MethodConfig, param
from methods.batch import DistillBatch, TeacherOutputs
from methods.dual_space import (
    DualSpace,
    head_pinv,
    logit_preserving_map,
    s2t_kd_sum,
    t2s_sums,
)
from methods.model_parts import ModelWeights, OwnModules
from methods.overlap import shared_vocabulary
from methods.registry import METHODS
from methods.spans import ByteAlignedMethod, TokenizerPair


@dataclass(frozen=True)
class DSKDv2ETAConfig(MethodConfig):
    """DSKDv2's ETA script (``run_dskdv2_eta.sh``) unless marked otherwise."""

    kd_rate: float = param(0.5, "unit")  # κ [code: --kd-rate 0.5]
    temperature: float = param(2.0, "positive")  # τ [code: run_dskdv2_eta.sh --kd-temp 2.0]
    projector_lr: float = param(5e-4, "positive")  # [code: run_dskdv2_eta.sh --projector-lr 5e-4]


@METHODS.register("dskdv2-eta")
class DSKDv2ETA(DualSpace, ByteAlignedMethod):
    """Dual-space KD on exactly aligned answer tokens with pseudo-inverse projectors (DSKDv2; spec §17)."""

    config_class = DSKDv2ETAConfig
    config: DSKDv2ETAConfig
    projectors: torch.nn.ModuleDict

    def prepare_pair(self, pair: TokenizerPair) -> None:
        super().prepare_pair(pair)
        shared = shared_vocabulary(pair.student, pair.teacher, "canonical")
        if not len(shared):
            raise ValueError(f"{self.name}: the two vocabularies share no token, so the projectors cannot be initialised")
        self._shared = torch.tensor(shared.student), torch.tensor(shared.teacher)
        self._to_student = torch.full((pair.teacher.size,), -1, dtype=torch.long)  # teacher id -> student id or -1
        self._to_student[self._shared[1]] = self._shared[0]

    def build_modules(self, student: ModelWeights, teacher: ModelWeights | None) -> OwnModules:
        self.keep_weights(student, teacher)
        assert teacher is not None
        device = student.head.device
        s_ids, t_ids = (ids.to(device) for ids in self._shared)
        self._teacher_pinv = head_pinv(teacher.head.detach().to(device)[t_ids])
        t2s = torch.nn.Linear(teacher.hidden_size, student.hidden_size, bias=False, device=device)
        with torch.no_grad():
            t2s.weight.copy_(logit_preserving_map(teacher.head.to(device)[t_ids], head_pinv(student.head[s_ids])).T)
        self.projectors = torch.nn.ModuleDict({"t2s": t2s})
        return OwnModules(self.projectors, self.config.projector_lr)

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        cfg, signals = self.config, self.signals(batch, teacher)
        alignment = self.pair.group(batch).exact_alignment()
        z_t = alignment.teacher(signals.teacher_logits)  # [B, P, V_t]
        table = self._to_student.to(z_t.device)
        predicted = z_t.argmax(-1)  # head columns past the tokenizer's ids have no token
        label = torch.where(predicted < table.numel(), table[predicted.clamp_max(table.numel() - 1)], -1)
        used = alignment.mask & (label >= 0)
        h_t, h_s = alignment.teacher(signals.teacher_hidden), alignment.student(signals.student_hidden)
        z_s = gather_rows(student_logits, alignment.student_rows(batch.student))
        s_head = signals.student.head.detach().float()
        t2s = t2s_sums(self.projectors["t2s"](h_t).float() @ s_head.T, z_s, label, used, cfg.temperature)
        self._teacher_pinv = self._teacher_pinv.to(s_head.device)  # built where the student was before training
        p_s2t = logit_preserving_map(s_head[self._shared[0].to(s_head.device)], self._teacher_pinv)
        s2t = s2t_kd_sum((h_s.float() @ p_s2t) @ signals.teacher.head.detach().float().T, z_t, used, cfg.temperature)
        n_used, agreeing = used.sum().clamp_min(1), t2s.agreeing.clamp_min(1)
        terms = self.terms(ce, cfg.kd_rate, t2s.ce / n_used, t2s.kd / agreeing, s2t / n_used, t2s.agreeing / n_used)
        terms["aligned_share"] = (used.sum() / batch.student.answer_token_mask().sum().clamp_min(1)).float()
        return terms
