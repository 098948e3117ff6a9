"""GOLD: the span merge by hand, a reference written from TRL's formulas (spec §8.4–§8.6), properties, config."""
from __future__ import annotations

import math

import pytest
import torch

from methods.base import MethodConfig, TeacherRequest
from methods.batch import TeacherOutputs
from methods.gold import GOLD, GOLDConfig
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


def gold(student: VocabInfo, teacher: VocabInfo, **config) -> GOLD:
    return prepared(GOLD(GOLDConfig(**config)), student, teacher)


# One answer "ab": the student writes it as one token, the teacher as two; both end with EOS (id 0).
SPLIT_STUDENT, SPLIT_TEACHER = eos_vocab(["ab", "x"]), eos_vocab(["a", "b"])
SPLIT = make_batch([["ab"]], [["a", "b"]], student_vocab=3, teacher_vocab=3, student_eos=True, teacher_eos=True,
                   student_ids=SPLIT_STUDENT.vocab, teacher_ids=SPLIT_TEACHER.vocab)
S_ROWS = logits_of([[0.2, 0.5, 0.3],  # predicts "ab"
                    [0.9, 0.05, 0.05]])  # predicts EOS
T_ROWS = logits_of([[0.1, 0.6, 0.3],  # predicts "a" (p = 0.6)
                    [0.2, 0.3, 0.5],  # predicts "b"
                    [0.05, 0.15, 0.8]])  # predicts EOS


@pytest.mark.parametrize("merge, skip_eos, expected", [
    # bayesian: q̂_s = s0 = (.2 .5 .3); q̂_t = t1 · t0[a] = .6 · (.2 .3 .5) = (.12 .18 .30).
    # sorted: (.5 .3 .2) vs (.30 .18 .12) -> .2 + .12 + .08 = .40
    ("bayesian", True, 0.40),
    # + the EOS group: s1 (.9 .05 .05) vs t2 sorted (.8 .15 .05) -> .1 + .1 + 0 = .2; mean over 2 groups
    ("bayesian", False, (0.40 + 0.2) / 2),
    # observed (TRL): each token's row is the one at its own position. Student "ab" -> s1; teacher "a" -> t1 (base),
    # "b" -> t2, read at "b": q̂_t = .8 · (.2 .3 .5) = (.16 .24 .40). s1 sorted (.9 .05 .05) -> .5 + .19 + .11 = .80
    ("observed", True, 0.80),
])
def test_span_merge_of_a_two_token_split_by_hand(merge, skip_eos, expected):
    method = gold(SPLIT_STUDENT, SPLIT_TEACHER, merge=merge, skip_eos=skip_eos, k=3)
    out, _ = run_loss(method, SPLIT, S_ROWS, T_ROWS, eos_rows=True, ce=2.0)
    assert out["gold"].item() == pytest.approx(expected, abs=1e-6)
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)  # ce_weight 0 [code]
    assert out["byte_coverage"].item() == 1.0 and out["one_to_one_share"].item() == 0.0


def test_top_k_keeps_the_merged_mass_in_the_tail_bin():
    # k = 1: s (.5 | tail .5) vs t (.30 | tail .6 - .30 = .30) -> .2 + .2 = .4 (the full sort gives .40 too)
    out, _ = run_loss(gold(SPLIT_STUDENT, SPLIT_TEACHER, k=1), SPLIT, S_ROWS, T_ROWS, eos_rows=True)
    assert out["gold"].item() == pytest.approx(0.40, abs=1e-6)


def test_observed_merge_needs_the_row_after_the_group():
    # Without EOS on the teacher side, its last token has no row of its own position: the group is dropped.
    batch = make_batch([["ab"]], [["a", "b"]], student_vocab=3, teacher_vocab=3, student_eos=True, teacher_eos=False,
                       student_ids=SPLIT_STUDENT.vocab, teacher_ids=SPLIT_TEACHER.vocab)
    out, _ = run_loss(gold(SPLIT_STUDENT, SPLIT_TEACHER, merge="observed"), batch, S_ROWS, T_ROWS[:, :2], eos_rows=True)
    assert out["gold"].item() == 0.0 and out["byte_coverage"].item() == 0.0
    bayesian, _ = run_loss(gold(SPLIT_STUDENT, SPLIT_TEACHER), batch, S_ROWS, T_ROWS[:, :2], eos_rows=True)
    assert bayesian["gold"].item() == pytest.approx(0.40, abs=1e-6)


# --- an independent reference from the formulas ---------------------------------------------------------------

