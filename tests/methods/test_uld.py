"""ULD: hand-computed values, the exact mode and the top-k bound against a full-sort reference, invariances, masking,
numerics, config."""
from __future__ import annotations

import pytest
import torch

from methods.base import TeacherRequest
from methods.uld import ULD, ULDConfig
from tests.methods.helpers import answer_logits, make_batch, run_loss, widen

ONE = make_batch([["a", "b"]], [["a", "b"]])


def logits_of(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor([rows]).log()


def full_sort_uld(batch, student_answer, teacher_answer, temperature: float = 1.0) -> torch.Tensor:
    """Reference (positional, the published code): softmax(z / tau) over each full vocabulary, full sort, zero-pad,
    L1, mean over rows, mean over samples; in float64."""
    per_sample = []
    for b in range(student_answer.size(0)):
        n = min(int(batch.student.answer_mask[b].sum()), int(batch.teacher.answer_mask[b].sum()))
        s = torch.softmax(student_answer[b, :n].double() / temperature, -1).sort(-1, descending=True).values
        t = torch.softmax(teacher_answer[b, :n].double() / temperature, -1).sort(-1, descending=True).values
        size = max(s.size(-1), t.size(-1))
        s, t = (torch.nn.functional.pad(x, (0, size - x.size(-1))) for x in (s, t))
        per_sample.append((s - t).abs().sum(-1).mean())
    return torch.stack(per_sample).mean()


def random_case(seed: int = 0, extra_rows: int = 0):
    batch = make_batch([["He", "llo", " world"], ["a", "b"]], [["Hello", " world"], ["a", "b"]], extra_rows=extra_rows)
    return batch, answer_logits(batch.student, 16, seed=seed), answer_logits(batch.teacher, 24, seed=seed + 1)


def test_hand_computed_value():
    # Row 0: s top-2 (.4, .3) tail .3; t top-2 (.5, .3) tail .2 -> .1 + 0 + .1 = .2
    # Row 1: s top-2 (.7, .1) tail .2; t top-2 (.9, .05) tail .05 -> .2 + .05 + .15 = .4
    student = logits_of([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    teacher = logits_of([[0.5, 0.3, 0.2], [0.05, 0.9, 0.05]])
    out, _ = run_loss(ULD(ULDConfig(k=2)), ONE, student, teacher, ce=2.0)
    assert out["uld"].item() == pytest.approx(0.3, abs=1e-6)
    assert out["loss"].item() == pytest.approx(2.0 + 1.5 * 0.3, abs=1e-6)
    assert out["coverage"].item() == 1.0


def test_rows_are_averaged_per_sample_then_over_samples():
    batch = make_batch([["a", "b"], ["c"]], [["a", "b"], ["c"]])
    student = torch.cat([logits_of([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]),
                         logits_of([[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]])])
    teacher = torch.cat([logits_of([[0.5, 0.3, 0.2], [0.05, 0.9, 0.05]]),
                         logits_of([[1.0, 1e-9, 1e-9], [1.0, 1e-9, 1e-9]])])
    # Sample 2 (one row): s top-2 (.25, .25) tail .5; t (1, 0) tail 0 -> .75 + .25 + .5 = 1.5
    out, _ = run_loss(ULD(ULDConfig(k=2)), batch, student, teacher)
    assert out["uld"].item() == pytest.approx((0.3 + 1.5) / 2, abs=1e-6)  # not the token mean (0.2+0.4+1.5)/3


def test_offsets_alignment_uses_only_identical_spans():
    batch = make_batch([["He", "llo", " world"]], [["Hello", " world"]])
    student = logits_of([[0.25] * 4, [0.25] * 4, [0.1, 0.2, 0.3, 0.4]])
    teacher = logits_of([[1.0, 1e-9, 1e-9], [0.5, 0.3, 0.2]])
    out, _ = run_loss(ULD(ULDConfig(k=2, alignment="offsets")), batch, student, teacher)
    assert out["uld"].item() == pytest.approx(0.2, abs=1e-6)  # " world" <-> " world" only
    assert out["coverage"].item() == pytest.approx(1 / 3)


def test_top_k_with_tail_is_a_lower_bound_and_equals_full_sort_when_k_covers_a_vocabulary():
    batch, student, teacher = random_case()
    full = full_sort_uld(batch, student, teacher)
    small = run_loss(ULD(ULDConfig(k=3)), batch, student, teacher)[0]["uld"]
    no_tail = run_loss(ULD(ULDConfig(k=3, tail_bin=False)), batch, student, teacher)[0]["uld"]
    covering = run_loss(ULD(ULDConfig(k=16)), batch, student, teacher)[0]["uld"]  # the student vocabulary
    assert no_tail <= small + 1e-6 and small <= full + 1e-6
    assert covering.item() == pytest.approx(full.item(), abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_exact_mode_equals_the_full_sort_reference(temperature):
    batch, student, teacher = random_case()
    out = run_loss(ULD(ULDConfig(mode="exact", temperature=temperature)), batch, student, teacher)[0]
    assert out["uld"].item() == pytest.approx(full_sort_uld(batch, student, teacher, temperature).item(), rel=1e-6)
    assert "uld_gap" not in out


@pytest.mark.parametrize("temperature", [2.0, 0.5])
def test_top_k_at_a_temperature_is_a_lower_bound_equal_when_k_covers_a_vocabulary(temperature):
    # Both sides' top-k are normalised over the full vocabulary at tau (the teacher's through the cached
    # logsumexp(z / tau)), so the bound argument of tau = 1 holds unchanged.
    batch, student, teacher = random_case()
    full = full_sort_uld(batch, student, teacher, temperature).item()
    small = [run_loss(ULD(ULDConfig(k=3, temperature=temperature)), batch, student, teacher, cache_k=cache_k,
                      temperatures=[temperature])[0]["uld"].item() for cache_k in (None, 10)]
    covering = run_loss(ULD(ULDConfig(k=16, temperature=temperature)), batch, student, teacher, cache_k=16,
                        temperatures=[temperature])[0]["uld"].item()
    assert small[0] == pytest.approx(small[1], abs=1e-6)  # live and cached agree
    assert small[0] < full - 1e-3
    assert covering == pytest.approx(full, rel=1e-6)


def test_live_teacher_logs_the_gap_to_the_exact_value():
    batch, student, teacher = random_case()
    live = run_loss(ULD(ULDConfig(k=3)), batch, student, teacher)[0]
    assert live["uld_gap"].item() == pytest.approx(full_sort_uld(batch, student, teacher).item() - live["uld"].item(),
                                                   abs=1e-6)
    assert live["uld_gap"].item() > 1e-3
    assert "uld_gap" not in run_loss(ULD(ULDConfig(k=3)), batch, student, teacher, cache_k=5)[0]
    assert "uld_gap" not in run_loss(ULD(ULDConfig(k=3, log_gap=False)), batch, student, teacher)[0]


def test_missing_teacher_information_is_a_one_line_error():
    batch, student, teacher = random_case()
    with pytest.raises(ValueError, match="no log-normaliser at temperature 2.0"):
        run_loss(ULD(ULDConfig(temperature=2.0, k=4)), batch, student, teacher, cache_k=5, temperatures=())
    with pytest.raises(ValueError, match="needs the teacher's full logits"):
        run_loss(ULD(ULDConfig(mode="exact")), batch, student, teacher, cache_k=5)


def test_k_beyond_both_vocabularies_is_clipped():
    batch, student, teacher = random_case()  # vocabularies 16 (student) and 24 (teacher)
    full = full_sort_uld(batch, student, teacher).item()
    for cache_k in (None, 24):
        out = run_loss(ULD(ULDConfig(k=100)), batch, student, teacher, cache_k=cache_k)[0]
        assert out["uld"].item() == pytest.approx(full, rel=1e-6)


def test_identical_distributions_give_zero():
    batch = make_batch([["a", "b", "c"]], [["a", "b", "c"]], student_eos=False, teacher_eos=False)
    logits = answer_logits(batch.student, 16)
    assert run_loss(ULD(ULDConfig(k=5)), batch, logits, logits)[0]["uld"].item() == pytest.approx(0.0, abs=1e-7)


def test_invariant_to_permuting_either_vocabulary():
    batch, student, teacher = random_case()
    method = ULD(ULDConfig(k=4))
    base = run_loss(method, batch, student, teacher)[0]["loss"]
    permuted_s = run_loss(method, batch, student[..., torch.randperm(16)], teacher)[0]["loss"]
    permuted_t = run_loss(method, batch, student, teacher[..., torch.randperm(24)])[0]["loss"]
    assert torch.allclose(base, permuted_s, atol=1e-6) and torch.allclose(base, permuted_t, atol=1e-6)


def test_padded_positions_cannot_change_the_loss():
    batch, student, teacher = random_case()
    wide_batch = random_case(extra_rows=3)[0]
    method = ULD(ULDConfig(k=4))
    base = run_loss(method, batch, student, teacher)[0]["loss"]
    wide = run_loss(method, wide_batch, widen(student, 3), widen(teacher, 3))[0]["loss"]
    assert torch.allclose(base, wide, atol=1e-6)


def test_cached_and_live_teacher_give_the_same_value():
    batch, student, teacher = random_case()
    method = ULD(ULDConfig(k=4))
    live = run_loss(method, batch, student, teacher)[0]["loss"]
    cached = run_loss(method, batch, student, teacher, cache_k=10)[0]["loss"]
    assert torch.allclose(live, cached, atol=1e-6)


def test_gradient_reaches_only_the_aligned_student_rows():
    batch, student, teacher = random_case()
    out, logits = run_loss(ULD(ULDConfig(k=4)), batch, student, teacher)
    out["loss"].backward()
    rows = batch.student.answer_rows
    assert logits.grad[0, rows[0, :2]].abs().sum(-1).min() > 0  # "He", "llo" paired positionally
    assert logits.grad[0, rows[0, 2]].abs().sum() == 0  # " world": no third teacher token
    assert logits.grad[0, 0].abs().sum() == 0  # a prompt row


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits_give_finite_values_and_gradients(scale):
    batch, student, teacher = random_case()
    out, logits = run_loss(ULD(ULDConfig(k=4, temperature=2.0)), batch, scale * student.sign(), scale * teacher)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(logits.grad).all()


def test_bf16_inputs_match_float32():
    batch, student, teacher = random_case()
    method = ULD(ULDConfig(k=4))
    reference = run_loss(method, batch, student, teacher)[0]["uld"]
    out, logits = run_loss(method, batch, student.bfloat16(), teacher.bfloat16())
    out["loss"].backward()
    assert out["uld"].dtype == torch.float32 and torch.isfinite(logits.grad).all()
    assert out["uld"].item() == pytest.approx(reference.item(), rel=2e-2)


def test_config_and_contract():
    assert ULDConfig.from_dict({"k": 7}).k == 7
    with pytest.raises(ValueError, match="unknown config key"):
        ULDConfig.from_dict({"topk": 7})
    with pytest.raises(ValueError, match="^alignment='dtw': expected one of positional, offsets$"):
        ULDConfig(alignment="dtw")
    with pytest.raises(ValueError, match="^mode='full': expected one of topk, exact$"):
        ULDConfig(mode="full")
    assert ULD().teacher_request() == TeacherRequest("topk_logits", topk=100, temperatures=(1.0,))
    assert ULD(ULDConfig(k=20, temperature=2.0)).teacher_request() == TeacherRequest("topk_logits", topk=20,
                                                                                     temperatures=(2.0,))
    assert ULD(ULDConfig(mode="exact", temperature=2.0)).teacher_request() == TeacherRequest("full_logits")
    assert ULDConfig(mode="exact").to_dict()["mode"] == "exact"  # recorded with the method config
    assert ULDConfig().weight == 1.5 and ULDConfig().ce_weight == 1.0 and ULDConfig().alignment == "positional"
