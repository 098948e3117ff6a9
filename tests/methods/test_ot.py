"""The shared transport math: top-k vectors, tail bin, temperature, rank-matched L1, ranking, Sinkhorn."""
from __future__ import annotations

import math

import pytest
import torch

from methods.ot import (
    append_tail,
    column_ranked_logprobs,
    gather_sparse,
    log_sinkhorn,
    pad_last,
    pairwise_l1,
    plain_sinkhorn,
    rank_l1,
    sparse_column_sums,
    temper,
    top_columns,
    topk_logprobs,
)


def log_of(*probs: float) -> torch.Tensor:
    return torch.tensor(probs).log()


def full_sort_uld(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Reference: sort both full vectors, zero-pad, L1."""
    return rank_l1(p.sort(-1, descending=True).values, q.sort(-1, descending=True).values)


def topk_tail_uld(p: torch.Tensor, q: torch.Tensor, k: int) -> torch.Tensor:
    size = min(k, max(p.size(-1), q.size(-1)))
    top = [pad_last(torch.topk(x, min(k, x.size(-1))).values, size) for x in (p, q)]
    return rank_l1(append_tail(top[0]), append_tail(top[1]))


# --- top-k vectors -------------------------------------------------------------------------------------------


def test_topk_logprobs_are_the_largest_normalised_entries():
    logprobs, ids = topk_logprobs(log_of(0.1, 0.2, 0.3, 0.4) + 7.0, 2)  # a shift must not matter
    assert ids.tolist() == [3, 2]
    assert torch.allclose(logprobs.exp(), torch.tensor([0.4, 0.3]))


def test_topk_logprobs_clip_k_and_compute_in_float32():
    logprobs, ids = topk_logprobs(log_of(0.25, 0.75).to(torch.bfloat16), 10)
    assert logprobs.dtype == torch.float32 and ids.tolist() == [1, 0]
    assert torch.allclose(logprobs.exp().sum(), torch.tensor(1.0), atol=1e-2)


def test_tail_bin_holds_the_missing_mass():
    assert torch.allclose(append_tail(torch.tensor([0.4, 0.3])), torch.tensor([0.4, 0.3, 0.3]))
    assert append_tail(torch.tensor([0.6, 0.4 + 1e-7]))[-1] == 0.0  # rounding is clamped, never negative


def test_rank_l1_zero_pads_the_shorter_vector():
    # |0.5-0.6| + |0.3-0.4| + |0.2-0|
    assert rank_l1(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.6, 0.4])).item() == pytest.approx(0.4)


def test_tail_bin_gives_a_lower_bound_of_full_sort_uld_equal_when_a_tail_is_empty():
    generator = torch.Generator().manual_seed(0)
    p = torch.softmax(3 * torch.randn(64, 40, generator=generator), -1)
    q = torch.softmax(3 * torch.randn(64, 25, generator=generator), -1)
    full = full_sort_uld(p, q)
    for k in (1, 5, 20):
        truncated = topk_tail_uld(p, q, k)
        assert (truncated <= full + 1e-6).all()
        without_tail = rank_l1(torch.topk(p, k).values, torch.topk(q, k).values)
        assert (without_tail <= truncated + 1e-6).all()  # the tail bin only tightens the bound
    assert torch.allclose(topk_tail_uld(p, q, 25), full, atol=1e-6)  # q's top-25 is all of q: tail 0


# --- temperature within a truncated support ------------------------------------------------------------------


def test_temper_keeps_the_mass_and_is_the_identity_at_one():
    p = torch.tensor([0.5, 0.25])
    assert temper(p, 1.0) is p
    root = [math.sqrt(0.5), math.sqrt(0.25)]
    expected = [0.75 * r / sum(root) for r in root]
    assert torch.allclose(temper(p, 2.0), torch.tensor(expected))


def test_temper_on_a_complete_support_is_the_tempered_softmax():
    logits = torch.tensor([1.0, -0.5, 2.0, 0.3])
    assert torch.allclose(temper(torch.softmax(logits, -1), 2.0), torch.softmax(logits / 2, -1), atol=1e-6)


def test_temper_keeps_zero_entries_finite_with_finite_gradients():
    p = torch.tensor([0.7, 0.0, 0.0], requires_grad=True)
    out = temper(p, 2.0)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(p.grad).all()
    assert out[1].item() < 1e-12


# --- costs and ranking ---------------------------------------------------------------------------------------


def test_pairwise_l1_by_hand():
    x = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])
    y = torch.tensor([[[0.0, 1.0], [0.5, 0.5], [0.25, 0.75]]])
    expected = [[1.0, 0.0, 0.5], [2.0, 1.0, 1.5]]
    assert torch.allclose(pairwise_l1(x, y), torch.tensor([expected]))


def test_column_ranking_by_hand_ignores_masked_rows():
    # Column sums over the two valid rows: [0.7, 0.9, 0.4] -> columns 1, 0. The masked row would favour column 2.
    rows = torch.stack([log_of(0.6, 0.3, 0.1), log_of(0.1, 0.6, 0.3), log_of(0.0001, 0.0001, 0.9998)]).unsqueeze(0)
    ranked = column_ranked_logprobs(rows, torch.tensor([[True, True, False]]), 2)
    assert torch.allclose(ranked[0, :2].exp(), torch.tensor([[0.3, 0.6], [0.6, 0.1]]))


def test_column_ranking_over_the_batch_shares_one_order():
    a = torch.stack([log_of(0.6, 0.3, 0.1)]).unsqueeze(0)
    b = torch.stack([log_of(0.1, 0.1, 0.8)]).unsqueeze(0)
    mask = torch.ones(2, 1, dtype=torch.bool)
    # Batch sums [0.7, 0.4, 0.9] -> columns 2, 0 for both sequences.
    ranked = column_ranked_logprobs(torch.cat([a, b]), mask, 2, over_batch=True).exp()
    assert torch.allclose(ranked[:, 0], torch.tensor([[0.1, 0.6], [0.8, 0.1]]))


def test_sparse_column_sums_and_gather_count_unstored_entries_as_zero():
    probs = torch.tensor([[[0.5, 0.2], [0.6, 0.3], [9.0, 9.0]]])  # third row masked
    ids = torch.tensor([[[4, 1], [1, 2], [0, 3]]])
    sums = sparse_column_sums(probs, ids, torch.tensor([[True, True, False]]), 5)
    assert torch.allclose(sums, torch.tensor([[0.0, 0.8, 0.3, 0.0, 0.5]]))
    columns = top_columns(sums, 2)
    assert columns.tolist() == [[1, 4]]
    assert torch.allclose(gather_sparse(probs, ids, columns)[0, :2], torch.tensor([[0.2, 0.5], [0.6, 0.0]]))


# --- Sinkhorn ------------------------------------------------------------------------------------------------


def all_true(*shape: int) -> torch.Tensor:
    return torch.ones(*shape, dtype=torch.bool)


def test_log_sinkhorn_two_by_two_by_hand():
    # Symmetric K = [[1, 1/e], [1/e, 1]]: one row normalisation already meets both marginals (1/2, 1/2).
    plan, cost = log_sinkhorn(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), all_true(1, 2), all_true(1, 2), 1.0, 3)
    diagonal = 1 / (2 * (1 + math.exp(-1)))
    assert torch.allclose(plan[0], torch.tensor([[diagonal, 0.5 - diagonal], [0.5 - diagonal, diagonal]]))
    assert cost.item() == pytest.approx(1 / (1 + math.e), rel=1e-6)


def test_log_sinkhorn_marginals_are_uniform_over_valid_positions():
    generator = torch.Generator().manual_seed(0)
    cost = torch.rand(2, 5, 7, generator=generator)
    rows = torch.tensor([[True] * 5, [True, True, True, False, False]])
    cols = torch.tensor([[True] * 6 + [False], [True] * 7])
    plan, _ = log_sinkhorn(cost, rows, cols, 0.1, 200)
    for b in range(2):
        n, m = int(rows[b].sum()), int(cols[b].sum())
        assert torch.allclose(plan[b].sum(1)[rows[b]], torch.full((n,), 1 / n), atol=1e-4)
        assert torch.allclose(plan[b].sum(0)[cols[b]], torch.full((m,), 1 / m), atol=1e-4)
        assert plan[b][~rows[b]].abs().sum() == 0 and plan[b][:, ~cols[b]].abs().sum() == 0


def test_log_sinkhorn_never_reads_masked_costs():
    generator = torch.Generator().manual_seed(1)
    cost = torch.rand(1, 3, 4, generator=generator, requires_grad=True)
    rows, cols = torch.tensor([[True, True, False]]), torch.tensor([[True, True, True, False]])
    garbage = cost.detach().clone()
    garbage[0, 2] = float("nan")
    garbage[0, :, 3] = float("inf")
    _, clean = log_sinkhorn(cost, rows, cols, 0.1, 20)
    _, dirty = log_sinkhorn(garbage, rows, cols, 0.1, 20)
    assert torch.equal(clean, dirty)
    clean.sum().backward()
    assert torch.isfinite(cost.grad).all() and cost.grad[0, 2].abs().max() == 0


def test_log_sinkhorn_empty_sides_give_zero_without_nan():
    cost = torch.rand(2, 3, 3, requires_grad=True)
    rows = torch.tensor([[False] * 3, [True] * 3])
    cols = torch.tensor([[True] * 3, [False] * 3])
    plan, total = log_sinkhorn(cost, rows, cols, 0.1, 20)
    total.sum().backward()
    assert plan.abs().max() == 0 and total.abs().max() == 0 and torch.isfinite(cost.grad).all()


def test_log_sinkhorn_survives_costs_that_underflow_the_plain_kernel():
    cost = torch.tensor([[[0.0, 1e3], [1e3, 5e2]]], requires_grad=True)
    plan, total = log_sinkhorn(cost, all_true(1, 2), all_true(1, 2), 0.1, 20)
    total.backward()
    assert torch.isfinite(plan).all() and torch.isfinite(total).all() and torch.isfinite(cost.grad).all()


def test_plain_sinkhorn_is_the_log_domain_plan_times_n_on_square_costs():
    # Rows/columns normalised to 1 (the official code) = marginals 1/n scaled by n, iteration by iteration.
    generator = torch.Generator().manual_seed(2)
    cost = torch.rand(2, 4, 4, generator=generator)
    for iterations in (1, 10):
        plain = plain_sinkhorn(cost, 0.1, iterations)
        plan, _ = log_sinkhorn(cost, all_true(2, 4), all_true(2, 4), 0.1, iterations)
        assert torch.allclose(plain, 4 * plan, atol=1e-5)


def test_plain_sinkhorn_guard_keeps_fully_masked_rows_at_zero():
    mask = torch.tensor([[[True, True], [False, False]]])
    plan = plain_sinkhorn(torch.rand(1, 2, 2), 0.1, 10, mask)
    assert torch.isfinite(plan).all() and plan[0, 1].abs().max() == 0
