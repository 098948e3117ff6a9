import json

import pytest
import torch

from benchmark.config import ConfigError, TrainSettings
from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.harness import (
    data_parallel_shape,
    micro_batch_plan,
    step_examples,
    train,
)
from benchmark.engine.prompting import PromptFormat
from benchmark.models.loading import build_tiny
from methods.baselines import SFT
from tests.support.toy_task import ToyTask, toy_examples


def test_plan_visits_every_example_once_per_epoch_and_is_seeded():
    cfg = TrainSettings(epochs=2, batch_size=3, grad_accum=2)
    plan = micro_batch_plan(10, cfg, seed=5)
    flat = [i for step in plan for micro in step.micro_batches for i in micro]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert all(len(step.micro_batches) <= 2 and all(len(m) <= 3 for m in step.micro_batches) for step in plan)
    assert all(step.step_micro_batches == len(step.micro_batches) and not step.stand_in for step in plan)
    assert plan == micro_batch_plan(10, cfg, seed=5)
    assert plan != micro_batch_plan(10, cfg, seed=6)
    half = micro_batch_plan(10, TrainSettings(epochs=0.5, batch_size=3), seed=5)
    assert sum(len(m) for step in half for m in step.micro_batches) == 5


def test_plan_shards_each_step_over_the_processes():
    """Two processes split each step's examples (the single-process step's, in order) into contiguous halves;
    the short last step (2 of 10 examples left over) gives one each; the step's micro-batch count is global."""
    cfg = TrainSettings(epochs=1, batch_size=2, grad_accum=2)  # effective batch 4
    steps = step_examples(10, cfg, seed=3)
    shares = [micro_batch_plan(10, cfg, 3, processes=2, rank=r) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == len(steps) == 3
    for step, mine, theirs in zip(steps, *shares):
        assert [i for m in mine.micro_batches + theirs.micro_batches for i in m] == step
        assert mine.step_micro_batches == theirs.step_micro_batches == len(mine.micro_batches) + len(theirs.micro_batches)
    assert [len(m) for m in shares[0][0].micro_batches] == [2] and shares[0][-1].micro_batches == [steps[-1][:1]]
    one = micro_batch_plan(10, cfg, 3)
    assert [[i for m in share.micro_batches for i in m] for share in one] == steps


def test_a_process_without_examples_runs_a_zero_weight_stand_in():
    cfg = TrainSettings(epochs=1, batch_size=4, grad_accum=1)
    last = [micro_batch_plan(5, cfg, 0, processes=4, rank=r)[-1] for r in range(4)]  # 1 example, 4 processes
    assert [share.stand_in for share in last] == [False, True, True, True]
    assert all(share.micro_batches == last[0].micro_batches and share.step_micro_batches == 1 for share in last)


def test_data_parallel_shape_keeps_the_effective_batch():
    assert data_parallel_shape(TrainSettings(batch_size=2, grad_accum=4), 2).__dict__ == {
        "processes": 2, "effective_batch": 8, "per_device_batch": 2, "accumulation": 2}
    assert data_parallel_shape(TrainSettings(batch_size=8, grad_accum=1), 4).per_device_batch == 2
    with pytest.raises(ValueError, match=r"effective batch 2 \(batch_size 2 x grad_accum 1\) cannot be split evenly "
                                         r"over 4 processes; make it a multiple of 4"):
        data_parallel_shape(TrainSettings(batch_size=2, grad_accum=1), 4)


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("grad_accum", 0), ("schedule", "linear"), ("epochs", 0),
                                         ("learning_rate", -1e-4), ("warmup_ratio", 1.0)])
def test_bad_train_settings_are_rejected(field, value):
    with pytest.raises(ConfigError, match=rf"^train\.{field}="):
        TrainSettings(**{field: value})


def run_train(model, method, examples, collator, cfg, seed, cell, *args):
    return train(model, method, examples, collator, cfg, seed, cell / "checkpoint", cell / "train_log.jsonl", *args)


def _setup(tmp_path, seed=0):
    task = ToyTask(tmp_path, toy_examples(8, "train"), toy_examples(2, "test"))
    model, tokenizer = build_tiny("gpt2", seed=seed)
    encoder = ViewEncoder(task, tokenizer, PromptFormat("plain", 0), task.load("train"), 16)
    return task, model, PairCollator(encoder, None)


def test_gradient_accumulation_matches_one_large_batch(tmp_path):
    """CE is normalised by the answer tokens of the whole optimizer step, not per micro-batch: the step's loss
    and its (pre-clipping) gradient norm are the same however the step is split."""
    logs = []
    for batch_size, accum in ((4, 1), (2, 2), (1, 4)):
        task, model, collator = _setup(tmp_path)
        cfg = TrainSettings(epochs=0.5, batch_size=batch_size, grad_accum=accum, schedule="constant")
        run_train(model, SFT(), task.load("train"), collator, cfg, 0, tmp_path / f"c{batch_size}")
        log = [json.loads(line) for line in (tmp_path / f"c{batch_size}" / "train_log.jsonl").read_text().splitlines()]
        assert len(log) == 1 and set(log[0]) >= {"step", "loss", "ce", "grad_norm", "lr", "answer_tokens"}
        logs.append(log[0])
    for other in logs[1:]:
        assert other["answer_tokens"] == logs[0]["answer_tokens"]
        assert other["ce"] == pytest.approx(logs[0]["ce"], rel=1e-5)
        assert other["grad_norm"] == pytest.approx(logs[0]["grad_norm"], rel=1e-4)


def test_training_lowers_the_loss_and_logs_every_step(tmp_path):
    task, model, collator = _setup(tmp_path)
    cfg = TrainSettings(epochs=6, batch_size=4, schedule="constant", learning_rate=1e-2)
    stats = run_train(model, SFT(), task.load("train"), collator, cfg, 1, tmp_path / "cell")
    log = [json.loads(line) for line in (tmp_path / "cell" / "train_log.jsonl").read_text().splitlines()]
    assert stats.steps == len(log) == 12
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    assert (tmp_path / "cell" / "checkpoint" / "state.json").exists()  # saved at the end


def test_missing_teacher_source_is_an_error(tmp_path):
    from methods.baselines import TokenKL

    task, model, collator = _setup(tmp_path)
    with pytest.raises(ValueError, match="needs teacher full_logits"):
        run_train(model, TokenKL(), task.load("train"), collator, TrainSettings(), 0, tmp_path / "c")


def test_logged_lr_is_the_rate_each_step_used(tmp_path):
    """The published OneCycle (pct_start 0.1, div_factor 2, final_div_factor 5), replayed independently: each
    logged rate is the one its step ran at, ending at the minimum lr / 2 / 5 (not the rate of the step after)."""
    task, model, collator = _setup(tmp_path)
    cfg = TrainSettings(epochs=2, batch_size=2, learning_rate=1e-3, schedule="onecycle")
    run_train(model, SFT(), task.load("train"), collator, cfg, 1, tmp_path / "cell")
    rates = [json.loads(line)["lr"] for line in (tmp_path / "cell" / "train_log.jsonl").read_text().splitlines()]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    replay = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=8, pct_start=0.1,
                                                 div_factor=2.0, final_div_factor=5.0)
    expected = []
    for _ in range(8):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        replay.step()
    assert rates == pytest.approx(expected, rel=1e-9)
    assert rates[-1] == pytest.approx(1e-4)
