"""On-policy micro-batches: the student answers a micro-batch's prompts itself and the live teacher scores its answers.

A method's teacher request declares the share of micro-batches it trains on its own samples
(``TeacherRequest.on_policy_fraction``, TRL's ``lmbda``) and how they are sampled (``TeacherRequest.sampling``). Per
micro-batch, as TRL does per gradient-accumulation slice (spec §8.7):

1. **The draw.** A uniform number keyed on (seed, optimizer step, micro-batch) decides whether the micro-batch is
   on-policy. It is a pure function of its key, so a resumed run draws exactly what the interrupted one drew, and
   every data-parallel process draws the same without a broadcast.
2. **The samples.** The student (in eval mode: no dropout) samples one answer per prompt with the sampling settings
   (temperature 0.9, top-p 0.95, no top-k; at most ``min(max_new_tokens, max_answer_tokens)`` tokens, since the
   collator keeps no more), from a generator seeded by the same key (the global RNG is forked, so training's own
   random state is untouched). Tokens after the first EOS are cut; the rest is decoded without special tokens, and
   the prompt format's answer prefix (" " after a plain ``Answer:``) is removed, as it is added back when encoding.
3. **The batch.** The collator re-encodes both views from the decoded answer (TRL re-encodes only the teacher's);
   an answer that hit the length limit gets no EOS. The live teacher scores it and the method's loss runs unchanged.

Each optimizer step logs which micro-batches were on-policy and what sampling cost (:meth:`OnPolicyBatches.step`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from benchmark.core.digest import digest
from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.evaluation import left_pad
from methods.base import Method, Sampling, TeacherRequest
from methods.batch import DistillBatch
from tasks.base import Example


def check_on_policy_teacher(method: Method, teacher: Any) -> None:
    """An on-policy method needs a live teacher: a cache holds only the dataset's answers. Never train it
    off-policy silently."""
    fraction = method.teacher_request().on_policy_fraction
    if fraction > 0 and not getattr(teacher, "live", False):
        source = "no teacher" if teacher is None else f"a {type(teacher).__name__}"
        raise ValueError(f"method {method.name!r} trains on the student's own samples (on_policy_fraction "
                         f"{fraction:g}) and needs a live teacher to score them; it was given {source}")


def key_seed(seed: int, step: int, micro: int, purpose: str) -> int:
    """A 60-bit seed for ``purpose`` ("draw", "sample") of micro-batch ``micro`` of optimizer step ``step``."""
    return int(digest(["on-policy", purpose, seed, step, micro])[:15], 16)


def is_on_policy(fraction: float, seed: int, step: int, micro: int) -> bool:
    """The fixed-seed draw of one micro-batch: on-policy with probability ``fraction``."""
    generator = torch.Generator().manual_seed(key_seed(seed, step, micro, "draw"))
    return float(torch.rand((), generator=generator)) < fraction


@dataclass(frozen=True)
class Samples:
    """The student's answers to a micro-batch's prompts."""

    answers: list[str]
    tokens: list[int]  # generated tokens per answer, up to and including the first EOS
    complete: list[bool]  # False: the answer hit the token limit before any EOS
    seconds: float


@torch.no_grad()
def sample_answers(model: Any, encoder: ViewEncoder, examples: Sequence[Example], sampling: Sampling,
                   seed: int) -> Samples:
    """One sampled answer per example from ``model`` prompted by ``encoder``, reproducible from ``seed``."""
    started = time.perf_counter()
    tokenizer = encoder.tokenizer
    device = next(model.parameters()).device
    rendered = [encoder.render(e) for e in examples]
    stops = _eos_ids(model, tokenizer)
    pad_id, was_training = _pad_id(tokenizer, stops), model.training
    input_ids, attention_mask = left_pad(tokenizer([r.text for r in rendered])["input_ids"], pad_id)
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            sequences = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                top_k=sampling.top_k, max_new_tokens=min(sampling.max_new_tokens, encoder.max_answer_tokens),
                eos_token_id=sorted(stops), pad_token_id=pad_id, use_cache=True,
            )
    finally:
        model.train(was_training)
    answers, tokens, complete = [], [], []
    for row, prompt in zip(sequences[:, input_ids.size(1):].tolist(), rendered):
        end = next((i for i, token in enumerate(row) if token in stops), None)
        text = tokenizer.decode(row[:end], skip_special_tokens=True)
        answers.append(text[len(prompt.answer_prefix):] if text.startswith(prompt.answer_prefix) else text)
        tokens.append(len(row) if end is None else end + 1)
        complete.append(end is not None)
    return Samples(answers, tokens, complete, time.perf_counter() - started)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos = model.generation_config.eos_token_id
    return ids | ({eos} if isinstance(eos, int) else set(eos or []))


def _pad_id(tokenizer: Any, stops: set[int]) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stops)


class OnPolicyBatches:
    """One optimizer step's micro-batches for an on-policy method: each the dataset's answers or, by its draw, the
    student's own samples."""

    def __init__(self, collator: PairCollator, request: TeacherRequest, seed: int) -> None:
        self.collator, self.fraction, self.sampling, self.seed = (collator, request.on_policy_fraction,
                                                                  request.sampling, seed)

    def step(self, model: Any, step: int, examples: Sequence[Sequence[Example]],
             answers: Sequence[Sequence[str]]) -> tuple[list[DistillBatch], dict[str, Any]]:
        """The micro-batches of optimizer step ``step`` (0-based) and what to log: ``on_policy`` (0/1 per
        micro-batch), the on-policy share, and for the samples their tokens, mean length, share that hit the
        length limit and generation seconds."""
        batches, drawn, samples = [], [], []
        for micro, (part, targets) in enumerate(zip(examples, answers)):
            drawn.append(int(is_on_policy(self.fraction, self.seed, step, micro)))
            if not drawn[-1]:
                batches.append(self.collator(part, targets))
                continue
            sampled = sample_answers(model, self.collator.student, part, self.sampling,
                                     key_seed(self.seed, step, micro, "sample"))
            samples.append(sampled)
            batches.append(self.collator(part, sampled.answers, complete=sampled.complete))
        lengths = [n for s in samples for n in s.tokens]
        return batches, {
            "on_policy": drawn,
            "on_policy_share": sum(drawn) / max(len(drawn), 1),
            "generated_tokens": sum(lengths),
            "generated_mean_tokens": sum(lengths) / len(lengths) if lengths else 0.0,
            "generated_limit_share": sum(not c for s in samples for c in s.complete) / len(lengths) if lengths else 0.0,
            "generation_s": sum(s.seconds for s in samples),
        }