STUDENT_VOCAB = eos_vocab(["He", "llo", " world", "a", "b", "x", "y"])  # V_s = 8
TEACHER_VOCAB = eos_vocab(["Hello", " wor", "ld", "a", "b", "x", "z", "w", "v"])  # V_t = 10
# Pairs (student id, teacher id) of the canonical shared vocabulary: "a", "b", "x" (text), then EOS (role).
SHARED = [(4, 4), (5, 5), (6, 6), (0, 0)]
# §8.3 groups of the batch below, by hand (student positions, teacher positions).
GROUPS = [[([0, 1], [0]), ([2], [1, 2])], [([0], [0]), ([1], [1])]]


def mixed_batch():
    return make_batch([["He", "llo", " world"], ["a", "b"]], [["Hello", " wor", "ld"], ["a", "b"]],
                      student_vocab=8, teacher_vocab=10, student_eos=True, teacher_eos=True,
                      student_ids=STUDENT_VOCAB.vocab, teacher_ids=TEACHER_VOCAB.vocab)


def merged(probs: torch.Tensor, ids: list[int], positions: list[int], merge: str) -> torch.Tensor:
    """§8.4: bayesian q(g_r)·Π_{h<r} max(q(g_h)[x(g_h)], ε); observed uses the rows one position later and
    q(g_1)·Π_{h≥2}."""
    if merge == "bayesian":
        base, scalars = probs[positions[-1]], [probs[p][ids[p]] for p in positions[:-1]]
    else:
        base, scalars = probs[positions[0] + 1], [probs[p + 1][ids[p]] for p in positions[1:]]
    return base * math.prod(max(float(s), 1e-8) for s in scalars)


def sorted_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.sort(descending=True).values, b.sort(descending=True).values
    size = max(len(a), len(b))
    return float((torch.nn.functional.pad(a, (0, size - len(a))) - torch.nn.functional.pad(b, (0, size - len(b)))).abs().sum())


def jsd(u_t: torch.Tensor, u_s: torch.Tensor, beta: float) -> float:
    u_t, u_s = u_t.clamp_min(1e-8), u_s.clamp_min(1e-8)
    m = beta * u_t + (1 - beta) * u_s
    return float((beta * u_t * (u_t / m).log() + (1 - beta) * u_s * (u_s / m).log()).sum())


def reference_gold(batch, student_answer, teacher_answer, merge: str, hybrid: bool = False, beta: float = 0.5):
    per_sample = []
    for b, groups in enumerate(GROUPS):
        s_probs, t_probs = student_answer[b].softmax(-1), teacher_answer[b].softmax(-1)
        s_ids, t_ids = batch.student.answer_ids[b].tolist(), batch.teacher.answer_ids[b].tolist()
        distances = []
        for s_pos, t_pos in groups:
            q_s, q_t = merged(s_probs, s_ids, s_pos, merge), merged(t_probs, t_ids, t_pos, merge)
            if not hybrid:
                distances.append(sorted_l1(q_s, q_t))
                continue
            m_s, m_t = [s for s, _ in SHARED], [t for _, t in SHARED]
            u_s = [i for i in range(len(q_s)) if i not in m_s]
            u_t = [i for i in range(len(q_t)) if i not in m_t]
            w_m = len(SHARED) / len(q_t)
            distances.append(w_m * jsd(q_t[m_t], q_s[m_s], beta) + (1 - w_m) * sorted_l1(q_s[u_s], q_t[u_t]))
        per_sample.append(sum(distances) / len(distances))
    return sum(per_sample) / len(per_sample)


@pytest.mark.parametrize("merge", ["bayesian", "observed"])
@pytest.mark.parametrize("hybrid", [False, True], ids=["uld", "hybrid"])
def test_equals_the_reference_when_k_covers_the_vocabularies(merge, hybrid):
    batch = mixed_batch()
    student, teacher = answer_logits(batch.student, 8, seed=3), answer_logits(batch.teacher, 10, seed=4)
    method = gold(STUDENT_VOCAB, TEACHER_VOCAB, merge=merge, hybrid=hybrid, k=10)
    out, _ = run_loss(method, batch, student, teacher, eos_rows=True)
    assert out["gold"].item() == pytest.approx(reference_gold(batch, student, teacher, merge, hybrid), abs=1e-5)
    assert out["one_to_one_share"].item() == pytest.approx(2 / 5)
    if hybrid:
        assert out["gold"].item() == pytest.approx(
            0.4 * out["gold_matched"].item() + 0.6 * out["gold_unmatched"].item(), abs=1e-6)


