import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.prompting import PromptFormat
from benchmark.models.loading import build_tiny
from benchmark.run.teacher import (
    LiveTeacher,
    StaleCacheError,
    TopkCache,
    ensure_topk_cache,
    teacher_answers,
)
from tests.support.toy_task import ToyTask, toy_examples


@pytest.fixture(scope="module")
def tiny():
    return build_tiny("qwen2", 1), build_tiny("gpt2", 2)


def collator_for(task, tiny, max_answer_tokens=16):
    (_, teacher_tok), (_, student_tok) = tiny
    pool = task.load("train")
    return PairCollator(ViewEncoder(task, student_tok, PromptFormat("plain", 0), pool, max_answer_tokens),
                        ViewEncoder(task, teacher_tok, PromptFormat("plain", 1), pool, max_answer_tokens))


def test_cached_topk_equals_live_topk(tmp_path, tiny):
    task = ToyTask(tmp_path, toy_examples(6, "train"), toy_examples(1, "test"))
    examples, collator = task.load("train"), collator_for(task, tiny)
    live = LiveTeacher(tiny[0][0])
    calls = []
    load = lambda: calls.append(1) or live  # noqa: E731
    cache = ensure_topk_cache(tmp_path / "c", {"k": 8}, load, collator, examples, [e.answer for e in examples], 4)
    assert calls == [1] and cache.is_complete()
    batch = collator(examples[1:4])
    cached, direct = cache.outputs(batch), live.outputs(batch)
    for a, b in zip(cached.topk(8), direct.topk(8)):
        mask = batch.teacher.answer_mask
        assert torch.allclose(a[mask], b[mask], atol=1e-5)
    with pytest.raises(ValueError, match="cache holds only k=8"):
        cached.topk(9)
    # A second request with the same key reuses the files without touching the teacher.
    ensure_topk_cache(tmp_path / "c", {"k": 8}, load, collator, examples, [e.answer for e in examples], 4)
    assert calls == [1]


def test_stale_or_partial_cache_is_not_used(tmp_path, tiny):
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    examples, collator = task.load("train"), collator_for(task, tiny)
    key = {"k": 4, "examples": "x"}
    cache = TopkCache(tmp_path / "c", key)
    cache.build(LiveTeacher(tiny[0][0]), collator, examples, [e.answer for e in examples], 2)
    assert cache.is_complete()
    assert not TopkCache(tmp_path / "c", {**key, "k": 5}).is_complete()  # another key, another entry
    data = cache.dir / "topk.safetensors"
    data.write_bytes(data.read_bytes()[:-10])  # torn write
    assert not TopkCache(tmp_path / "c", key).is_complete()
    with pytest.raises(StaleCacheError, match="missing, partial or stale"):
        TopkCache(tmp_path / "c", key).outputs(collator(examples[:1]))


def test_rows_that_do_not_match_the_batch_are_refused(tmp_path, tiny):
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    examples = task.load("train")
    cache = TopkCache(tmp_path / "c", {"k": 4})
    cache.build(LiveTeacher(tiny[0][0]), collator_for(task, tiny, 2), examples, [e.answer for e in examples], 2)
    longer = collator_for(task, tiny, 16)([e for e in examples if len(e.answer.split()) > 2][:1])
    with pytest.raises(StaleCacheError, match="rows for"):
        cache.outputs(longer)


def test_teacher_answers_are_generated_once_and_survive_a_torn_line(tmp_path, tiny):
    task = ToyTask(tmp_path, toy_examples(5, "train"), toy_examples(1, "test"))
    examples = task.load("train")
    (teacher, teacher_tok), _ = tiny
    encoder = ViewEncoder(task, teacher_tok, PromptFormat("plain", 0), examples, 8)
    calls = []

    def load():
        calls.append(1)
        return teacher, encoder

    first = teacher_answers(tmp_path, {"t": 1}, load, examples, 3, 2, chunk=2)
    assert len(first) == 5 and calls == [1]
    path = next((tmp_path / "text").iterdir())
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:5])  # a crash mid-line
    second = teacher_answers(tmp_path, {"t": 1}, load, examples, 3, 2, chunk=2)
    assert second == first and calls == [1, 1]
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [e.id for e in examples]
    assert teacher_answers(tmp_path, {"t": 1}, load, examples, 3, 2) == first and calls == [1, 1]


def test_workers_building_one_entry_at_once_build_it_once(tmp_path, tiny):
    # Two grid workers reach the same top-k entry together: one builds it, the other waits and reuses it.
    task = ToyTask(tmp_path, toy_examples(6, "train"), toy_examples(1, "test"))
    examples, collator = task.load("train"), collator_for(task, tiny)
    live, calls, first_is_building = LiveTeacher(tiny[0][0]), [], threading.Event()

    def load():
        calls.append(threading.get_ident())
        first_is_building.set()
        time.sleep(0.5)  # keep the lock while the second worker arrives
        return live

    def worker():
        return ensure_topk_cache(tmp_path / "c", {"k": 8}, load, collator, examples, [e.answer for e in examples], 4)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(worker)
        first_is_building.wait(30)
        second = pool.submit(worker)
        caches = [first.result(60), second.result(60)]
    assert len(calls) == 1
    assert all(cache.is_complete() and cache.dir == caches[0].dir for cache in caches)


