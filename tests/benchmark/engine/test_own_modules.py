"""Methods that own trainable modules: the harness trains them at their own learning rate, checkpoints them (resume
is exact), counts them, and hands the student's last hidden state at its answer rows to a method that asks."""
import json
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

from benchmark.config import TrainSettings
from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.harness import answer_row_forward, train
from benchmark.engine.prompting import PromptFormat
from benchmark.models.loading import build_tiny
from methods.base import Method, MethodConfig
from methods.model_parts import OwnModules
from tests.support.toy_task import ToyTask, toy_examples


@dataclass(frozen=True)
class ProbeConfig(MethodConfig):
    projector_lr: float = 5e-2


class Probe(Method):
    """CE plus a projector's squared output on the student's hidden states; fails at a chosen loss call."""

    name = "probe"
    config_class = ProbeConfig
    student_hidden_states = True
    calls, fail_at_call = 0, None

    def build_modules(self, student, teacher):
        assert teacher is None
        torch.manual_seed(0)
        self.projector = torch.nn.Linear(student.hidden_size, 3)
        return OwnModules(self.projector, self.config.projector_lr)

    def loss(self, batch, student_logits, teacher, ce):
        Probe.calls += 1
        if Probe.calls == Probe.fail_at_call:
            raise KeyboardInterrupt
        hidden = batch.student.gather_answer_rows(batch.student.hidden)
        probe = self.projector(hidden)[batch.student.answer_token_mask()].pow(2).mean()
        return {"loss": ce + probe, "ce": ce.detach(), "probe": probe.detach()}


@pytest.fixture()
def setup(tmp_path):
    task = ToyTask(tmp_path, toy_examples(8, "train"), toy_examples(2, "test"))
    _, tokenizer = build_tiny("gpt2", seed=2)
    return task, PairCollator(ViewEncoder(task, tokenizer, PromptFormat("plain", 0), task.load("train"), 16), None)


def run(task, collator, cell, fail_at_call=None):
    Probe.calls, Probe.fail_at_call = 0, fail_at_call
    student, _ = build_tiny("gpt2", seed=2)
    method = Probe()
    cfg = TrainSettings(epochs=1, batch_size=2, grad_accum=2, learning_rate=1e-3, schedule="onecycle",
                        checkpoint_every=1)
    stats = train(student, method, task.load("train"), collator, cfg, 1, cell / "checkpoint", cell / "train_log.jsonl")
    log = [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]
    return stats, log, method, student


def test_own_modules_train_are_counted_and_resume_exactly(setup, tmp_path):
    task, collator = setup
    stats, log, method, student = run(task, collator, tmp_path / "whole")
    assert stats.trainable_parameters == {"student": sum(p.numel() for p in student.parameters()), "method": 3 * 64 + 3}
    saved = load_file(tmp_path / "whole" / "checkpoint" / "method.safetensors")
    assert torch.equal(saved["weight"], method.projector.weight.detach())
    torch.manual_seed(0)
    assert not torch.equal(torch.nn.Linear(64, 3).weight, method.projector.weight)  # it trained
    with pytest.raises(KeyboardInterrupt):  # a crash in step 2, after the checkpoint of step 1
        run(task, collator, tmp_path / "resumed", fail_at_call=3)
    _, resumed_log, resumed, _ = run(task, collator, tmp_path / "resumed")
    drop = ("elapsed_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed_log] == \
           [{k: v for k, v in r.items() if k not in drop} for r in log]
    assert torch.equal(resumed.projector.weight, method.projector.weight)


def test_the_projector_group_runs_at_its_own_rate(setup, tmp_path):
    """A frozen student (lr 0 would still move by weight decay, so: no student step at all) shows the group split:
    after one step, the projector moved by about its own rate (Adam's first step is ±lr per weight)."""
    task, collator = setup
    student, _ = build_tiny("gpt2", seed=2)
    method = Probe()
    Probe.calls, Probe.fail_at_call = 0, None
    cfg = TrainSettings(epochs=0.25, batch_size=2, grad_accum=1, learning_rate=1e-4, schedule="constant",
                        weight_decay=0.0)
    torch.manual_seed(0)
    initial = torch.nn.Linear(64, 3).weight.detach().clone()
    train(student, method, task.load("train"), collator, cfg, 1, tmp_path / "c" / "checkpoint", tmp_path / "c" / "log")
    step = (method.projector.weight.detach() - initial).abs()
    assert step.max() == pytest.approx(5e-2, rel=1e-3)


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_the_student_hidden_state_is_the_one_its_head_reads(family, setup):
    task, _ = setup
    model, tokenizer = build_tiny(family, seed=1)
    encoder = ViewEncoder(task, tokenizer, PromptFormat("plain", 0), task.load("train"), 16)
    batch = PairCollator(encoder, None)(task.load("train")[:3])
    with torch.no_grad():
        logits, reindexed = answer_row_forward(model, batch, hidden=True)
        plain, _ = answer_row_forward(model, batch)
        head = model.get_output_embeddings()(reindexed.student.hidden)
    assert reindexed.student.hidden.shape[:2] == logits.shape[:2]
    assert torch.allclose(head, logits, atol=1e-5) and torch.equal(logits, plain)
