"""ALM: a three-chunk example by hand, append_space, dropped chunks, the binarised CE's properties, stability."""
from __future__ import annotations

import math

import pytest
import torch

from methods.alm import ALM, ALMConfig, binary_ce, boundary_ids, log1mexp
from methods.batch import TeacherOutputs
from methods.token_text import VocabInfo
from tests.methods.helpers import (
    eos_vocab,
    logits_of,
    make_batch,
    place_rows,
    prepared,
    run_loss,
)


def alm(student: VocabInfo, teacher: VocabInfo, **config) -> ALM:
    return prepared(ALM(ALMConfig(**config)), student, teacher)


# "abc d": student a|b|c|" d", teacher ab|c|" d" -> chunks "ab", "c", " d" (+ the EOS pair).
S_VOCAB, T_VOCAB = eos_vocab(["a", "b", "c", " d", "x"]), eos_vocab(["ab", "c", " d", "y"])
S_ROWS = logits_of([
    [0.10, 0.50, 0.10, 0.10, 0.10, 0.10],  # predicts "a" (.5)
    [0.10, 0.10, 0.40, 0.20, 0.10, 0.10],  # predicts "b" (.4)
    [0.02, 0.01, 0.01, 0.90, 0.04, 0.02],  # predicts "c" (.9); boundary mass (EOS + " d") .06
    [0.10, 0.10, 0.05, 0.05, 0.60, 0.10],  # predicts " d" (.6); boundary .7
    [0.70, 0.05, 0.05, 0.05, 0.10, 0.05],  # predicts EOS (.7); boundary .8
])
T_ROWS = logits_of([
    [0.10, 0.30, 0.20, 0.20, 0.20],  # predicts "ab" (.3)
    [0.05, 0.05, 0.80, 0.05, 0.05],  # predicts "c" (.8); boundary .1
    [0.10, 0.10, 0.10, 0.50, 0.20],  # predicts " d" (.5); boundary .6
    [0.60, 0.10, 0.10, 0.10, 0.10],  # predicts EOS (.6); boundary .7
])


def three_chunks(teacher_eos: bool = True):
    return make_batch([["a", "b", "c", " d"]], [["ab", "c", " d"]], student_vocab=6, teacher_vocab=5,
                      student_eos=True, teacher_eos=teacher_eos, student_ids=S_VOCAB.vocab, teacher_ids=T_VOCAB.vocab)


def bce(p_teacher: float, p_student: float, tau: float = 100.0, eps: float = 1e-6) -> float:
    """§6.3 from the two chunk probabilities, in float64: -[q_T log q_S + (1 - q_T) log(1 - q_S)]."""
    a, b = math.log(p_teacher) / tau - eps, math.log(p_student) / tau - eps
    return -(math.exp(a) * b + (1 - math.exp(a)) * math.log(1 - math.exp(b)))


def test_three_chunks_by_hand_without_append_space():
    out, _ = run_loss(alm(S_VOCAB, T_VOCAB, append_space=False, specials=False), three_chunks(), S_ROWS, T_ROWS,
                      eos_rows=True)
    # chunk likelihoods: "ab" S .5 x .4 = .2, T .3; "c" S .9, T .8; " d" S .6, T .5
    expected = (bce(0.3, 0.2) + bce(0.8, 0.9) + bce(0.5, 0.6)) / 3
    assert out["alm"].item() == pytest.approx(expected, rel=1e-4)
    assert out["byte_coverage"].item() == 1.0


def test_three_chunks_by_hand_with_append_space_and_the_eos_chunk():
    out, _ = run_loss(alm(S_VOCAB, T_VOCAB), three_chunks(), S_ROWS, T_ROWS, eos_rows=True)
    # Each text chunk also pays for "the next token starts a word": the boundary mass of the following row.
    expected = (bce(0.3 * 0.1, 0.2 * 0.06) + bce(0.8 * 0.6, 0.9 * 0.7) + bce(0.5 * 0.7, 0.6 * 0.8) + bce(0.6, 0.7)) / 4
    assert out["alm"].item() == pytest.approx(expected, rel=1e-4)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-4)  # ce_weight 0 [code]


def test_a_chunk_without_a_next_row_is_dropped_with_append_space():
    # The teacher answer was cut (no EOS): its last chunk " d" has no row after it, and there is no EOS pair.
    batch = three_chunks(teacher_eos=False)
    out, _ = run_loss(alm(S_VOCAB, T_VOCAB), batch, S_ROWS, T_ROWS[:, :3], eos_rows=True)
    assert out["alm"].item() == pytest.approx((bce(0.3 * 0.1, 0.2 * 0.06) + bce(0.8 * 0.6, 0.9 * 0.7)) / 2, rel=1e-4)
    assert out["byte_coverage"].item() == pytest.approx(3 / 5)
    naive, _ = run_loss(alm(S_VOCAB, T_VOCAB, append_space=False), batch, S_ROWS, T_ROWS[:, :3], eos_rows=True)
    assert naive["byte_coverage"].item() == 1.0


def test_one_chunk_by_hand_at_temperature_one():
    # -[.8 ln .9 + .2 ln .1] = .0843 + .4605
    value = binary_ce(torch.tensor(math.log(0.8)), torch.tensor(math.log(0.9)), 1.0, 1e-12)
    assert value.item() == pytest.approx(0.8 * -math.log(0.9) + 0.2 * -math.log(0.1), rel=1e-5)


