"""Evaluator throughput: batch-8 vs batch-1 greedy generation on the offline student, one run, one process.

Prints the speed-up of batch 8 over batch 1 and the share of identical predictions (target: >= 3x, >= 97%).
Usage: python -m perf.eval_throughput [--examples 32] [--shots 0] [--batch 8]
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from benchmark.config import Settings
from benchmark.core.paths import default_cache_dir, default_data_dir
from benchmark.engine.evaluation import generate
from benchmark.models.loading import load_model
from benchmark.models.pairs import PAIRS
from benchmark.run.context import TaskPairContext
from tasks.registry import TASKS, load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--shots", type=int, default=0, help="shots in the student prompt (the smoke budget uses 0)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_tasks()
    settings = Settings().override({"data.limit_eval": args.examples, "prompt.student_shots": args.shots})
    ctx = TaskPairContext.build(TASKS.get("qed")(default_data_dir()), PAIRS.get("default"), settings,
                                default_cache_dir())
    spec = ctx.pair.student
    model, tokenizer = load_model(spec)
    encoder = ctx.encoder(tokenizer, ctx.student_format)
    prompts = [encoder.prompt_text(e) for e in ctx.test_set()]
    generate(model, tokenizer, prompts[:2], args.max_new_tokens, 2)  # warm-up (first-call allocations)
    timings, outputs = {}, {}
    for batch in (1, args.batch):
        started = time.perf_counter()
        outputs[batch], tokens = generate(model, tokenizer, prompts, args.max_new_tokens, batch)
        timings[batch] = time.perf_counter() - started
        print(f"batch {batch:2d}: {timings[batch]:7.1f} s, {tokens} generated tokens, {tokens / timings[batch]:6.1f} tok/s")
    same = sum(a == b for a, b in zip(outputs[1], outputs[args.batch])) / len(prompts)
    print(f"{spec.name} on {len(prompts)} QED dev examples ({args.shots}-shot, {torch.get_num_threads()} threads)")
    print(f"speed-up batch {args.batch} over batch 1: {timings[1] / timings[args.batch]:.2f}x (target >= 3x)")
    print(f"identical predictions: {same:.1%} (target >= 97%)")
    for a, b in zip(outputs[1], outputs[args.batch]):
        if a != b:
            print(f"  differs: {a!r} vs {b!r}")


if __name__ == "__main__":
    main()
