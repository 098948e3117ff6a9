"""Transport math shared by the sorted-probability and Sinkhorn losses (ULD, MultiLevelOT), written once.

Every function works on the last dimension(s) of batched tensors and computes in float32, whatever the input dtype:
bf16 sums over 50k-150k vocabulary entries and exp(-C/eps) kernels are not accurate enough (spec §12.4).

Memory rule (spec §14.2): only ``torch.topk`` is used to pick the k entries a loss keeps; nothing here sorts a
full vocabulary.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Floor for probabilities that are logged: a zero (an absent cached entry, an underflowed softmax) becomes a
# finite log whose gradient is cut by the clamp instead of producing inf/NaN.
TINY = 1e-30
# A finite "log 0" for masked Sinkhorn entries: -inf would give NaN in logsumexp's backward (0 * inf).
_MASKED_LOG = -1e30


def topk_logprobs(logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest log-probabilities of ``softmax(logits)`` (float32, descending) and their ids.

    ``torch.topk`` runs on the raw logits (softmax is monotone, so the ranking needs no normalisation), then one
    full-vocabulary logsumexp normalises the kept values. ``k`` is clipped to the vocabulary size.
    """
    values, ids = torch.topk(logits, min(k, logits.size(-1)), dim=-1)
    return values.float() - torch.logsumexp(logits.float(), dim=-1, keepdim=True), ids


def pad_last(x: Tensor, size: int) -> Tensor:
    """Zero-pad the last dimension to ``size`` (the "pad the smaller vocabulary with zeros" step of ULD)."""
    return torch.nn.functional.pad(x, (0, size - x.size(-1)))


def append_tail(probs: Tensor, mass: Tensor | float = 1.0) -> Tensor:
    """``[..., k] -> [..., k+1]``: the probability mass outside the ``k`` entries as one explicit last bin.

    With the tail bin a truncated distribution keeps its full mass without renormalising the kept entries. ``mass``
    (``[...]`` or a number) is the whole vector's mass: 1 for a distribution, less for GOLD's merged span vectors.
    The clamp only absorbs float rounding when the kept entries already hold (almost) everything.
    """
    mass = torch.as_tensor(mass, dtype=probs.dtype, device=probs.device)
    tail = (mass.unsqueeze(-1) if mass.dim() else mass) - probs.sum(-1, keepdim=True)
    return torch.cat([probs, tail.clamp_min(0.0)], dim=-1)


def rank_l1(x: Tensor, y: Tensor) -> Tensor:
    """``sum_i |x_i - y_i|`` between rank-matched vectors, the shorter one zero-padded to the common support."""
    size = max(x.size(-1), y.size(-1))
    return (pad_last(x.float(), size) - pad_last(y.float(), size)).abs().sum(-1)


def pairwise_l1(x: Tensor, y: Tensor) -> Tensor:
    """``[B, n, k] x [B, m, k] -> [B, n, m]`` cost matrix of L1 distances between all rows (``cdist``, p = 1)."""
    return torch.cdist(x.float(), y.float(), p=1)


def column_ranked_logprobs(logits: Tensor, mask: Tensor, k: int, *, over_batch: bool = False) -> Tensor:
    """Log-softmax of ``logits`` ``[B, A, V]`` at the ``k`` columns holding the most probability over valid rows.

    The ranking is MultiLevelOT's (spec §1.1.2, §1.2.3): sum each column's probabilities over the rows where
    ``mask`` is True (per sample, or over the whole batch when ``over_batch``), keep the ``k`` largest, in
    descending order, for every row. Returns ``[B, A, k]`` float32 (rows outside ``mask`` are not meaningful).
    Only the full-vocabulary logsumexp and the gathered columns carry gradients; the ranking does not.
    """
    log_norm = torch.logsumexp(logits.float(), dim=-1, keepdim=True)
    with torch.no_grad():
        probs = torch.exp(logits.float() - log_norm)
        sums = torch.bmm(mask.unsqueeze(1).float(), probs).squeeze(1)  # [B, V]
        if over_batch:
            sums = sums.sum(0, keepdim=True).expand_as(sums)
        columns = top_columns(sums, k)
    return logits.gather(-1, columns.unsqueeze(1).expand(-1, logits.size(1), -1)).float() - log_norm