@pytest.mark.parametrize("hybrid", [False, True], ids=["uld", "hybrid"])
def test_small_k_is_a_lower_bound(hybrid):
    batch = mixed_batch()
    student, teacher = answer_logits(batch.student, 8, seed=5), answer_logits(batch.teacher, 10, seed=6)
    small = run_loss(gold(STUDENT_VOCAB, TEACHER_VOCAB, k=2, hybrid=hybrid), batch, student, teacher, eos_rows=True)[0]
    full = reference_gold(batch, student, teacher, "bayesian", hybrid)
    assert small["gold"].item() <= full + 1e-6
    assert small["gold"].item() > 0


def test_raw_matching_pairs_identical_strings_only():
    student = VocabInfo({"Ġthe": 0, "a": 1, "<|endoftext|>": 2}, byte_level=True, special_ids=frozenset({2}),
                        roles={"eos_token": 2})
    teacher = VocabInfo({"▁the": 0, "a": 1, "</s>": 2, "b": 3}, byte_level=False, special_ids=frozenset({2}),
                        roles={"eos_token": 2})
    raw, canonical = gold(student, teacher, hybrid=True, match="raw"), gold(student, teacher, hybrid=True)
    assert raw._matched[0].tolist() == [1] and raw._matched[1].tolist() == [1]
    assert canonical._matched[0].tolist() == [0, 1, 2] and canonical._matched[1].tolist() == [0, 1, 2]  # " the", "a", EOS
    assert canonical._hybrid_weights(4) == (0.75, 0.25)
    assert gold(student, teacher, hybrid=True, matched_weight=1.0, unmatched_weight=0.0)._hybrid_weights(4) == (1.0, 0.0)


@pytest.mark.parametrize("config", [{}, {"skip_eos": False}, {"temperature": 2.0}, {"k": 2}])
def test_the_cache_serves_the_bayesian_merge_exactly(config):
    """Top-k rows (k >= gold's k), the normaliser at the temperature and each row's own-token logit (EOS row
    included) give the live teacher's loss."""
    batch = mixed_batch()
    student, teacher = answer_logits(batch.student, 8, seed=3), answer_logits(batch.teacher, 10, seed=4)
    method = gold(STUDENT_VOCAB, TEACHER_VOCAB, **config)
    live, _ = run_loss(method, batch, student, teacher, eos_rows=True)
    cached, _ = run_loss(method, batch, student, teacher, eos_rows=True, cache_k=min(method.config.k, 10),
                         temperatures=method.teacher_request().temperatures)
    assert cached["gold"].item() == pytest.approx(live["gold"].item(), rel=1e-6, abs=1e-7)
    assert live["gold"].item() > 0.01


# --- properties -------------------------------------------------------------------------------------------------


