"""Batched greedy generation (KV cache, left padding, stop at newline or EOS) and task scoring."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from benchmark.engine import distributed
from benchmark.engine.collate import ViewEncoder
from tasks.base import Example, Task


@dataclass
class EvalResult:
    metrics: dict[str, float]
    predictions: list[dict[str, Any]]
    stats: dict[str, float] = field(default_factory=dict)


def newline_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Ids of every token whose text contains a newline: generation stops on any of them."""
    return _newline_ids(_TokenizerKey(tokenizer))


class _TokenizerKey:
    """Hashable handle so the vocabulary scan runs once per tokenizer object."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __hash__(self) -> int:
        return id(self.tokenizer)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TokenizerKey) and other.tokenizer is self.tokenizer


@lru_cache(maxsize=8)
def _newline_ids(key: _TokenizerKey) -> tuple[int, ...]:
    tokenizer = key.tokenizer
    singles = [[i] for i in range(len(tokenizer))]
    # The Rust backend decodes the whole vocabulary ~8x faster than batch_decode, whose Python conversions dominate.
    backend = getattr(tokenizer, "backend_tokenizer", None)
    texts = backend.decode_batch(singles, skip_special_tokens=False) if backend else tokenizer.batch_decode(singles)
    return tuple(i for i, text in enumerate(texts) if "\n" in text)


def clean_prediction(text: str) -> str:
    """A decoded continuation as it is scored: the text before its first newline, stripped."""
    return text.split("\n", 1)[0].strip()


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = set(newline_token_ids(tokenizer))
    for source in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(source, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else list(eos or []))
    return sorted(ids)


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generate",
) -> tuple[list[str], int]:
    """Greedy continuations of ``prompts`` cut at the first newline, and the number of generated tokens.

    Prompts are tokenized once and batched in order of token count, so a batch is padded to the longest prompt
    it holds and no longer (prefill over padding is most of the cost on CPU); results come back in input order.
    """
    device = next(model.parameters()).device
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    prompt_ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"] if prompts else []
    order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]), reverse=True)
    outputs: list[str] = [""] * len(prompts)
    generated_tokens = 0
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False,
                          disable=not distributed.is_main()):
            chunk = order[start : start + batch_size]
            input_ids, attention_mask = left_pad([prompt_ids[i] for i in chunk], pad_id)
            sequences = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=stops,
                pad_token_id=pad_id,
                use_cache=True,
            )
            continuation = sequences[:, input_ids.size(1) :]
            for row, index in enumerate(chunk):
                tokens = _until_stop(continuation[row].tolist(), set(stops))
                generated_tokens += len(tokens)
                outputs[index] = clean_prediction(tokenizer.decode(tokens, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return outputs, generated_tokens


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of token rows padded on the left to the longest row."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        input_ids[b, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[b, width - len(row) :] = 1
    return input_ids, attention_mask


def _until_stop(tokens: list[int], stops: set[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in stops:
            return tokens[: i + 1]
    return tokens


def prediction_record(task: Task, example: Example, prediction: str) -> dict[str, Any]:
    """One line of ``predictions.jsonl``: the example's id and cluster, the prediction, its references and its
    per-example metrics (the unit the leaderboard's resampling works on). The question and context are the task's,
    recorded once per task in the store (:meth:`benchmark.store.Store.record_inputs`)."""
    return {
        "id": example.id, "cluster": example.cluster_id, "prediction": prediction,
        "references": list(example.references), **task.score_one(prediction, example.references),
    }


def evaluate(
    model: Any,
    encoder: ViewEncoder,
    examples: Sequence[Example],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "evaluate",
) -> EvalResult:
    """Generate for every example with ``encoder``'s prompt format and score with the task's metric.

    Under a multi-process launch every process generates for its share of the examples (greedy outputs do not
    depend on the batch a prompt is in) and every process gets all predictions."""
    task: Task = encoder.task
    rendered = [encoder.render(e) for e in examples]
    prompts = [r.text for r in rendered]
    started = time.perf_counter()
    own_tokens = 0

    def generate_share(share: list[str]) -> list[str]:
        nonlocal own_tokens
        texts, own_tokens = generate(model, encoder.tokenizer, share, max_new_tokens, batch_size, desc)
        return texts

    predictions = distributed.sharded_map(prompts, generate_share)
    generated = int(distributed.sum_over_processes([own_tokens])[0])
    elapsed = time.perf_counter() - started
    references = [e.references for e in examples]
    records = [prediction_record(task, e, p) for e, p in zip(examples, predictions)]
    stats = {
        "n_examples": float(len(examples)),
        "generation_wall_time_s": elapsed,
        "generated_tokens": float(generated),
        "generation_tokens_per_s": generated / elapsed if elapsed > 0 else 0.0,
        # What the token budget left of the prompt format: shots kept on average, share of contexts cut.
        "prompt_shots_requested": float(encoder.fmt.shots),
        "prompt_shots_mean": sum(r.shots_used for r in rendered) / max(len(rendered), 1),
        "prompt_context_truncated_share": sum(r.context_truncated for r in rendered) / max(len(rendered), 1),
    }
    return EvalResult(task.score(predictions, references), records, stats)
