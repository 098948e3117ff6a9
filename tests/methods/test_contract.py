"""Every registered method, two optimizer steps on a tiny pair: finite loss, student gradients, no teacher gradients."""
import pytest
import torch

from benchmark.collate import PairCollator, ViewEncoder
from benchmark.harness import answer_ce_sum, answer_row_forward
from benchmark.models import build_tiny
from benchmark.prompting import PromptFormat
from benchmark.teacher import LiveTeacher
from methods.base import TEACHER_NEEDS
from methods.registry import load_methods
from methods.resources import PairResources
from tests.core.toy_task import ToyTask, toy_examples

METHODS = load_methods()


@pytest.fixture(scope="module")
def models():
    return {family: build_tiny(family, seed) for family, seed in (("qwen2", 1), ("gpt2", 2))} | {
        "gpt2-teacher": build_tiny("gpt2", 3)
    }


@pytest.mark.parametrize("name", METHODS.names())
def test_two_steps_train_the_student_only(name, models, tmp_path):
    method_class = METHODS.get(name)
    method = method_class()
    assert method.teacher_needs in TEACHER_NEEDS
    teacher_key = "gpt2-teacher" if method.same_tokenizer_only else "qwen2"
    teacher, teacher_tok = models[teacher_key]
    student, student_tok = build_tiny("gpt2", seed=2)
    task = ToyTask(tmp_path, toy_examples(6, "train"), toy_examples(2, "test"))
    pool = task.load("train")
    collator = PairCollator(
        ViewEncoder(task, student_tok, PromptFormat("plain", 0), pool, 16),
        ViewEncoder(task, teacher_tok, PromptFormat("plain", 1), pool, 16),
    )
    method.prepare(PairResources(student_tok, teacher_tok))
    live = LiveTeacher(teacher)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    student.train()
    for step in range(2):
        batch = collator(pool[step * 3 : step * 3 + 3])
        outputs = live.outputs(batch) if method.teacher_needs not in ("none", "text") else None
        logits, batch = answer_row_forward(student, batch)  # the harness's own forward
        ce = answer_ce_sum(logits, batch.student) / (batch.student.labels != -100).sum()
        terms = method.loss(batch, logits, outputs, ce)
        assert terms["loss"].dim() == 0 and torch.isfinite(terms["loss"])
        assert all(torch.isfinite(v).all() for v in terms.values())
        optimizer.zero_grad()
        terms["loss"].backward()
        grads = [p.grad for p in student.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
        assert all(p.grad is None for p in teacher.parameters())
        optimizer.step()


def test_token_kl_refuses_a_cross_tokenizer_batch(models, tmp_path):
    from methods.baselines import SameTokenizerError, TokenKL

    teacher, teacher_tok = models["qwen2"]
    student, student_tok = models["gpt2"]
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    collator = PairCollator(ViewEncoder(task, student_tok, PromptFormat("plain", 0), pool, 16),
                            ViewEncoder(task, teacher_tok, PromptFormat("plain", 0), pool, 16))
    batch = collator(pool[:2])
    logits = student(input_ids=batch.student.input_ids).logits
    with pytest.raises(SameTokenizerError, match="identical student and teacher answer tokens"):
        TokenKL().loss(batch, logits, LiveTeacher(teacher).outputs(batch), torch.tensor(1.0))


def test_token_kl_is_zero_when_teacher_equals_student(models, tmp_path):
    from methods.baselines import TokenKL

    student, tokenizer = models["gpt2"]
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    encoder = ViewEncoder(task, tokenizer, PromptFormat("plain", 0), pool, 16)
    batch = PairCollator(encoder, encoder)(pool[:3])
    logits = student(input_ids=batch.student.input_ids, attention_mask=batch.student.attention_mask).logits
    terms = TokenKL().loss(batch, logits, LiveTeacher(student).outputs(batch), torch.tensor(0.0))
    assert float(terms["kl"]) == pytest.approx(0.0, abs=1e-6)


def test_live_teacher_rows_equal_the_full_forward(models, tmp_path):
    teacher, teacher_tok = models["qwen2"]
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    encoder = ViewEncoder(task, teacher_tok, PromptFormat("plain", 1), pool, 16)
    batch = PairCollator(encoder, encoder)(pool[:3])
    rows = LiveTeacher(teacher).outputs(batch).logits
    with torch.no_grad():
        full = teacher(input_ids=batch.teacher.input_ids, attention_mask=batch.teacher.attention_mask).logits
    assert torch.allclose(rows, batch.teacher.gather_answer_rows(full), atol=1e-5)


@pytest.mark.parametrize("head_argument", [True, False], ids=["logits_to_keep", "full-logits-fallback"])
def test_answer_row_forward_equals_the_full_forward(models, tmp_path, head_argument):
    student, tokenizer = models["gpt2"]
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    encoder = ViewEncoder(task, tokenizer, PromptFormat("plain", 1), pool, 16)
    batch = PairCollator(encoder, None)(pool[:3])
    model = student if head_argument else _WithoutLogitsToKeep(student)
    with torch.no_grad():
        full = student(input_ids=batch.student.input_ids, attention_mask=batch.student.attention_mask).logits
        rows, reindexed = answer_row_forward(model, batch)
    valid = batch.student.answer_token_mask()
    assert rows.size(1) == len(torch.unique(batch.student.answer_rows[valid])) < full.size(1)
    expected, got = batch.student.gather_answer_rows(full), reindexed.student.gather_answer_rows(rows)
    assert torch.allclose(got[valid], expected[valid], atol=1e-5)
    # CE by hand from the full logits: -log p(answer token) summed over every answer token, EOS included.
    by_hand = -torch.log_softmax(expected, -1).gather(-1, batch.student.answer_ids.unsqueeze(-1)).squeeze(-1)[valid].sum()
    assert float(answer_ce_sum(rows, reindexed.student)) == pytest.approx(float(by_hand), rel=1e-5)
    assert float(answer_ce_sum(full, batch.student)) == pytest.approx(float(by_hand), rel=1e-5)


class _WithoutLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward has no ``logits_to_keep`` (as some hub architectures)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask)
