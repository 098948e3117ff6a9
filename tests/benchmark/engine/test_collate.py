import pytest
import torch

from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.prompting import PromptFormat, build_prompt
from benchmark.models.loading import load_family_tokenizer
from tests.support.toy_task import ToyTask, toy_examples


@pytest.fixture(scope="module")
def tokenizers():
    return load_family_tokenizer("gpt2"), load_family_tokenizer("qwen2")


@pytest.fixture()
def task(tmp_path):
    return ToyTask(tmp_path, toy_examples(8, "train"), toy_examples(4, "test"))


def make_collator(task, tokenizers, shots=1, max_prompt_tokens=512):
    student_tok, teacher_tok = tokenizers
    pool = task.load("train")
    student = ViewEncoder(task, student_tok, PromptFormat("plain", 0, max_prompt_tokens=max_prompt_tokens), pool, 32)
    teacher = ViewEncoder(task, teacher_tok, PromptFormat("plain", shots, max_prompt_tokens=max_prompt_tokens), pool, 32)
    return PairCollator(student, teacher)


def test_labels_rows_and_masks_line_up(task, tokenizers):
    collator = make_collator(task, tokenizers)
    examples = task.load("train")[:3]
    batch = collator(examples)
    for view in (batch.student, batch.teacher):
        for b in range(3):
            n = int((view.labels[b] != -100).sum())
            rows = view.answer_rows[b, :n]
            # Row p predicts token p + 1, and the labelled tokens are exactly the answer ids.
            assert torch.equal(view.input_ids[b, rows + 1], view.answer_ids[b, :n])
            assert torch.equal(view.labels[b, rows + 1], view.answer_ids[b, :n])
            # The last answer token is EOS: trained by CE, excluded from distillation.
            assert int(view.answer_ids[b, n - 1]) == collator.student.tokenizer.eos_token_id or view is batch.teacher
            assert not bool(view.answer_mask[b, n - 1])
            assert not bool(view.answer_mask[b, n:].any())
            assert int(view.attention_mask[b].sum()) == int((view.labels[b] != -100).sum()) + int(rows[0]) + 1


def test_offsets_cover_the_same_answer_string_in_both_views(task, tokenizers):
    collator = make_collator(task, tokenizers)
    examples = task.load("train")[:6]
    batch = collator(examples)
    for view in (batch.student, batch.teacher):
        for b, answer in enumerate(batch.answers):
            spans = view.answer_offsets[b][view.answer_mask[b]].tolist()
            assert spans[0][0] == 0 and spans[-1][1] == len(answer)
            # Byte-level BPE spans are contiguous: together they spell the answer (without its leading space).
            assert "".join(answer[s:e] for s, e in spans).replace(" ", "") == answer.replace(" ", "")


def test_replacement_answers_are_used_for_both_views(task, tokenizers):
    collator = make_collator(task, tokenizers)
    examples = task.load("train")[:2]
    batch = collator(examples, ["alpha beta", "gamma"])
    assert batch.answers == ["alpha beta", "gamma"]
    student_tok = collator.student.tokenizer
    n = int(batch.student.answer_mask[0].sum())
    assert student_tok.decode(batch.student.answer_ids[0, :n]).strip() == "alpha beta"


def test_example_is_never_its_own_shot(task, tokenizers):
    collator = make_collator(task, tokenizers, shots=1)
    for example in task.load("train"):
        shots = collator.teacher.shots_for(example)
        assert len(shots) == 1 and shots[0].id != example.id


def test_prompt_budget_drops_shots_then_truncates_context(task, tokenizers):
    tokenizer = tokenizers[0]
    long = task.with_context(task.load("test")[0], "word " * 400)
    shots = task.load("train")[:2]
    fmt = PromptFormat("plain", 2, max_prompt_tokens=64)
    rendered = build_prompt(task, long, shots, fmt, tokenizer)
    assert rendered.shots_used == 0 and rendered.context_truncated
    assert len(tokenizer(rendered.text)["input_ids"]) <= 64
    assert rendered.text.endswith("Answer:")


def test_bad_prompt_format_values_are_rejected():
    with pytest.raises(ValueError, match="prompt style 'fancy'"):
        PromptFormat("fancy", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shots must be >= 0"):
        PromptFormat("plain", -1)
