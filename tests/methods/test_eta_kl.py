"""eta-kl: KL on the shared vocabulary at a hand alignment, canonical matching, normalisations, properties."""
from __future__ import annotations

import math

import pytest
import torch

from methods.batch import TeacherOutputs
from methods.eta_kl import EtaKL, EtaKLConfig
from methods.token_text import VocabInfo
from tests.methods.helpers import (
    answer_logits,
    eos_vocab,
    logits_of,
    make_batch,
    place_rows,
    prepared,
    run_loss,
)


def eta_kl(student: VocabInfo, teacher: VocabInfo, **config) -> EtaKL:
    return prepared(EtaKL(EtaKLConfig(**config)), student, teacher)


def kl(p: list[float], q: list[float]) -> float:
    p_sum, q_sum = sum(p), sum(q)
    return sum(a / p_sum * math.log((a / p_sum) / (b / q_sum)) for a, b in zip(p, q))


# Student He|llo|" world"|EOS, teacher Hello|" world"|EOS: " world" and the EOS pair are aligned exactly.
S_VOCAB, T_VOCAB = eos_vocab(["He", "llo", " world", "x"]), eos_vocab(["Hello", " world", "x", "z"])
BATCH = make_batch([["He", "llo", " world"]], [["Hello", " world"]], student_vocab=5, teacher_vocab=5,
                   student_eos=True, teacher_eos=True, student_ids=S_VOCAB.vocab, teacher_ids=T_VOCAB.vocab)
#                       eos   He   llo  world  x
S_ROWS = logits_of([[0.2, 0.2, 0.2, 0.2, 0.2],
                    [0.2, 0.2, 0.2, 0.2, 0.2],
                    [0.2, 0.1, 0.1, 0.3, 0.3],  # predicts " world"
                    [0.6, 0.1, 0.1, 0.1, 0.1]])  # predicts EOS
#                       eos  Hello world  x    z
T_ROWS = logits_of([[0.2, 0.2, 0.2, 0.2, 0.2],
                    [0.1, 0.1, 0.4, 0.2, 0.2],  # predicts " world"
                    [0.5, 0.1, 0.2, 0.1, 0.1]])  # predicts EOS
# On the shared vocabulary O = (" world", "x", EOS), renormalised:
KL_WORLD = kl([0.4, 0.2, 0.1], [0.3, 0.3, 0.2])
KL_EOS = kl([0.2, 0.1, 0.5], [0.1, 0.1, 0.6])


def test_shared_vocabulary_is_canonical_text_plus_the_eos_pair():
    method = eta_kl(S_VOCAB, T_VOCAB)
    assert method._shared[0].tolist() == [3, 4, 0] and method._shared[1].tolist() == [2, 3, 0]


@pytest.mark.parametrize("norm, expected_kd", [
    ("aligned", (KL_WORLD + KL_EOS) / 2),
    ("all_targets", (KL_WORLD + KL_EOS) / 4),  # KDFlow: the sum over the 4 student answer tokens (EOS included)
])
def test_kl_on_the_shared_vocabulary_at_a_hand_alignment(norm, expected_kd):
    out, _ = run_loss(eta_kl(S_VOCAB, T_VOCAB, norm=norm), BATCH, S_ROWS, T_ROWS, eos_rows=True, ce=2.0)
    assert out["kd"].item() == pytest.approx(expected_kd, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.5 * 2.0 + 0.5 * expected_kd, rel=1e-5)
    assert out["aligned_share"].item() == pytest.approx(2 / 4)


def test_canonical_bytes_align_byte_level_with_sentencepiece():
    student = VocabInfo({"<|endoftext|>": 0, "Ġhi": 1, "Ċ": 2, "Ġ": 3, "3": 4}, byte_level=True,
                        special_ids=frozenset({0}), roles={"eos_token": 0})
    teacher = VocabInfo({"</s>": 0, "▁hi": 1, "<0x0A>": 2, "▁": 3, "3": 4}, byte_level=False,
                        special_ids=frozenset({0}), roles={"eos_token": 0})
    method = eta_kl(student, teacher)
    assert sorted(zip(method._shared[0].tolist(), method._shared[1].tolist())) == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]
    batch = make_batch([["x", "y"]], [["x", "y"]], student_vocab=5, teacher_vocab=5, student_eos=False,
                       teacher_eos=False)
    batch.answers[0] = "hi\n"
    batch.student.answer_tokens[0], batch.teacher.answer_tokens[0] = ["Ġhi", "Ċ"], ["▁hi", "<0x0A>"]
    alignment = method.pair.group(batch).exact_alignment()
    assert alignment.mask.tolist() == [[True, True]] and alignment.teacher_index.tolist() == [[0, 1]]
    # Two seam tokens ("Ġ" before a digit in Qwen2, "▁" in Llama-2) write the same space: an exact pair.
    batch.answers[0] = "3"
    batch.student.answer_tokens[0], batch.teacher.answer_tokens[0] = ["Ġ", "3"], ["▁", "3"]
    assert method.pair.group(batch).exact_alignment().mask.tolist() == [[True, True]]
    # Different seams ("Ġ3" after a plain prompt, "3" after a chat template): one group, but not the same token.
    batch.answers[0] = "33"
    batch.student.answer_tokens[0], batch.teacher.answer_tokens[0] = ["Ġ3", "3"], ["3", "3"]
    alignment = method.pair.group(batch).exact_alignment()
    assert alignment.mask.tolist() == [[True]] and alignment.student_index.tolist() == [[1]]  # the second "3"


