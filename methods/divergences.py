"""Token-level divergences shared by the methods that compare full distributions over one vocabulary."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def forward_kl(target_logits: Tensor, student_logits: Tensor, mask: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean over masked rows of KL(softmax(target/τ) ‖ softmax(student/τ)), in fp32.

    ``target_logits`` and ``student_logits`` are ``[..., V]`` over the same vocabulary; ``mask`` is ``[...]``.
    Rows outside the mask contribute nothing (their values may be anything finite or not).
    """
    per_row = forward_kl_rows(target_logits, student_logits, temperature)
    mask = mask.bool()
    per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
    return per_row.sum() / mask.sum().clamp(min=1)


def forward_kl_rows(target_logits: Tensor, student_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``[..., V] -> [...]``: KL(softmax(target/τ) ‖ softmax(student/τ)) of every row, in fp32, no τ² factor."""
    target_logp = torch.log_softmax(target_logits.float() / temperature, dim=-1)
    student_logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    return (target_logp.exp() * (target_logp - student_logp)).sum(-1)


def generalized_jsd(target_log: Tensor, student_log: Tensor, beta: float) -> Tensor:
    """``[..., V] -> [...]``: the generalised Jensen-Shannon divergence of GKD/GOLD (methods-spec §8.6) from logs.

    ``JSD_β = β·KL(t ‖ m) + (1−β)·KL(s ‖ m)`` with the mixture ``m = β·t + (1−β)·s``, formed in log space; β = 0 is
    KL(t ‖ s) and β = 1 is KL(s ‖ t) (where the mixture formula would give 0). The vectors need not be normalised
    (GOLD compares sub-stochastic merged spans as they are).
    """
    target_log, student_log = target_log.float(), student_log.float()
    if beta == 0.0:
        return (target_log.exp() * (target_log - student_log)).sum(-1)
    if beta == 1.0:
        return (student_log.exp() * (student_log - target_log)).sum(-1)
    mixture = torch.logsumexp(
        torch.stack([target_log + math.log(beta), student_log + math.log(1 - beta)]), dim=0
    )
    return (beta * target_log.exp() * (target_log - mixture) + (1 - beta) * student_log.exp() * (student_log - mixture)).sum(-1)
