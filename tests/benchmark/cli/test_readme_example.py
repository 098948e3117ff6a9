"""The "Adding a method" example in README.md registers and trains (so the README stays true)."""
import re
from pathlib import Path

import pytest
import torch

from benchmark.config import TrainSettings
from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.harness import train
from benchmark.engine.prompting import PromptFormat
from benchmark.models.loading import build_tiny
from benchmark.run.teacher import LiveTeacher
from methods.base import TeacherRequest
from methods.registry import METHODS, include_file, load_methods
from tests.support.toy_task import ToyTask, toy_examples

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_method_example_trains(tmp_path):
    block = re.search(r"```python\n(# my_method\.py\n.*?)```", README.read_text(), re.S)
    assert block, "README lost its method example"
    source = tmp_path / "my_method.py"
    source.write_text(block.group(1))
    load_methods()
    if "top1" not in METHODS:
        include_file(source)
    method = METHODS.get("top1")()
    assert method.teacher_request() == TeacherRequest(needs="topk_logits", topk=1)
    with pytest.raises(ValueError, match="^weight=-1.0: expected a finite number >= 0$"):
        method.config_class(weight=-1.0)
    teacher, teacher_tok = build_tiny("qwen2", 1)
    student, student_tok = build_tiny("gpt2", 2)
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    collator = PairCollator(ViewEncoder(task, student_tok, PromptFormat("plain", 0), pool, 16),
                            ViewEncoder(task, teacher_tok, PromptFormat("plain", 0), pool, 16))
    before = [p.detach().clone() for p in student.parameters()]
    stats = train(student, method, pool, collator, TrainSettings(epochs=1.0, batch_size=2), 0,
                  tmp_path / "cell" / "checkpoint", tmp_path / "cell" / "train_log.jsonl", LiveTeacher(teacher))
    assert stats.steps == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    assert "top1" in (tmp_path / "cell" / "train_log.jsonl").read_text()
