"""xtoken against float64 references written from spec §18.3-18.5 (loops over hand chunks), a hand-built
projection, the identical-models case, the empty exact set, and the projection builder on the tiny pair."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.projection_matrix import Projection, build_projection
from methods.xtoken import XToken, XTokenConfig, projected_probs, projection_operator
from tests.methods.helpers import eos_vocab, make_batch, prepared, run_loss

D = torch.float64
S_VOCAB, T_VOCAB = eos_vocab(["He", "llo", " world", "x"]), eos_vocab(["Hello", " world", "x", "z"])
BATCH = make_batch([["He", "llo", " world"]], [["Hello", " world"]], student_vocab=5, teacher_vocab=5,
                   student_eos=True, teacher_eos=True, student_ids=S_VOCAB.vocab, teacher_ids=T_VOCAB.vocab)
# Chunks (student answer positions, teacher answer positions): He|llo ~ Hello, " world" ~ " world", EOS ~ EOS.
CHUNKS = [([0, 1], [0]), ([2], [1]), ([3], [2])]
# W by hand: student id -> {teacher id: weight}
W = {0: {0: 1.0}, 1: {1: 0.7, 3: 0.3}, 2: {1: 0.5, 4: 0.5}, 3: {2: 1.0}, 4: {3: 0.9, 4: 0.1}}


def projection(rows: dict[int, dict[int, float]], size: int) -> Projection:
    ids, weights = np.full((size, 4), -1, dtype=np.int64), np.zeros((size, 4), dtype=np.float32)
    for s, row in rows.items():
        for slot, (t, w) in enumerate(sorted(row.items(), key=lambda x: -x[1])):
            ids[s, slot], weights[s, slot] = t, w
    return Projection(ids, weights)


def xtoken(rows=W, student=S_VOCAB, teacher=T_VOCAB, **config) -> XToken:
    method = prepared(XToken(XTokenConfig(**config)), student, teacher)
    method.set_projection(projection(rows, student.size))
    return method


def rows(seed: int, n: int) -> torch.Tensor:
    return 2 * torch.randn(1, n, 5, generator=torch.Generator().manual_seed(seed))


def pkl_reference(s_rows, t_rows, tau: float, topk: int, reverse: bool = False) -> float:
    s_rows, t_rows = s_rows[0].to(D), t_rows[0].to(D)
    importance = t_rows[:2].max(0).values  # answer_mask: text tokens only
    keep = sorted(importance.argsort(descending=True)[:topk].tolist())
    total = 0.0
    for s_pos, t_pos in CHUNKS:
        projected = []
        for j in s_pos:
            p = (s_rows[j] / tau).softmax(-1)
            projected.append(torch.tensor([sum(float(p[s]) * W[s].get(t, 0.0) for s in W) for t in keep], dtype=D))
        s_c = sum(projected) / len(projected)
        s_log = (s_c / s_c.sum() + 1e-10).log()
        a_log = sum((t_rows[k][keep] / tau).log_softmax(-1) for k in t_pos) / len(t_pos)
        total += float((s_log.exp() * (s_log - a_log)).sum() if reverse else (a_log.exp() * (a_log - s_log)).sum())
    return tau ** 2 * total / len(CHUNKS)


@pytest.mark.parametrize("tau, topk, reverse", [(1.0, 8192, False), (2.0, 3, False), (1.0, 2, True)])
def test_pkl_equals_the_float64_reference(tau, topk, reverse):
    s_rows, t_rows = rows(0, 4), rows(1, 3)
    method = xtoken(temperature=tau, vocab_topk=topk, reverse_kl=reverse, dynamic_loss_scaling=False)
    out, _ = run_loss(method, BATCH, s_rows, t_rows, eos_rows=True, ce=2.0)
    expected = pkl_reference(s_rows, t_rows, tau, topk, reverse)
    assert float(out["kd"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(expected + 0.1 * 2.0, rel=1e-5)  # kl weight 1, ce scale 0.1
    assert float(out["chunk_share"]) == 1.0


def gold_reference(s_rows, t_rows, common: list[tuple[int, int]]) -> float:
    s_rows, t_rows = s_rows[0].to(D), t_rows[0].to(D)
    u_s = [i for i in range(5) if i not in {s for s, _ in common}]
    u_t = [i for i in range(5) if i not in {t for _, t in common}]
    total = 0.0
    for s_pos, t_pos in CHUNKS:
        b_s = sum(s_rows[j].log_softmax(-1) for j in s_pos) / len(s_pos)
        b_t = sum(t_rows[k].log_softmax(-1) for k in t_pos) / len(t_pos)
        total += sum(float(b_t[t].exp() * (b_t[t] - b_s[s])) for s, t in common)
        ranked_s = sorted(b_s[u_s].exp().tolist(), reverse=True)
        ranked_t = sorted(b_t[u_t].exp().tolist(), reverse=True)
        total += sum(abs(a - b) for a, b in zip(ranked_s, ranked_t))
    return total / len(CHUNKS)


@pytest.mark.parametrize("loss, common", [("gold", [(0, 0), (3, 2)]), ("hkl", [(0, 0), (1, 1), (3, 2), (4, 3)])])
def test_gold_and_hkl_equal_the_float64_reference(loss, common):
    """gold: rows of best weight 1.0 (EOS, " world"); H-KL: best weight >= 0.6 (also He -> Hello 0.7, x -> x 0.9)."""
    s_rows, t_rows = rows(2, 4), rows(3, 3)
    method = xtoken(loss=loss)
    assert list(zip(*(ids.tolist() for ids in method._common))) == common
    out, _ = run_loss(method, BATCH, s_rows, t_rows, eos_rows=True, ce=2.0)
    assert float(out["kd"]) == pytest.approx(gold_reference(s_rows, t_rows, common), rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(4.0, rel=1e-6)  # dynamic scaling: the KD term weighs as CE


def test_a_hand_built_3x3_projection():
    w = projection({0: {0: 0.5, 2: 0.5}, 1: {1: 1.0}, 2: {0: 0.25, 1: 0.75}}, 3)
    p = torch.tensor([[0.2, 0.3, 0.5]])
    expected = [0.2 * 0.5 + 0.5 * 0.25, 0.3 + 0.5 * 0.75, 0.2 * 0.5]
    assert projected_probs(p, projection_operator(w, 3, 3, p.device))[0].tolist() == pytest.approx(expected)


def test_identical_models_give_zero_kd():
    vocab = eos_vocab(["a", "b", "c", "d"])
    batch = make_batch([["a", "b", "c"]], [["a", "b", "c"]], student_vocab=5, teacher_vocab=5, student_eos=True,
                       teacher_eos=True, student_ids=vocab.vocab, teacher_ids=vocab.vocab)
    identity = {i: {i: 1.0} for i in range(5)}
    same = rows(4, 4)
    for loss in ("pkl", "gold"):
        out, _ = run_loss(xtoken(identity, vocab, vocab, loss=loss), batch, same, same, eos_rows=True)
        assert float(out["kd"]) == pytest.approx(0.0, abs=1e-6), loss


def test_student_gets_gradient_and_masks_mask():
    s_rows, t_rows = rows(5, 4), rows(6, 3)
    out, student = run_loss(xtoken(), BATCH, s_rows, t_rows, eos_rows=True)
    out["loss"].backward()
    assert student.grad.abs().sum() > 0
    answer_rows = BATCH.student.answer_rows[0, :4]
    outside = torch.ones(student.size(1), dtype=torch.bool)
    outside[answer_rows] = False
    assert student.grad[0, outside].abs().sum() == 0  # prompt and padding rows are never read


def test_an_empty_exact_set_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^xtoken loss 'gold': the projection \(wrapper recipe\) has no row of best "
                                         r"weight >= 1.0, so the common set is empty$"):
        xtoken({1: {1: 0.7, 3: 0.3}}, loss="gold")
    with pytest.raises(ValueError, match=r"^recipe='nightly': expected one of wrapper, one-step$"):
        XTokenConfig(recipe="nightly")


def test_the_wrapper_recipe_on_the_tiny_pair():
    """GPT-2 -> Qwen2 (tiny models, real tokenizers): exact rows for shared strings, rows sum to 1, at most 4 ids."""
    from benchmark.models.loading import build_tiny

    (_, student), (_, teacher) = build_tiny("gpt2", seed=2), build_tiny("qwen2", seed=1)
    w = build_projection(student, teacher, "wrapper", progress=False)
    assert w.ids.shape == (len(student), 4)
    filled = w.ids[:, 0] >= 0
    assert filled.mean() > 0.99
    assert np.allclose(w.weights[filled].sum(1), 1.0, atol=1e-5)
    the = student.convert_tokens_to_ids("Ġthe")
    assert w.ids[the, 0] == teacher.convert_tokens_to_ids("Ġthe") and w.weights[the, 0] == 1.0
    s, t = w.exact_pairs()
    assert len(s) > 40000 and len(set(t.tolist())) == len(t)
