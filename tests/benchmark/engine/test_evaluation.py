"""Batched greedy generation: left padding, batches by token count, input order kept, newline cut."""
from __future__ import annotations

import pytest
import torch

from benchmark.engine.evaluation import (
    clean_prediction,
    generate,
    left_pad,
    newline_token_ids,
    stop_token_ids,
)
from benchmark.models.loading import load_family_tokenizer
from tests.support.students import varied_tiny_student

# Token counts under GPT-2 (no special tokens added): 1, 9, 2, 8, 3, 7.
PROMPTS = ["Hi", "one two three four five six seven eight nine", "Hi there", "a b c d e f g h",
           "Answer: yes", "Question: what is the capital of"]


def test_left_pad_by_hand() -> None:
    input_ids, attention_mask = left_pad([[5, 6, 7], [8], []], pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
    assert attention_mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]


def test_clean_prediction_keeps_the_first_line_stripped() -> None:
    assert clean_prediction("  the answer \nmore text\n") == "the answer"
    assert clean_prediction("\nall after a newline") == ""


def test_batches_hold_prompts_of_similar_token_count_and_outputs_keep_input_order() -> None:
    model, tokenizer = varied_tiny_student()
    counts = [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    assert counts == [1, 9, 2, 8, 3, 7]
    widths = []
    original = model.generate

    def recording_generate(**kwargs):
        widths.append(kwargs["input_ids"].size(1))
        assert kwargs["attention_mask"].sum(1).tolist() == sorted(kwargs["attention_mask"].sum(1).tolist(), reverse=True)
        return original(**kwargs)

    model.generate = recording_generate
    batched, generated = generate(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2)
    assert widths == [9, 7, 2]  # {9, 8}, {7, 3}, {2, 1}: each batch padded to its own longest prompt only
    one_by_one = [generate(model, tokenizer, [p], max_new_tokens=6, batch_size=1)[0][0] for p in PROMPTS]
    assert batched == one_by_one and len(set(batched)) > 3  # prompt-dependent answers, each in its input slot
    assert 0 < generated <= 6 * len(PROMPTS)
    assert generate(model, tokenizer, [], max_new_tokens=6, batch_size=2) == ([], 0)


def test_generation_stops_at_a_newline_token() -> None:
    model, tokenizer = varied_tiny_student()
    newline = tokenizer.convert_tokens_to_ids("Ċ")  # GPT-2's byte-level "\n"
    assert newline in stop_token_ids(model, tokenizer)
    bias = torch.zeros(model.config.vocab_size)
    bias[newline] = 1e4  # makes "\n" the first generated token
    model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + bias)
    outputs, generated = generate(model, tokenizer, PROMPTS[:2], max_new_tokens=8, batch_size=2)
    assert outputs == ["", ""] and generated == 2  # one token each: the newline, then stop


@pytest.mark.parametrize("family", ["pythia-gptneox", "llama2"])
def test_newline_tokens_are_every_token_whose_text_holds_a_newline(family: str) -> None:
    tokenizer = load_family_tokenizer(family)
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]  # the slow, obvious reference
    expected = tuple(i for i, text in enumerate(texts) if "\n" in text)
    assert newline_token_ids(tokenizer) == expected and expected
