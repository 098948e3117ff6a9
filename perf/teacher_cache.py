"""Teacher-output cache: wall time of top-k methods trained with a live teacher vs from the cache, and cache size.

One process, one run: builds the top-k cache once (through the cell recipe, as a real cell does), then trains each
method twice on the same examples, once from the live teacher and once from the cache, and prints the per-method
and total ratios and the cache size per 1,000 examples.
Usage: python -m perf.teacher_cache [--pair default] [--examples 32] [--methods uld uld:alignment=offsets ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from benchmark.cli.resolve import parse_field
from benchmark.config import Settings
from benchmark.core.paths import default_cache_dir, default_data_dir
from benchmark.models.pairs import PAIRS
from benchmark.run.context import TaskPairContext
from benchmark.run.recipe import CellOptions, CellRecipe
from benchmark.run.teacher import LiveTeacher, Teachers, TopkCache
from benchmark.store import CellKey, Store
from methods.base import Method
from methods.registry import load_methods
from tasks.registry import TASKS, load_tasks

DEFAULT_METHODS = ["uld", "uld:alignment=offsets", "mlot", "mlot:alignment=offsets"]


def parse_method(text: str) -> Method:
    """``name[:field=value,...]`` -> a method instance, values parsed as ``--set`` parses them."""
    name, _, raw = text.partition(":")
    cls = load_methods().get(name)
    fields = dict(parse_field(cls.config_class, *item.split("=", 1), where=text, owner=name)
                  for item in raw.split(",") if item)
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
    settings = Settings().override({
        "data.limit_train": args.examples, "data.max_answer_tokens": 64, "teacher.topk": args.topk,
        "train.epochs": 1.0, "train.batch_size": 2, "train.learning_rate": 1e-5, "eval.eval_batch_size": 4,
    })
    with tempfile.TemporaryDirectory() as tmp:
        ctx = TaskPairContext.build(TASKS.get(args.task)(default_data_dir()), PAIRS.get(args.pair), settings,
                                    default_cache_dir())
        # Models come from the usual cache; the teacher outputs are built fresh, so the build is timed.
        teachers = Teachers.for_methods(default_cache_dir(), map(parse_method, args.methods),
                                        outputs_dir=Path(tmp) / "teacher")
        store = Store(Path(tmp) / "runs")
        rows, build_s, cache = [], None, None
        for text in args.methods:
            timings = []
            for source in ("cache", "live"):
                method = parse_method(text)
                cell = store.cell(CellKey(args.task, args.pair, f"{text}-{source}", 1))
                recipe = CellRecipe(ctx, cell, method, teachers, CellOptions(budget="perf"), config_hash="perf")
                started = time.perf_counter()
                setup = recipe.setup_training()  # builds the cache on its first call
                if build_s is None:
                    build_s, cache = time.perf_counter() - started, setup.side.teacher
                if source == "live":
                    live = LiveTeacher(teachers.model(ctx)[0])
                    setup = dataclasses.replace(setup, side=dataclasses.replace(setup.side, teacher=live))
                started = time.perf_counter()
                recipe.train(setup)
                timings.append(time.perf_counter() - started)
            rows.append((text, timings[1], timings[0]))
        assert isinstance(cache, TopkCache)
        size_per_1000 = cache.size_bytes() / args.examples * 1000
    print(f"pair {args.pair}, task {args.task}, {args.examples} examples, batch 2, top-{args.topk}")
    print(f"cache build (teacher forward over the examples): {build_s:.1f} s; "
          f"size {size_per_1000 / 2**20:.2f} MiB per 1,000 examples")
    print(f"{'method':28s} {'live (s)':>9s} {'cached (s)':>10s} {'ratio':>6s}")
    for text, live_s, cached_s in rows:
        print(f"{text:28s} {live_s:9.1f} {cached_s:10.1f} {live_s / cached_s:6.2f}")
    total_live, total_cached = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'all methods':28s} {total_live:9.1f} {total_cached:10.1f} {total_live / total_cached:6.2f}")
    print(f"including the one-off cache build: ratio {total_live / (total_cached + build_s):.2f}")


if __name__ == "__main__":
    main()
