"""dskd-cma — Dual-Space KD with cross-model attention (Zhang et al., EMNLP 2024; DSKD v1 @ 077337a; spec §5, §17.6).

On the answer rows of both sides (each row predicts its label, the final EOS included, as DSKD's shifted labels):

* query ``Q = P_q([e_s(input); e_s(target)])`` (2d_s → 2d_t), key ``K = [e_t(input); e_t(target)] / std``, value
  ``V = P_t2s(h_t / std + e_t(target) / std)`` (d_t → d_s); ``e`` the models' input embeddings (detached), ``h_t``
  the teacher's last hidden state, ``std`` one global standard deviation per tensor over the batch's answer rows.
* ``A = softmax(Q Kᵀ / √(2 d_t))`` over the teacher's answer rows (−1e5 elsewhere); ``t2s = (A V) · W_sᵀ`` with the
  student's head detached; ``s2t = (softmax(Aᵀ) · P_s2t(h_s)) · W_tᵀ`` with the teacher's head.
* ``kd = t2s CE + t2s KD + s2t KD`` (:mod:`methods.dual_space`; sums over tokens) divided by the micro-batch's
  student answer tokens, as CE is; ``L = (1 − r)·CE + r·kd``.

The projectors (``query``, ``t2s``, ``s2t``; ``torch.nn.Linear`` with bias) are the method's own parameters, trained
with the student at ``projector_lr``. Logged: ``t2s_ce``, ``t2s_kd``, ``s2t_kd`` (each per student token) and
``t2s_accuracy`` (share of student rows where argmax t2s is the label).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import Method, MethodConfig, param
from methods.batch import DistillBatch, TeacherOutputs, TokenView
from methods.dual_space import (
    DualSpace,
    s2t_kd_sum,
    scaled_by_std,
    t2s_sums,
)
from methods.model_parts import ModelWeights, OwnModules
from methods.registry import METHODS


@dataclass(frozen=True)
class DSKDCMAConfig(MethodConfig):
    """DSKD v1's hyper-parameters (its GPT-2 scripts) unless marked otherwise."""

    kd_rate: float = param(0.5, "unit")  # r [code: scripts --kd-rate 0.5]
    temperature: float = param(2.0, "positive")  # τ [code: scripts --kd-temp 2.0]
    projector_lr: float = param(1e-3, "positive")  # [code: --projector-lr 1e-3]
    mask_value: float = -1e5  # [code: attention mask value]


def answer_input_ids(view: TokenView) -> Tensor:
    """``[B, A]`` the input token at the row that predicts each answer token (the token before it; the last prompt
    token for the first), read from the sequence, so it holds whatever rows the view's logits are indexed by."""
    start = (view.labels != -100).int().argmax(1, keepdim=True)
    positions = (start + torch.arange(view.answer_ids.size(1), device=start.device) - 1)
    return view.input_ids.gather(1, positions.clamp(0, view.input_ids.size(1) - 1))


@METHODS.register("dskd-cma")
class DSKDCMA(DualSpace, Method):
    """Dual-space KD with cross-model attention between the two answers (DSKD v1; spec §5, §17.6)."""

    config_class = DSKDCMAConfig
    config: DSKDCMAConfig
    projectors: torch.nn.ModuleDict

    def build_modules(self, student: ModelWeights, teacher: ModelWeights | None) -> OwnModules:
        self.keep_weights(student, teacher)
        d_s, d_t = student.hidden_size, teacher.hidden_size  # type: ignore[union-attr]
        self.projectors = torch.nn.ModuleDict({
            "query": torch.nn.Linear(2 * d_s, 2 * d_t), "t2s": torch.nn.Linear(d_t, d_s), "s2t": torch.nn.Linear(d_s, d_t),
        }).to(student.head.device)
        return OwnModules(self.projectors, self.config.projector_lr)

    def loss(self, batch: DistillBatch, student_logits: Tensor, teacher: TeacherOutputs | None, ce: Tensor) -> dict[str, Tensor]:
        cfg, signals, proj = self.config, self.signals(batch, teacher), self.projectors
        s_view, t_view = batch.student, batch.teacher
        s_mask, t_mask = s_view.answer_token_mask(), t_view.answer_token_mask()
        e_s, e_t = signals.student.embeddings.detach(), signals.teacher.embeddings.detach()
        s_index = torch.cat([e_s[answer_input_ids(s_view)], e_s[s_view.answer_ids]], -1)
        t_target = e_t[t_view.answer_ids]
        t_index = torch.cat([e_t[answer_input_ids(t_view)], t_target], -1)
        query = proj["query"](s_index).float()
        key = scaled_by_std(t_index, t_mask).float()
        value = proj["t2s"](scaled_by_std(signals.teacher_hidden, t_mask) + scaled_by_std(t_target, t_mask)).float()
        scores = query @ key.transpose(1, 2) / math.sqrt(key.size(-1))
        both = s_mask.unsqueeze(2) & t_mask.unsqueeze(1)
        scores = scores + (~both).float() * cfg.mask_value
        t2s_logits = (scores.softmax(-1) @ value) @ signals.student.head.detach().float().T
        z_s = s_view.gather_answer_rows(student_logits)
        t2s = t2s_sums(t2s_logits, z_s, s_view.answer_ids, s_mask, cfg.temperature)
        s_values = proj["s2t"](signals.student_hidden).float()
        s2t_logits = (scores.transpose(1, 2).softmax(-1) @ s_values) @ signals.teacher.head.detach().float().T
        s2t = s2t_kd_sum(s2t_logits, signals.teacher_logits, t_mask, cfg.temperature)
        tokens = s_mask.sum().clamp_min(1)
        return self.terms(ce, cfg.kd_rate, t2s.ce / tokens, t2s.kd / tokens, s2t / tokens, t2s.agreeing / tokens)
