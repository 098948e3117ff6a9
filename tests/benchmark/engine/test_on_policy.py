"""On-policy micro-batches (benchmark.engine.on_policy): the draw, the samples, the re-encoded batch, the harness hook, resume."""
import json

import pytest
import torch

from benchmark.config import TrainSettings
from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.harness import train
from benchmark.engine.on_policy import is_on_policy, sample_answers
from benchmark.engine.prompting import PromptFormat
from benchmark.models.loading import build_tiny
from benchmark.run.teacher import LiveTeacher, TopkCache
from methods.base import Sampling, TeacherRequest
from methods.baselines import SFT
from tests.support.toy_task import ToyTask, toy_examples


class OnPolicySFT(SFT):
    """Cross-entropy on whatever answers the batch holds, half of them the student's own (a harness probe)."""

    name = "on-policy-sft"
    def teacher_request(self) -> TeacherRequest:
        return TeacherRequest("full_logits", on_policy_fraction=0.5, sampling=Sampling(max_new_tokens=6))

    fail_at_call: int | None = None  # raise on this loss call (a crash mid-training)
    calls = 0

    def loss(self, batch, student_logits, teacher, ce):
        type(self).calls += 1
        if type(self).calls == self.fail_at_call:
            raise KeyboardInterrupt("simulated crash")
        assert teacher is not None and teacher.logits is not None  # the live teacher scored this batch
        return super().loss(batch, student_logits, teacher, ce)


@pytest.fixture()
def setup(tmp_path):
    task = ToyTask(tmp_path, toy_examples(8, "train"), toy_examples(1, "test"))
    _, tokenizer = build_tiny("gpt2", seed=2)
    encoder = ViewEncoder(task, tokenizer, PromptFormat("plain", 0), task.load("train"), 12)
    return task, PairCollator(encoder, encoder)


def test_the_draw_is_a_fixed_function_of_seed_step_and_micro_batch():
    draws = [is_on_policy(0.5, 1, step, micro) for step in range(200) for micro in range(2)]
    assert draws == [is_on_policy(0.5, 1, step, micro) for step in range(200) for micro in range(2)]
    assert 0.4 < sum(draws) / len(draws) < 0.6
    assert draws != [is_on_policy(0.5, 2, step, micro) for step in range(200) for micro in range(2)]
    assert not any(is_on_policy(0.0, 1, step, 0) for step in range(50))
    assert all(is_on_policy(1.0, 1, step, 0) for step in range(50))


def test_samples_are_reproducible_and_leave_the_global_random_state_alone(setup):
    task, collator = setup
    student, _ = build_tiny("gpt2", seed=2)
    student.train()
    examples = task.load("train")[:3]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = sample_answers(student, collator.student, examples, Sampling(max_new_tokens=8), seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    again = sample_answers(student, collator.student, examples, Sampling(max_new_tokens=8), seed=5)
    other = sample_answers(student, collator.student, examples, Sampling(max_new_tokens=8), seed=6)
    assert first.answers == again.answers and first.answers != other.answers
    # A random student never emits EOS in 8 tokens: every sample hit the limit (min(8, max_answer_tokens 12)).
    assert first.tokens == [8, 8, 8] and first.complete == [False, False, False]
    assert student.training  # sampled in eval mode, the caller's mode restored


def test_a_sample_is_encoded_afresh_and_ends_with_eos_only_where_the_student_ended_it(setup):
    task, collator = setup
    example = task.load("train")[0]
    eos = collator.student.tokenizer.eos_token_id
    ended, cut = (collator([example], ["a sampled answer"], complete=[done]) for done in (True, False))
    assert ended.student.answer_ids[0, ended.student.answer_token_mask()[0]].tolist()[-1] == eos
    assert eos not in cut.student.answer_ids[0, cut.student.answer_token_mask()[0]].tolist()
    assert cut.teacher.answer_token_mask().sum() == ended.teacher.answer_token_mask().sum() - 1
    assert not collator._cache  # samples never enter the collator's cache
    collator([example])
    assert len(collator._cache) == 2  # the dataset's answers do (both views)


def test_an_on_policy_method_without_a_live_teacher_is_a_one_line_error(setup, tmp_path):
    task, collator = setup
    student, _ = build_tiny("gpt2", seed=2)
    cases = ((None, "^method 'on-policy-sft' needs teacher full_logits but no teacher source was given$"),
             (TopkCache(tmp_path / "c", {"k": 4}), r"^method 'on-policy-sft' trains on the student's own samples "
                                                    r"\(on_policy_fraction 0.5\) and needs a live teacher to score "
                                                    r"them; it was given a TopkCache$"))
    for teacher, message in cases:
        with pytest.raises(ValueError, match=message):
            train(student, OnPolicySFT(), task.load("train"), collator, TrainSettings(), 0, tmp_path / "ck",
                  tmp_path / "log.jsonl", teacher)


def run(task, collator, cell, fail_at_call=None):
    OnPolicySFT.calls, OnPolicySFT.fail_at_call = 0, fail_at_call
    student, _ = build_tiny("gpt2", seed=2)
    teacher = LiveTeacher(build_tiny("gpt2", seed=3)[0])
    cfg = TrainSettings(epochs=2, batch_size=2, grad_accum=2, learning_rate=1e-3, schedule="constant",
                        checkpoint_every=2)
    train(student, OnPolicySFT(), task.load("train"), collator, cfg, 1, cell / "checkpoint", cell / "train_log.jsonl",
          teacher)
    return [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]


def test_the_harness_logs_each_micro_batch_draw_and_resumes_exactly(setup, tmp_path):
    task, collator = setup
    log = run(task, collator, tmp_path / "whole")
    assert len(log) == 4
    for record in log:
        step = record["step"] - 1
        assert record["on_policy"] == [int(is_on_policy(0.5, 1, step, micro)) for micro in range(2)]
        assert record["on_policy_share"] == sum(record["on_policy"]) / 2
        sampled = 2 * sum(record["on_policy"])  # answers sampled this step (2 per on-policy micro-batch)
        assert record["generated_tokens"] == 6 * sampled  # a random student never ends its answer early
        assert record["generated_mean_tokens"] == (6.0 if sampled else 0.0)
        assert record["generated_limit_share"] == (1.0 if sampled else 0.0)
        assert (record["generation_s"] > 0) == (sampled > 0)
    assert 0 < sum(r["on_policy_share"] for r in log) < 4  # both kinds of micro-batch occur in this plan
    # A crash in step 3 (after the checkpoint of step 2), then a resume: the same log as the uninterrupted run.
    with pytest.raises(KeyboardInterrupt):
        run(task, collator, tmp_path / "resumed", fail_at_call=5)
    resumed = run(task, collator, tmp_path / "resumed")
    timing = ("elapsed_s", "generation_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed] == \
           [{k: v for k, v in r.items() if k not in timing} for r in log]
