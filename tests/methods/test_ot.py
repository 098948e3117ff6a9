"""The shared transport math: top-k vectors, tail bin, rank-matched L1, ranking, Sinkhorn.

Every reference below is written from the formula on Python floats (float64), never from :mod:`methods.ot`.
"""
from __future__ import annotations

import math

import pytest
import torch

from methods.ot import (
    append_tail,
    column_ranked_logprobs,
    gather_sparse,
    log_sinkhorn,
    pairwise_l1,
    plain_sinkhorn,
    rank_l1,
    sparse_column_sums,
    top_columns,
    topk_logprobs,
)


def log_of(*probs: float) -> torch.Tensor:
    return torch.tensor(probs).log()


def sorted_l1(p: list[float], q: list[float]) -> float:
    """Reference ULD of two probability vectors: both sorted descending, the shorter zero-padded, L1."""
    p, q = sorted(p, reverse=True), sorted(q, reverse=True)
    size = max(len(p), len(q))
    p, q = p + [0.0] * (size - len(p)), q + [0.0] * (size - len(q))
    return sum(abs(a - b) for a, b in zip(p, q))


def topk_tail_l1(p: list[float], q: list[float], k: int, tail: bool = True) -> float:
    """Reference top-k ULD: each side's k largest values (zero-padded to a common k) plus, with ``tail``, one bin
    holding the rest of its mass."""
    p, q = sorted(p, reverse=True), sorted(q, reverse=True)
    size = min(k, max(len(p), len(q)))
    top_p, top_q = (x[:k] + [0.0] * (size - len(x[:k])) for x in (p, q))
    distance = sum(abs(a - b) for a, b in zip(top_p, top_q))
    return distance + abs(sum(p[k:]) - sum(q[k:])) if tail else distance


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


def test_top_k_with_tail_is_a_lower_bound_of_full_sort_l1_equal_when_a_tail_is_empty():
    generator = torch.Generator().manual_seed(0)
    p = torch.softmax(3 * torch.randn(64, 40, generator=generator, dtype=torch.float64), -1)
    q = torch.softmax(3 * torch.randn(64, 25, generator=generator, dtype=torch.float64), -1)
    rows = list(zip(p.tolist(), q.tolist()))
    full = [sorted_l1(a, b) for a, b in rows]
    for k in (1, 5, 20):
        top_p, top_q = (torch.topk(x.float(), k).values for x in (p, q))
        with_tail = rank_l1(append_tail(top_p), append_tail(top_q)).tolist()
        without_tail = rank_l1(top_p, top_q).tolist()
        assert with_tail == pytest.approx([topk_tail_l1(a, b, k) for a, b in rows], abs=1e-5)
        assert without_tail == pytest.approx([topk_tail_l1(a, b, k, tail=False) for a, b in rows], abs=1e-5)
        assert all(x <= y + 1e-6 for x, y in zip(with_tail, full))  # a lower bound...
        assert all(x <= y + 1e-6 for x, y in zip(without_tail, with_tail))  # ...that the tail bin tightens
        assert max(y - x for x, y in zip(with_tail, full)) > 1e-3  # ...and not a tight one
    # q's top-25 is all of q (tail 0): then the bound is exact.
    assert [topk_tail_l1(a, b, 25) for a, b in rows] == pytest.approx(full, abs=1e-12)


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


def scaling_sinkhorn(cost: list[list[float]], epsilon: float, iterations: int, a: float, b: float) -> list[list[float]]:
    """Reference: Sinkhorn's matrix scaling of K = exp(-C / epsilon) with marginal ``a`` on every row and ``b`` on
    every column; each iteration scales the rows to ``a``, then the columns to ``b``."""
    plan = [[math.exp(-c / epsilon) for c in row] for row in cost]
    for _ in range(iterations):
        plan = [[x * a / sum(row) for x in row] for row in plan]
        columns = [sum(row[j] for row in plan) for j in range(len(plan[0]))]
        plan = [[x * b / columns[j] for j, x in enumerate(row)] for row in plan]
    return plan


@pytest.mark.parametrize("iterations", [1, 10])
def test_both_sinkhorns_follow_the_scaling_iterations(iterations):
    generator = torch.Generator().manual_seed(2)
    cost = torch.rand(2, 4, 3, generator=generator)
    plain = plain_sinkhorn(cost, 0.1, iterations)  # the official code: rows, then columns, normalised to 1
    plan, total = log_sinkhorn(cost, all_true(2, 4), all_true(2, 3), 0.1, iterations)  # marginals 1/n, 1/m
    for b in range(2):
        rows = cost[b].tolist()
        ones = scaling_sinkhorn(rows, 0.1, iterations, 1.0, 1.0)
        uniform = scaling_sinkhorn(rows, 0.1, iterations, 1 / 4, 1 / 3)
        assert plain[b].tolist() == [pytest.approx(row, abs=1e-5) for row in ones]
        assert plan[b].tolist() == [pytest.approx(row, abs=1e-6) for row in uniform]
        expected = sum(p * c for prow, crow in zip(uniform, rows) for p, c in zip(prow, crow))
        assert total[b].item() == pytest.approx(expected, rel=1e-5)


def test_plain_sinkhorn_guard_keeps_fully_masked_rows_at_zero():
    mask = torch.tensor([[[True, True], [False, False]]])
    plan = plain_sinkhorn(torch.rand(1, 2, 2), 0.1, 10, mask)
    assert torch.isfinite(plan).all() and plan[0, 1].abs().max() == 0