def sparse_column_sums(probs: Tensor, ids: Tensor, mask: Tensor, vocab_size: int) -> Tensor:
    """Column sums ``[B, V]`` over valid rows of a top-k form (``probs``/``ids`` ``[B, A, K]``); entries a row did
    not store count as 0 in that row."""
    with torch.no_grad():
        kept = torch.where(mask.unsqueeze(-1), probs.float(), 0.0)
        sums = torch.zeros(probs.size(0), vocab_size, dtype=torch.float32, device=probs.device)
        return sums.scatter_add_(1, ids.flatten(1), kept.flatten(1))


def top_columns(column_sums: Tensor, k: int) -> Tensor:
    """Ids of the ``k`` columns with the largest sums, descending (``torch.topk``, not a full argsort)."""
    return torch.topk(column_sums, min(k, column_sums.size(-1)), dim=-1).indices


def gather_sparse(probs: Tensor, ids: Tensor, columns: Tensor) -> Tensor:
    """Values of a top-k form at the given ``columns`` ``[B, k]`` -> ``[B, A, k]``; 0 where a row did not store them."""
    match = ids.unsqueeze(-1) == columns[:, None, None, :]  # [B, A, K, k]
    return (probs.float().unsqueeze(-1) * match).sum(-2)


def log_sinkhorn(
    cost: Tensor, row_mask: Tensor, col_mask: Tensor, epsilon: float, iterations: int
) -> tuple[Tensor, Tensor]:
    """Entropic transport plan between the valid rows and columns of ``cost`` ``[B, n, m]``, in the log domain.

    Marginals are uniform over the VALID positions only (``1/n_valid`` and ``1/m_valid``); padded rows and
    columns get no mass, and whatever ``cost`` holds there is never read. Each of the fixed ``iterations``
    normalises rows, then columns (the paper's alternating normalisation, spec §1.1.6) through logsumexp, so
    ``exp(-C/epsilon)`` never underflows. Returns the plan ``[B, n, m]`` and the transport cost ``<P, C>`` ``[B]``.
    The plan is not detached: gradients flow through the iterations, as in the paper and the official code.
    """
    pair = row_mask.unsqueeze(-1) & col_mask.unsqueeze(-2)
    cost = torch.where(pair, cost.float(), 0.0)
    log_kernel = torch.where(pair, -cost / epsilon, _MASKED_LOG)
    log_a = _log_uniform(row_mask)
    log_b = _log_uniform(col_mask)
    u = torch.zeros_like(log_a)
    v = torch.zeros_like(log_b)
    for _ in range(iterations):
        u = log_a - torch.logsumexp(log_kernel + v.unsqueeze(-2), dim=-1)
        v = log_b - torch.logsumexp(log_kernel + u.unsqueeze(-1), dim=-2)
    # Masked explicitly: when one side has no valid position the masking constants cancel in u + v.
    plan = torch.where(pair, torch.exp(log_kernel + u.unsqueeze(-1) + v.unsqueeze(-2)), 0.0)
    return plan, (plan * cost).sum((-2, -1))


def _log_uniform(mask: Tensor) -> Tensor:
    count = mask.sum(-1, keepdim=True).clamp_min(1).float()
    return torch.where(mask, -count.log(), _MASKED_LOG)


def plain_sinkhorn(cost: Tensor, regularization: float, iterations: int, mask: Tensor | None = None) -> Tensor:
    """The MultiLevelOT code's plan (spec §1.2.6): ``K = exp(-C/reg)``, then ``iterations`` x (rows sum to 1,
    columns sum to 1), in the plain domain. ``mask`` zeroes excluded pairs before normalising.

    Guard (a deviation only where the original divides by zero and returns NaN): a row or column whose sum
    is 0 (underflowed kernel, or fully masked) is divided by a tiny number instead, so it stays 0.
    """
    plan = torch.exp(-cost.float() / regularization)
    if mask is not None:
        plan = plan * mask
    for _ in range(iterations):
        plan = plan / plan.sum(-1, keepdim=True).clamp_min(TINY)
        plan = plan / plan.sum(-2, keepdim=True).clamp_min(TINY)
    return plan