def test_boundary_tokens_are_space_tab_newline_or_special():
    info = VocabInfo({"<s>": 0, "▁the": 1, "the": 2, "<0x0A>": 3, "<0x09>": 4, "▁": 5, "x▁": 6}, byte_level=False,
                     special_ids=frozenset({0}), roles={"bos_token": 0})
    assert boundary_ids(info).tolist() == [0, 1, 3, 4, 5]
    byte_level = VocabInfo({"Ġthe": 0, "Ċ": 1, "ĉx": 2, "the": 3}, byte_level=True)
    assert boundary_ids(byte_level).tolist() == [0, 1, 2]


@pytest.mark.parametrize("config", [{}, {"append_space": False}, {"specials": False}])
def test_the_cache_serves_alm_exactly(config):
    """From the cached form (top-1 only, plus each row's own-token logit and boundary log-normaliser, EOS row
    included) the loss equals the live teacher's; without the declared values the cache is a one-line error."""
    method = alm(S_VOCAB, T_VOCAB, **config)
    request = method.teacher_request()
    assert request.needs == "topk_logits" and request.token_logprobs
    assert request.subsets == (() if config.get("append_space") is False else ("boundary",))
    live, _ = run_loss(method, three_chunks(), S_ROWS, T_ROWS, eos_rows=True)
    cached, _ = run_loss(method, three_chunks(), S_ROWS, T_ROWS, eos_rows=True, cache_k=1,
                         subsets={"boundary": boundary_ids(T_VOCAB)})
    assert cached["alm"].item() == pytest.approx(live["alm"].item(), rel=1e-6)
    assert cached["byte_coverage"].item() == live["byte_coverage"].item()
    if request.subsets:
        with pytest.raises(ValueError, match="no log-mass of vocabulary subset 'boundary'"):
            run_loss(method, three_chunks(), S_ROWS, T_ROWS, eos_rows=True, cache_k=1)


# --- properties -------------------------------------------------------------------------------------------------


def equal_chunks(student_rows: torch.Tensor):
    """"ab" as a|b (student) and ab (teacher, p = .2): with the student rows below, equal chunk likelihoods."""
    s_vocab, t_vocab = eos_vocab(["a", "b"]), eos_vocab(["ab"])
    batch = make_batch([["a", "b"]], [["ab"]], student_vocab=3, teacher_vocab=3, student_eos=False, teacher_eos=False,
                       student_ids=s_vocab.vocab, teacher_ids=t_vocab.vocab)
    student = place_rows(batch.student, student_rows).requires_grad_()
    teacher = TeacherOutputs(batch.teacher.answer_mask, logits=logits_of([[0.8, 0.2]]))
    loss = alm(s_vocab, t_vocab, append_space=False).loss(batch, student, teacher, torch.tensor(0.0))["loss"]
    loss.backward()
    return loss.item(), student.grad


def test_equal_chunk_likelihoods_are_the_minimum():
    # At equal likelihoods the binary CE equals the teacher's binary entropy and its gradient vanishes.
    loss, grad = equal_chunks(logits_of([[0.3, 0.5, 0.2], [0.2, 0.4, 0.4]]))  # .5 x .4 = .2
    q = math.exp(math.log(0.2) / 100 - 1e-6)
    assert loss == pytest.approx(-(q * math.log(q) + (1 - q) * math.log(1 - q)), rel=1e-4)
    assert grad.abs().max().item() < 1e-5
    for other in ([[0.3, 0.6, 0.1], [0.2, 0.4, 0.4]], [[0.3, 0.5, 0.2], [0.5, 0.2, 0.3]]):
        worse, grad = equal_chunks(logits_of(other))
        assert worse > loss and grad.abs().max().item() > 1e-4


def test_gradients_reach_the_student_and_never_the_teacher():
    batch = three_chunks()
    student = place_rows(batch.student, S_ROWS, eos_rows=True).requires_grad_()
    teacher = T_ROWS.clone().requires_grad_()
    out = alm(S_VOCAB, T_VOCAB).loss(batch, student, TeacherOutputs(batch.teacher.answer_mask, logits=teacher),
                                    torch.tensor(0.0))
    out["loss"].backward()
    assert teacher.grad is None
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_log1mexp_is_accurate_where_the_naive_form_is_not():
    x = torch.tensor([-1e-7, -1e-3, -0.6931, -0.6932, -5.0, -60.0])
    exact = torch.tensor([math.log(-math.expm1(v)) for v in x.double().tolist()], dtype=torch.float64)
    assert torch.allclose(log1mexp(x).double(), exact, rtol=1e-5)
    naive = torch.log(1 - torch.exp(x))
    assert not torch.allclose(naive.double(), exact, rtol=1e-2)  # float32 1 - e^x loses -1e-7 and -60
    x.requires_grad_()
    log1mexp(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_extreme_likelihoods_stay_finite():
    # A chunk the student finds almost impossible and one it finds certain: a = b near 0 and far below.
    teacher_ll = torch.tensor([-1e-9, -500.0])
    student_ll = torch.tensor([-1e-9, -900.0], requires_grad=True)
    value = binary_ce(teacher_ll, student_ll, 100.0, 1e-6)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(student_ll.grad).all()


@pytest.mark.parametrize("values, message", [
    ({"binarization_temp": 0.0}, "^binarization_temp=0.0: expected a finite number > 0$"),
    ({"epsilon": float("nan")}, "^epsilon=nan: expected a finite number > 0$"),
    ({"mode": "unbiased"}, "unknown config key"),
])
def test_bad_config_is_a_one_line_error(values, message):
    with pytest.raises(ValueError, match=message):
        ALMConfig.from_dict(values)
