"""Dual-space KD terms shared by DSKD with cross-model attention (``dskd-cma``, spec §5, §17.6) and DSKDv2 with
exact token alignment (``dskdv2-eta``, §17): projections between the two models' hidden spaces, read by the other
model's (detached) output head.

* **t2s** (teacher → student): teacher hidden states carried into the student's space and read by the student's head
  give ``t2s`` logits over V_s. ``t2s CE`` = CE(t2s, label) trains the projector only (the head is detached);
  ``t2s KD`` = KL(sg softmax(t2s/τ) ‖ softmax(z_s/τ)) on the rows where argmax t2s equals the label (DSKD's
  "accuracy mask"; DSKDv2's ``t2s_agreement`` 1.0 keeps the same rows).
* **s2t** (student → teacher): student hidden states carried into the teacher's space and read by the teacher's
  head give ``s2t`` logits over V_t; ``s2t KD`` = KL(softmax(z_t/τ) ‖ softmax(s2t/τ)), whose gradient reaches the
  student through its hidden states.

No τ² factor (neither code base has one). The terms are returned as sums with their counts; each method normalises
them as its code does.

Projector initialisation by pseudo-inverse (DSKDv2, §17.1): with W^O the heads' columns on the shared vocabulary O
(``[|O|, d]`` rows of a ``torch`` head weight), the map P from space A to space B with ``h·P·W_B^Oᵀ ≈ h·W_A^Oᵀ``
(the projected hidden state reproduces A's logits on O in B's head, by least squares) is
``P = W_A^Oᵀ · pinv(W_B^Oᵀ)``, ``[d_A, d_B]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import TeacherRequest
from methods.batch import DistillBatch, TeacherOutputs
from methods.divergences import forward_kl_rows
from methods.model_parts import ModelWeights


@dataclass(frozen=True)
class T2SSums:
    ce: Tensor  # [] summed t2s cross-entropy over the rows
    kd: Tensor  # [] summed t2s KD over the agreeing rows
    agreeing: Tensor  # [] number of rows whose t2s argmax is the label


def t2s_sums(t2s_logits: Tensor, student_logits: Tensor, labels: Tensor, mask: Tensor, temperature: float) -> T2SSums:
    """The t2s terms over the rows ``mask`` ``[...]`` (logits ``[..., V_s]``, labels ``[...]``; rows outside the mask
    are never read, whatever they hold)."""
    safe_labels = torch.where(mask, labels, torch.zeros_like(labels))
    ce = F.cross_entropy(t2s_logits.flatten(0, -2).float(), safe_labels.flatten(), reduction="none").view(mask.shape)
    agree = mask & (t2s_logits.argmax(-1) == labels)
    kd = forward_kl_rows(t2s_logits.detach(), student_logits, temperature)
    zero = torch.zeros((), device=ce.device)
    return T2SSums(torch.where(mask, ce, zero).sum(), torch.where(agree, kd, zero).sum(), agree.sum())


def s2t_kd_sum(s2t_logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """``Σ_mask KL(softmax(z_t/τ) ‖ softmax(s2t/τ))`` (the teacher's logits are detached here)."""
    kd = forward_kl_rows(teacher_logits.detach(), s2t_logits, temperature)
    return torch.where(mask, kd, torch.zeros((), device=kd.device)).sum()


def head_pinv(head_on_shared: Tensor) -> Tensor:
    """``pinv(W^Oᵀ)`` ``[|O|, d]`` of a head's rows on the shared vocabulary ``[|O|, d]``, in fp32."""
    return torch.linalg.pinv(head_on_shared.detach().float().T)


def logit_preserving_map(from_head_on_shared: Tensor, to_head_pinv: Tensor) -> Tensor:
    """``P = W_A^Oᵀ · pinv(W_B^Oᵀ)`` ``[d_A, d_B]`` (module docstring), from A's head rows on O and :func:`head_pinv`
    of B's."""
    return from_head_on_shared.detach().float().T @ to_head_pinv


def scaled_by_std(x: Tensor, mask: Tensor) -> Tensor:
    """``x / std(x)``, the standard deviation over every element of the rows in ``mask`` (DSKD's global std)."""
    return x / x[mask].float().std().clamp_min(1e-6).to(x.dtype)


@dataclass(frozen=True)
class DualSpaceSignals:
    """What a dual-space loss reads besides the student's logits (teacher tensors detached)."""

    student: ModelWeights
    teacher: ModelWeights
    teacher_logits: Tensor  # [B, A_t, V_t]
    teacher_hidden: Tensor  # [B, A_t, d_t] at the teacher's answer rows
    student_hidden: Tensor  # [B, A_s, d_s] at the student's answer rows


class DualSpace:
    """Mixed into both dual-space methods: they read hidden states on both sides, keep both models' weights from
    ``build_modules``, and log the same terms."""

    name: str
    student_hidden_states = True
    _weights: tuple[ModelWeights, ModelWeights] | None = None

    def teacher_request(self) -> TeacherRequest:
        return TeacherRequest(needs="hidden_states")

    def keep_weights(self, student: ModelWeights, teacher: ModelWeights | None) -> None:
        if teacher is None:
            raise ValueError(f"{self.name} needs the live teacher's embeddings and output head; got no teacher model")
        self._weights = student, teacher

    def signals(self, batch: DistillBatch, teacher: TeacherOutputs | None) -> DualSpaceSignals:
        if self._weights is None:
            raise RuntimeError(f"{self.name}.build_modules(...) must run before the loss")
        if teacher is None or teacher.logits is None or teacher.hidden_states is None or batch.student.hidden is None:
            raise ValueError(f"{self.name} needs the live teacher's logits and hidden states and the student's hidden "
                             "states (teacher_needs='hidden_states', student_hidden_states=True)")
        return DualSpaceSignals(*self._weights, teacher.logits.detach(),
                                batch.teacher.gather_answer_rows(teacher.hidden_states.detach()),
                                batch.student.gather_answer_rows(batch.student.hidden))

    @staticmethod
    def terms(ce: Tensor, kd_rate: float, t2s_ce: Tensor, t2s_kd: Tensor, s2t_kd: Tensor, t2s_accuracy: Tensor) -> dict[str, Tensor]:
        """``L = (1 − r)·CE + r·(t2s CE + t2s KD + s2t KD)`` and the logged terms (each already normalised)."""
        kd = t2s_ce + t2s_kd + s2t_kd
        logged = {"ce": ce, "kd": kd, "t2s_ce": t2s_ce, "t2s_kd": t2s_kd, "s2t_kd": s2t_kd, "t2s_accuracy": t2s_accuracy}
        return {"loss": (1 - kd_rate) * ce + kd_rate * kd, **{k: v.detach().float() for k, v in logged.items()}}