def test_cached_topk_at_other_temperatures_equals_live(tmp_path, tiny):
    """The cache stores logsumexp(z / tau) for the temperatures it is keyed with, so top-k log-probabilities at tau,
    normalised over the full vocabulary, equal the live teacher's; an unstored tau is a one-line error."""
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    examples, collator = task.load("train"), collator_for(task, tiny)
    live = LiveTeacher(tiny[0][0])
    cache = TopkCache(tmp_path / "c", {"k": 8, "temperatures": [2.0]})
    cache.build(live, collator, examples, [e.answer for e in examples], 2)
    batch = collator(examples[:3])
    cached, direct = cache.outputs(batch), live.outputs(batch)
    mask = batch.teacher.answer_mask
    for tau in (1.0, 2.0):
        logprobs, ids, tail = cached.topk(8, tau)
        expected = (direct.logits / tau).log_softmax(-1).topk(8, dim=-1)
        assert torch.equal(ids[mask], expected.indices[mask])
        assert torch.allclose(logprobs[mask], expected.values[mask], atol=1e-5)
        rest = 1 - expected.values.exp().sum(-1)
        assert torch.allclose(tail.exp()[mask], rest[mask], atol=1e-5)
    with pytest.raises(ValueError, match="temperature 3.0"):
        cached.topk(8, 3.0)


def test_cached_token_logits_and_subset_masses_equal_live_at_every_labelled_row(tmp_path, tiny):
    """With the per-row values a method declares, the cache serves the teacher's own-token log-probabilities and the
    log-mass of vocabulary subsets exactly, on every labelled row (the EOS row included), at every temperature it
    stores; the byte-aligned methods then give the live teacher's loss (eta-kl's top-k signal: a lower bound)."""
    from benchmark.run.teacher import row_values_key
    from methods.alm import ALM
    from methods.eta_kl import EtaKL, EtaKLConfig
    from methods.gold import GOLD, GOLDConfig
    from methods.resources import PairResources
    from methods.token_text import VocabInfo
    from methods.vocab_subsets import teacher_subset

    task = ToyTask(tmp_path, toy_examples(6, "train"), toy_examples(1, "test"))
    examples, collator = task.load("train"), collator_for(task, tiny)
    (teacher, teacher_tok), (student, student_tok) = tiny
    vocabs = VocabInfo.from_tokenizer(student_tok), VocabInfo.from_tokenizer(teacher_tok)
    subsets = {name: teacher_subset(name, *vocabs) for name in ("boundary", "shared")}
    live = LiveTeacher(teacher)
    key = {"k": 16, "temperatures": [2.0], **row_values_key(True, subsets)}
    cache = ensure_topk_cache(tmp_path / "c", key, lambda: live, collator, examples, [e.answer for e in examples], 4,
                              subsets)
    batch = collator(examples[1:5])
    cached, direct = cache.outputs(batch), live.outputs(batch)
    rows = batch.teacher.answer_token_mask()
    assert (rows & ~batch.teacher.answer_mask).any()  # EOS rows are among those checked
    ids = batch.teacher.answer_ids
    for tau in (1.0, 2.0):
        assert torch.allclose(cached.token_logprobs(ids, tau)[rows], direct.token_logprobs(ids, tau)[rows], atol=1e-5)
        for name, subset in subsets.items():
            assert torch.allclose(cached.subset_log_mass(name, subset, tau)[rows],
                                  direct.subset_log_mass(name, subset, tau)[rows], atol=1e-5)
        assert torch.allclose(cached.topk(16, tau)[0][rows], direct.topk(16, tau)[0][rows], atol=1e-5)
    with pytest.raises(ValueError, match="subsets given do not match its key"):
        TopkCache(tmp_path / "d", key).build(live, collator, examples, [e.answer for e in examples], 4, {})

    with torch.no_grad():
        logits = student(input_ids=batch.student.input_ids, attention_mask=batch.student.attention_mask).logits
    resources = PairResources(student_tok, teacher_tok)
    bound = EtaKL(EtaKLConfig(signal="topk", k=16))
    for method in (ALM(), GOLD(GOLDConfig(k=16)), bound):
        method.prepare(resources)
        from_cache = method.loss(batch, logits, cached, torch.tensor(0.0))
        from_live = method.loss(batch, logits, direct, torch.tensor(0.0))
        for term, value in from_live.items():
            assert float(from_cache[term]) == pytest.approx(float(value), rel=1e-5, abs=1e-6), (method.name, term)
    exact = EtaKL()
    exact.prepare(resources)
    exact_kd = float(exact.loss(batch, logits, direct, torch.tensor(0.0))["kd"])
    assert 0 < float(bound.loss(batch, logits, cached, torch.tensor(0.0))["kd"]) <= exact_kd + 1e-6


def test_one_cache_per_run_stores_what_its_cached_methods_read_and_nothing_else(tmp_path):
    """The run's cache key gains the per-row values only when a cached method reads them: a run of uld and mlot keeps
    the key (and the entries) it had before these values existed; a live method adds nothing."""
    from benchmark.run.teacher import Teachers, row_values_key
    from methods.alm import ALM, ALMConfig
    from methods.eta_kl import EtaKL, EtaKLConfig
    from methods.gold import GOLD, GOLDConfig, GOLDOnPolicy
    from methods.mlot import MLOT
    from methods.uld import ULD

    def stored(*methods):
        teachers = Teachers.for_methods(tmp_path, methods)
        return teachers.token_logits, teachers.subsets

    assert stored(ULD(), MLOT()) == (False, ()) and row_values_key(False, {}) == {}
    assert stored(ULD(), EtaKL(), GOLD(GOLDConfig(hybrid=True)), GOLDOnPolicy()) == (False, ())  # all live but uld
    assert stored(ULD(), GOLD()) == (True, ())
    assert stored(ALM(ALMConfig(append_space=False))) == (True, ())
    assert stored(ALM(), EtaKL(EtaKLConfig(signal="topk")), MLOT()) == (True, ("boundary", "shared"))
