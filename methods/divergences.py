"""Token-level divergences shared by the methods that compare full distributions over one vocabulary."""
from __future__ import annotations

import torch
from torch import Tensor


def forward_kl(target_logits: Tensor, student_logits: Tensor, mask: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean over masked rows of KL(softmax(target/τ) ‖ softmax(student/τ)), in fp32.

    ``target_logits`` and ``student_logits`` are ``[..., V]`` over the same vocabulary; ``mask`` is ``[...]``.
    Rows outside the mask contribute nothing (their values may be anything finite or not).
    """
    target_logp = torch.log_softmax(target_logits.float() / temperature, dim=-1)
    student_logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    per_row = (target_logp.exp() * (target_logp - student_logp)).sum(-1)
    mask = mask.bool()
    per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
    return per_row.sum() / mask.sum().clamp(min=1)
