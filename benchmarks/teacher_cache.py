"""Teacher-output cache: wall time of top-k methods trained with a live teacher vs from the cache, and cache size.

One process, one run: builds the top-k cache once, then trains each method twice (live teacher, cached teacher)
on the same examples and prints the per-method and total ratios, and the cache size per 1,000 examples.
Usage: python -m benchmarks.teacher_cache [--pair default] [--examples 32] [--methods uld uld:alignment=offsets ...]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmark.collate import PairCollator, ViewEncoder
from benchmark.harness import LiveTeacher, TrainConfig, train
from benchmark.models import default_cache_dir, load_model, load_tokenizer
from benchmark.pairs import PAIRS
from benchmark.prompting import PromptFormat
from benchmark.runner import subset
from benchmark.teacher_cache import TopkCache, examples_digest
from methods.registry import load_methods
from tasks.registry import TASKS, default_data_dir, load_tasks

DEFAULT_METHODS = ["uld", "uld:alignment=offsets", "mlot", "mlot:alignment=offsets"]


def parse_method(text: str):
    name, _, raw = text.partition(":")
    fields = {k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
              for k, v in (item.split("=", 1) for item in raw.split(",") if item)}
    cls = load_methods().get(name)
    return cls(cls.config_class.from_dict(fields))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="default")
    parser.add_argument("--task", default="qed")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--topk", type=int, default=100)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_tasks()
    task = TASKS.get(args.task)(default_data_dir())
    pair = PAIRS.get(args.pair)
    pool = task.load("train")
    examples = subset(pool, args.examples)
    answers = [e.answer for e in examples]
    teacher_tok = load_tokenizer(pair.teacher)
    student_tok = load_tokenizer(pair.student)
    collator = PairCollator(
        ViewEncoder(task, student_tok, PromptFormat(pair.student.prompt_style, 0), pool, 64),
        ViewEncoder(task, teacher_tok, PromptFormat(pair.teacher.prompt_style, task.default_shots), pool, 64),
    )
    cfg = TrainConfig(epochs=1, batch_size=2, learning_rate=1e-5)
    teacher_model, _ = load_model(pair.teacher)
    live = LiveTeacher(teacher_model)
    with tempfile.TemporaryDirectory() as tmp:
        cache = TopkCache(Path(tmp), {"k": args.topk, "bench": args.pair, "examples": examples_digest(examples, answers)})
        started = time.perf_counter()
        cache.build(live, collator, examples, answers, batch_size=4)
        build_s = time.perf_counter() - started
        size_per_1000 = cache.size_bytes() / len(examples) * 1000
        rows = []
        for text in args.methods:
            timings = []
            for source in (live, cache):
                method = parse_method(text)
                method.prepare(student_tok, teacher_tok, str(default_cache_dir()))
                student, _ = load_model(pair.student)
                started = time.perf_counter()
                train(student, method, examples, collator, cfg, seed=1, cell_dir=Path(tmp) / "cell" / text / type(source).__name__,
                      teacher=source, answers=answers)
                timings.append(time.perf_counter() - started)
            rows.append((text, *timings))
    print(f"pair {pair.name}, task {args.task}, {len(examples)} examples, batch 2, top-{args.topk}")
    print(f"cache build (teacher forward over the examples): {build_s:.1f} s; size {size_per_1000 / 2**20:.2f} MiB per 1,000 examples")
    print(f"{'method':28s} {'live (s)':>9s} {'cached (s)':>10s} {'ratio':>6s}")
    for text, live_s, cached_s in rows:
        print(f"{text:28s} {live_s:9.1f} {cached_s:10.1f} {live_s / cached_s:6.2f}")
    total_live, total_cached = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'all methods':28s} {total_live:9.1f} {total_cached:10.1f} {total_live / total_cached:6.2f}")
    print(f"including the one-off cache build: ratio {total_live / (total_cached + build_s):.2f}")


if __name__ == "__main__":
    main()
