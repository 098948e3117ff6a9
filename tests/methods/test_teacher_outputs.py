"""TeacherOutputs.topk: top-k log-probabilities at a temperature, normalised over the full vocabulary, from full
logits or from a cache; references are computed in float64 straight from softmax(z / tau)."""
from __future__ import annotations

import math

import pytest
import torch

from methods.batch import TeacherOutputs, full_teacher_logits, log_normalisers

LOGITS = 3 * torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(0))
MASK = torch.ones(2, 3, dtype=torch.bool)


def cached(k: int, temperatures: tuple[float, ...]) -> TeacherOutputs:
    values, ids = torch.topk(LOGITS, k, dim=-1)
    return TeacherOutputs(MASK, topk_logits=values, topk_ids=ids, logsumexp=torch.logsumexp(LOGITS, -1),
                          tempered_logsumexp={tau: torch.logsumexp(LOGITS / tau, -1) for tau in temperatures},
                          vocab_size=40)


def reference(tau: float, k: int) -> tuple[list, list, list]:
    """Per row: the k largest softmax(z / tau) log-probabilities over all 40 entries, their ids, the rest's mass."""
    logprobs, ids, rest = [], [], []
    for row in LOGITS.reshape(-1, 40).double().tolist():
        weights = [math.exp(z / tau) for z in row]
        order = sorted(range(40), key=lambda v: -row[v])[:k]
        logprobs.append([math.log(weights[v] / sum(weights)) for v in order])
        ids.append(order)
        rest.append(1 - sum(weights[v] for v in order) / sum(weights))
    return logprobs, ids, rest


@pytest.mark.parametrize("form", ["live", "cached"])
@pytest.mark.parametrize("tau", [1.0, 2.0, 0.5])
def test_topk_at_a_temperature_is_normalised_over_the_full_vocabulary(form, tau):
    outputs = TeacherOutputs(MASK, logits=LOGITS, vocab_size=40) if form == "live" else cached(10, (2.0, 0.5))
    logprobs, ids, tail = outputs.topk(5, tau)
    expected_logprobs, expected_ids, expected_rest = reference(tau, 5)
    assert ids.reshape(-1, 5).tolist() == expected_ids  # the same ids at every temperature
    assert logprobs.reshape(-1, 5).tolist() == [pytest.approx(row, abs=1e-5) for row in expected_logprobs]
    assert tail.exp().reshape(-1).tolist() == pytest.approx(expected_rest, abs=1e-6)  # float32: 1 - sum


def test_a_temperature_the_cache_was_not_built_for_is_an_error():
    with pytest.raises(ValueError, match=r"no log-normaliser at temperature 3.0 \(it holds \[1.0, 2.0\]\)"):
        cached(10, (2.0,)).topk(5, 3.0)


def test_k_is_clipped_to_the_vocabulary_but_not_to_a_smaller_cache():
    live = TeacherOutputs(MASK, logits=LOGITS, vocab_size=40)
    assert live.topk(100)[0].size(-1) == 40
    assert cached(40, ()).topk(100)[0].size(-1) == 40
    with pytest.raises(ValueError, match="top-k of 20 requested but the teacher cache holds only k=10"):
        cached(10, ()).topk(20)


def test_outputs_are_detached_from_teacher_tensors_that_require_grad():
    logits = LOGITS.clone().requires_grad_()
    values, ids = torch.topk(LOGITS, 10, dim=-1)
    lse = {2.0: torch.logsumexp(LOGITS / 2, -1).requires_grad_()}
    cache = TeacherOutputs(MASK, topk_logits=values.requires_grad_(), topk_ids=ids,
                           logsumexp=torch.logsumexp(LOGITS, -1).requires_grad_(), tempered_logsumexp=lse)
    for outputs in (TeacherOutputs(MASK, logits=logits), cache):
        assert not any(x.requires_grad for x in outputs.topk(5, 2.0))
    assert not full_teacher_logits(TeacherOutputs(MASK, logits=logits), "test").requires_grad
    with pytest.raises(ValueError, match="test needs the teacher's full logits \\(a live teacher\\), got only a top-k"):
        full_teacher_logits(cache, "test")


def test_log_normalisers_per_temperature():
    normalisers = log_normalisers(LOGITS, [2, 0.5])
    assert sorted(normalisers) == [0.5, 2.0]
    row = LOGITS[0, 0].double().tolist()
    assert normalisers[2.0][0, 0].item() == pytest.approx(math.log(sum(math.exp(z / 2) for z in row)), rel=1e-6)