def test_topk_signal_by_hand_is_a_lower_bound_of_the_kl():
    #                          eos  Hello world  x     z
    teacher_rows = logits_of([[0.2, 0.2, 0.2, 0.2, 0.2],
                              [0.1, 0.1, 0.4, 0.25, 0.15],  # predicts " world"; top-2 " world", "x"
                              [0.5, 0.1, 0.2, 0.1, 0.1]])  # predicts EOS; top-2 EOS, " world"
    method = eta_kl(S_VOCAB, T_VOCAB, signal="topk", k=2)
    request = method.teacher_request()
    assert (request.needs, request.topk, request.subsets) == ("topk_logits", 2, ("shared",))
    out, _ = run_loss(method, BATCH, S_ROWS, teacher_rows, eos_rows=True, cache_k=2,
                      subsets={"shared": method._shared[1]})
    # On O = (" world", "x", EOS): the two known entries, then the rest of O (EOS, then "x") as one atom.
    p, q = [0.4 / 0.75, 0.25 / 0.75, 0.1 / 0.75], [0.3 / 0.8, 0.3 / 0.8, 0.2 / 0.8]
    world = sum(a * math.log(a / b) for a, b in zip(p, q))
    p, q = [0.5 / 0.8, 0.2 / 0.8, 0.1 / 0.8], [0.6 / 0.8, 0.1 / 0.8, 0.1 / 0.8]
    eos = sum(a * math.log(a / b) for a, b in zip(p, q))
    assert out["kd"].item() == pytest.approx((world + eos) / 2, rel=1e-5)
    # Here the rest of O is one token on each row, so the bound is the KL.
    exact, _ = run_loss(eta_kl(S_VOCAB, T_VOCAB), BATCH, S_ROWS, teacher_rows, eos_rows=True)
    assert out["kd"].item() == pytest.approx(exact["kd"].item(), rel=1e-5)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_topk_signal_never_exceeds_the_exact_kl_and_meets_it_at_full_k(k):
    student, teacher = answer_logits(BATCH.student, 5, seed=11), answer_logits(BATCH.teacher, 5, seed=12)
    live, _ = run_loss(eta_kl(S_VOCAB, T_VOCAB), BATCH, student, teacher, eos_rows=True)
    method = eta_kl(S_VOCAB, T_VOCAB, signal="topk", k=k)
    bound, _ = run_loss(method, BATCH, student, teacher, eos_rows=True, cache_k=k, subsets={"shared": method._shared[1]})
    assert bound["kd"].item() <= live["kd"].item() + 1e-6
    if k == 5:  # the whole teacher vocabulary: the bound is the KL
        assert bound["kd"].item() == pytest.approx(live["kd"].item(), rel=1e-5)
    # The same method reads a live teacher through the same top-k: the same bound.
    through_live, _ = run_loss(method, BATCH, student, teacher, eos_rows=True)
    assert through_live["kd"].item() == pytest.approx(bound["kd"].item(), rel=1e-5)


def test_zero_when_the_distributions_agree_on_the_shared_vocabulary():
    # Same logits on O up to a constant; very different logits outside O: renormalised over O, they agree.
    student = torch.randn(1, 4, 5)
    teacher = torch.randn(1, 3, 5)
    teacher[0, 1, [2, 3, 0]] = student[0, 2, [3, 4, 0]] + 1.7
    teacher[0, 2, [2, 3, 0]] = student[0, 3, [3, 4, 0]] - 3.0
    out, _ = run_loss(eta_kl(S_VOCAB, T_VOCAB), BATCH, student, teacher, eos_rows=True)
    assert out["kd"].item() == pytest.approx(0.0, abs=1e-6)


def test_gradients_reach_the_student_and_never_the_teacher():
    student = place_rows(BATCH.student, answer_logits(BATCH.student, 5, seed=1), eos_rows=True).requires_grad_()
    teacher = answer_logits(BATCH.teacher, 5, seed=2).requires_grad_()
    out = eta_kl(S_VOCAB, T_VOCAB).loss(BATCH, student, TeacherOutputs(BATCH.teacher.answer_mask, logits=teacher),
                                        torch.tensor(0.0))
    out["loss"].backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0
    # Only the rows of aligned tokens (" world", EOS) and only the shared columns (" world", "x", EOS) get gradient.
    rows = BATCH.student.answer_rows[0]
    touched = (student.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert touched == [int(rows[2]), int(rows[3])]
    assert (student.grad[0][:, [1, 2]] == 0).all()


def test_a_batch_without_aligned_tokens_gives_zero():
    batch = make_batch([["ab"]], [["a", "b"]], student_vocab=5, teacher_vocab=5, student_eos=True, teacher_eos=False)
    out, _ = run_loss(eta_kl(eos_vocab(["ab"]), eos_vocab(["a", "b"])), batch, torch.randn(1, 2, 5), torch.randn(1, 2, 5),
                      eos_rows=True)
    assert out["kd"].item() == 0.0 and out["aligned_share"].item() == 0.0


@pytest.mark.parametrize("values, message", [
    ({"kd_ratio": 1.5}, r"^kd_ratio=1.5: expected a finite number in \[0, 1\]$"),
    ({"temperature": -1.0}, r"^temperature=-1.0: expected a finite number > 0$"),
    ({"norm": "sum"}, "^norm='sum': expected one of aligned, all_targets$"),
    ({"signal": "cache"}, "^signal='cache': expected one of live, topk$"),
    ({"k": 0}, "^k=0: expected an integer > 0 and <= 2147483647$"),
])
def test_bad_config_is_a_one_line_error(values, message):
    with pytest.raises(ValueError, match=message):
        EtaKLConfig.from_dict(values)