def test_zero_when_both_sides_give_the_same_merged_spans():
    # "abc" as ("a", "bc") and ("ab", "c"): one 2:2 group. Equal first scalars (0.3) and base rows that are
    # permutations of each other give equal merged vectors after sorting, although no token is shared.
    s_vocab, t_vocab = eos_vocab(["a", "bc"]), eos_vocab(["ab", "c"])
    batch = make_batch([["a", "bc"]], [["ab", "c"]], student_vocab=3, teacher_vocab=3, student_eos=False,
                       teacher_eos=False, student_ids=s_vocab.vocab, teacher_ids=t_vocab.vocab)
    student = logits_of([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    teacher = logits_of([[0.6, 0.3, 0.1], [0.7, 0.2, 0.1]])
    out, _ = run_loss(gold(s_vocab, t_vocab, k=3), batch, student, teacher)
    assert out["gold"].item() == pytest.approx(0.0, abs=1e-7)
    different = logits_of([[0.6, 0.1, 0.3], [0.6, 0.3, 0.1]])
    assert run_loss(gold(s_vocab, t_vocab, k=3), batch, student, different)[0]["gold"].item() > 0.01


@pytest.mark.parametrize("config", [{}, {"merge": "observed"}, {"hybrid": True}, {"hybrid": True, "beta": 0.0},
                                    {"hybrid": True, "beta": 1.0}])
def test_gradients_reach_the_student_and_never_the_teacher(config):
    batch = mixed_batch()
    student_answer, teacher_answer = answer_logits(batch.student, 8, seed=7), answer_logits(batch.teacher, 10, seed=8)
    student = place_rows(batch.student, student_answer, eos_rows=True).requires_grad_()
    teacher = teacher_answer.clone().requires_grad_()
    method = gold(STUDENT_VOCAB, TEACHER_VOCAB, **config)
    out = method.loss(batch, student, TeacherOutputs(batch.teacher.answer_mask, logits=teacher), torch.tensor(0.0))
    out["loss"].backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    # Rows that no group reads (the prompt) get no gradient.
    prompt_rows = batch.student.answer_rows[:, 0]
    assert all(student.grad[b, : prompt_rows[b]].abs().sum() == 0 for b in range(2))


def test_values_behind_the_masks_are_never_read():
    batch = mixed_batch()
    student, teacher = answer_logits(batch.student, 8, seed=9), answer_logits(batch.teacher, 10, seed=10)
    method = gold(STUDENT_VOCAB, TEACHER_VOCAB)
    first, _ = run_loss(method, batch, student, teacher, eos_rows=True)
    padded = make_batch([["He", "llo", " world"], ["a", "b"]], [["Hello", " wor", "ld"], ["a", "b"]],
                        student_vocab=8, teacher_vocab=10, student_eos=True, teacher_eos=True, extra_rows=3,
                        student_ids=STUDENT_VOCAB.vocab, teacher_ids=TEACHER_VOCAB.vocab)
    pad = lambda x: torch.cat([x, 50 * torch.randn(x.size(0), 3, x.size(-1))], 1)  # noqa: E731
    second, _ = run_loss(method, padded, pad(student), pad(teacher), eos_rows=True)
    assert second["gold"].item() == pytest.approx(first["gold"].item(), abs=1e-6)


def test_loss_before_prepare_is_an_error():
    with pytest.raises(RuntimeError, match=r"gold.prepare\(resources\) must run"):
        run_loss(GOLD(), SPLIT, S_ROWS, T_ROWS, eos_rows=True)


def test_what_the_teacher_must_provide_follows_the_config():
    """bayesian non-hybrid reads token log-probabilities and top-k rows (a cache serves them); observed and hybrid
    need full logits; a top-k cache without the token logits, or no teacher at all, is a one-line error."""
    assert GOLD().teacher_request() == TeacherRequest("topk_logits", topk=100, temperatures=(1.0,), token_logprobs=True)
    assert GOLD(GOLDConfig(temperature=2.0)).teacher_request().temperatures == (2.0,)
    for config in ({"merge": "observed"}, {"hybrid": True}):
        assert GOLD(GOLDConfig(**config)).teacher_request() == TeacherRequest("full_logits")
    student = place_rows(SPLIT.student, S_ROWS)
    without_tokens = TeacherOutputs(SPLIT.teacher.answer_mask, topk_logits=T_ROWS,
                                    topk_ids=torch.zeros(1, 3, 3, dtype=torch.long), logsumexp=torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"gold needs teacher outputs \(teacher_needs='topk_logits'\)"):
        gold(SPLIT_STUDENT, SPLIT_TEACHER).loss(SPLIT, student, None, torch.tensor(0.0))
    with pytest.raises(ValueError, match="the teacher cache holds no answer-token logits"):
        gold(SPLIT_STUDENT, SPLIT_TEACHER).loss(SPLIT, student, without_tokens, torch.tensor(0.0))
    for config in ({"merge": "observed"}, {"hybrid": True}):
        with pytest.raises(ValueError, match=r"gold needs the teacher's full logits \(teacher_needs='full_logits'\)"):
            gold(SPLIT_STUDENT, SPLIT_TEACHER, **config).loss(SPLIT, student, without_tokens, torch.tensor(0.0))


@pytest.mark.parametrize("values, message", [
    ({"merge": "mean"}, "^merge='mean': expected one of bayesian, observed$"),
    ({"k": 0}, "^k=0: expected an integer > 0 and <= 2147483647$"),
    ({"temperature": 0.0}, "^temperature=0.0: expected a finite number > 0$"),
    ({"match": "fuzzy"}, "^match='fuzzy': expected one of canonical, raw$"),
    ({"beta": 1.5}, r"^beta=1.5: expected a finite number in \[0, 1\]$"),
    ({"matched_weight": 0.5}, r"^matched_weight=0.5: expected a number exactly when unmatched_weight is one \(got "
                              r"None\); neither: adaptive \|M\|/V_t weights$"),
    ({"lmbda": 0.5}, "unknown config key"),
])
def test_bad_config_is_a_one_line_error(values, message):
    with pytest.raises(ValueError, match=message):
        GOLDConfig.from_dict(values)
    assert issubclass(GOLDConfig, MethodConfig)
